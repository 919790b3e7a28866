//! The ingest service over raw frames. The generated tonic server decodes every agent message
//! before the service sees it, so when the whole fleet drains its spools at once, every stream
//! held a decoded batch (ten to forty times its encoded size) while it waited for admission:
//! 1.5–2.2 GiB for 10,000 agents. Here tonic hands the session each message still encoded
//! (the bytes tonic already read, not a copy), and the session decodes only once admitted
//! (see `Session::run` and [`crate::group_commit::GroupWriter::admit_bytes`]).
//!
//! The wire contract is unchanged: same service and method path, same messages.

use super::{IngestService, Outbound};
use backwatch_proto::wire::CollectorMessage;
use std::convert::Infallible;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::codegen::{Body, Bytes, Context, Poll, Service, StdError, http};
use tonic::server::NamedService;
use tonic::{Status, Streaming};
use tonic_prost::ProstEncoder;

/// gRPC path of the one method (`backwatch.v1.Ingest/Session` in `backwatch.proto`).
const SESSION_PATH: &str = "/backwatch.v1.Ingest/Session";

/// Initial read and write buffers of a stream. tonic's default (8 KiB each) is kept by every
/// idle stream; agent messages are mostly far smaller, and a larger one grows the buffer
/// only while it is read.
fn buffers() -> BufferSettings {
    BufferSettings::new(1024, 32 * 1024)
}

/// Decodes nothing: an agent message comes out as its encoded bytes.
pub struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        use prost::bytes::Buf;
        // Splits the bytes off tonic's read buffer: no copy.
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }

    fn buffer_settings(&self) -> BufferSettings {
        buffers()
    }
}

/// Agent messages in raw, collector messages encoded as usual.
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = CollectorMessage;
    type Decode = Bytes;
    type Encoder = ProstEncoder<CollectorMessage>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(buffers())
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

/// The `Ingest` service of `backwatch.proto`, with [`RawCodec`].
#[derive(Clone)]
pub struct IngestServer {
    inner: std::sync::Arc<IngestService>,
    max_message_bytes: usize,
}

impl IngestServer {
    /// Messages over `max_message_bytes` either way end the stream (tonic's own check).
    pub fn new(inner: IngestService, max_message_bytes: usize) -> Self {
        IngestServer {
            inner: std::sync::Arc::new(inner),
            max_message_bytes,
        }
    }
}

impl NamedService for IngestServer {
    const NAME: &'static str = "backwatch.v1.Ingest";
}

struct SessionSvc(std::sync::Arc<IngestService>);

impl tonic::server::StreamingService<Bytes> for SessionSvc {
    type Response = CollectorMessage;
    type ResponseStream = Outbound;
    type Future = tonic::codegen::BoxFuture<tonic::Response<Outbound>, Status>;

    fn call(&mut self, request: tonic::Request<Streaming<Bytes>>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move { inner.session(request).await })
    }
}

impl<B> Service<http::Request<B>> for IngestServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != SESSION_PATH {
            return Box::pin(async move {
                let mut response = http::Response::new(tonic::body::Body::default());
                let headers = response.headers_mut();
                headers.insert(
                    Status::GRPC_STATUS,
                    (tonic::Code::Unimplemented as i32).into(),
                );
                headers.insert(
                    http::header::CONTENT_TYPE,
                    tonic::metadata::GRPC_CONTENT_TYPE,
                );
                Ok(response)
            });
        }
        let svc = SessionSvc(self.inner.clone());
        let max = self.max_message_bytes;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .apply_max_message_size_config(Some(max), Some(max));
            Ok(grpc.streaming(svc, req).await)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_name_is_the_contract_s() {
        assert_eq!(
            <IngestServer as NamedService>::NAME,
            <backwatch_proto::wire::IngestServer<()> as NamedService>::NAME
        );
    }
}
