//! The ingest service over raw frames. The generated tonic server decodes every agent message
//! before the service sees it, so when the whole fleet drains its spools at once, every stream
//! held a decoded batch (ten to forty times its encoded size) while it waited for admission:
//! 1.5–2.2 GiB for 10,000 agents. Here the session reads the request body itself
//! ([`Inbound`], gRPC's framing) and decodes a message only once admitted (see `Session::run`
//! and [`crate::group_commit::GroupWriter::admit_bytes`]); a waiting stream holds its message
//! encoded, in a buffer of the message's size. tonic's own reader kept a buffer per stream
//! that grew to the largest message plus read-ahead and never shrank, and a message waiting
//! for admission kept it alive (about 7 KiB more per agent through a drain, measured).
//!
//! A message is read whole before admission, not after its header: admission held while the
//! rest arrives would let an agent that announces a large message and then stalls hold the
//! whole fleet's admission.
//!
//! The wire contract is unchanged: same service and method path, same messages, gRPC's
//! framing. tonic still encodes the collector's messages and ends the call.

use super::{IngestService, Outbound};
use backwatch_proto::wire::CollectorMessage;
use prost::bytes::BytesMut;
use std::convert::Infallible;
use std::pin::Pin;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::codegen::{Body, Bytes, Context, Poll, Service, http};
use tonic::server::NamedService;
use tonic::{Status, Streaming};
use tonic_prost::ProstEncoder;

/// gRPC path of the one method (`backwatch.v1.Ingest/Session` in `backwatch.proto`).
const SESSION_PATH: &str = "/backwatch.v1.Ingest/Session";

/// Initial write buffer of a stream (and read buffer of tonic's reader, which stays unused).
/// tonic's default (8 KiB each) is kept by every idle stream; collector messages are small.
fn buffers() -> BufferSettings {
    BufferSettings::new(1024, 32 * 1024)
}

/// gRPC's message header: a compression flag byte and a 4-byte big-endian length.
const HEADER_BYTES: usize = 5;

/// An agent stream's messages, read off the request body by the session (see the module).
pub struct Inbound {
    body: tonic::body::Body,
    /// Received, not yet part of a message taken: the next message as far as it arrived,
    /// copied out of h2's read buffer so that it does not keep that buffer alive.
    pending: BytesMut,
    max_message_bytes: usize,
}

impl Inbound {
    fn new(body: tonic::body::Body, max_message_bytes: usize) -> Self {
        Inbound {
            body,
            pending: BytesMut::new(),
            max_message_bytes,
        }
    }

    /// The next message, in a buffer of its own size; `None` when the agent ended the stream
    /// between messages. Cancel-safe: what arrived is kept in `pending` for the next call.
    pub async fn next_message(&mut self) -> Result<Option<Bytes>, Status> {
        let len = loop {
            if let Some(len) = self.header()? {
                break len;
            }
            if !self.receive().await? {
                if self.pending.is_empty() {
                    return Ok(None);
                }
                return Err(Status::invalid_argument(
                    "stream ended inside a message header",
                ));
            }
        };
        let total = HEADER_BYTES + len;
        while self.pending.len() < total {
            if !self.receive().await? {
                return Err(Status::invalid_argument("stream ended inside a message"));
            }
        }
        // What follows belongs to the next message: copied (a frame's tail at most), so that
        // nothing keeps this message's buffer once it is handled.
        let rest = BytesMut::from(&self.pending[total..]);
        let mut whole = std::mem::replace(&mut self.pending, rest);
        whole.truncate(total);
        // Grown by doubling as frames came in: keep it only when it is about the right size.
        if whole.capacity() > total + total / 4 {
            return Ok(Some(Bytes::copy_from_slice(&whole[HEADER_BYTES..])));
        }
        Ok(Some(whole.freeze().slice(HEADER_BYTES..)))
    }

    /// The next message's length, once its header is in `pending`. Nothing is allocated for
    /// the length an agent announces: a message grows as its bytes arrive.
    fn header(&self) -> Result<Option<usize>, Status> {
        if self.pending.len() < HEADER_BYTES {
            return Ok(None);
        }
        if self.pending[0] != 0 {
            // Agents never compress (a batch is small, and TLS is the expensive part).
            return Err(Status::unimplemented(
                "compressed messages are not accepted by this collector",
            ));
        }
        let len = u32::from_be_bytes([
            self.pending[1],
            self.pending[2],
            self.pending[3],
            self.pending[4],
        ]) as usize;
        if len > self.max_message_bytes {
            return Err(Status::out_of_range(format!(
                "message of {len} bytes is over the limit of {} bytes",
                self.max_message_bytes
            )));
        }
        Ok(Some(len))
    }

    /// Appends the next DATA frame to `pending`; false at the end of the stream.
    async fn receive(&mut self) -> Result<bool, Status> {
        loop {
            let frame = std::future::poll_fn(|cx| Pin::new(&mut self.body).poll_frame(cx)).await;
            match frame {
                None => return Ok(false),
                Some(Err(status)) => return Err(status),
                Some(Ok(frame)) => {
                    // Trailers carry nothing an agent sends; keep reading.
                    if let Ok(data) = frame.into_data() {
                        self.pending.extend_from_slice(&data);
                        return Ok(true);
                    }
                }
            }
        }
    }
}

/// tonic's reader of the request, which the session never polls (it reads [`Inbound`]).
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
    /// Messages over `max_message_bytes` end the stream: an agent's by [`Inbound`], the
    /// collector's by tonic.
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

struct SessionSvc {
    inner: std::sync::Arc<IngestService>,
    /// The request body, which tonic was not given (it gets an empty one).
    inbound: Option<Inbound>,
}

impl tonic::server::StreamingService<Bytes> for SessionSvc {
    type Response = CollectorMessage;
    type ResponseStream = Outbound;
    type Future = tonic::codegen::BoxFuture<tonic::Response<Outbound>, Status>;

    fn call(&mut self, request: tonic::Request<Streaming<Bytes>>) -> Self::Future {
        let inner = self.inner.clone();
        let inbound = self.inbound.take();
        Box::pin(async move {
            let inbound = inbound.ok_or_else(|| Status::internal("stream already taken"))?;
            inner.session(request, inbound).await
        })
    }
}

impl Service<http::Request<tonic::body::Body>> for IngestServer {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
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
        let max = self.max_message_bytes;
        let (parts, body) = req.into_parts();
        let req = http::Request::from_parts(parts, tonic::body::Body::default());
        let svc = SessionSvc {
            inner: self.inner.clone(),
            inbound: Some(Inbound::new(body, max)),
        };
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
    use hyper::body::Frame;
    use std::collections::VecDeque;

    /// A request body that hands out the given frames, then ends.
    struct Frames(VecDeque<Frame<Bytes>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = Status;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    fn inbound(frames: &[&[u8]]) -> Inbound {
        let frames = frames
            .iter()
            .map(|f| Frame::data(Bytes::copy_from_slice(f)))
            .collect();
        Inbound::new(tonic::body::Body::new(Frames(frames)), 64)
    }

    fn framed(flag: u8, message: &[u8]) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    async fn next(inbound: &mut Inbound) -> Result<Option<Bytes>, Status> {
        inbound.next_message().await
    }

    #[tokio::test]
    async fn messages_are_read_across_and_within_frames() {
        let a = framed(0, b"first message");
        let b = framed(0, b"second");
        let c = framed(0, b"");
        let mut wire = [a, b, c].concat();
        wire.extend_from_slice(&framed(0, b"fourth"));
        // The first header split over two frames, a message over three, two in one frame.
        let cuts = [3, 9, 14, 16, 40];
        let mut frames = Vec::new();
        let mut at = 0;
        for cut in cuts.into_iter().chain([wire.len()]) {
            frames.push(&wire[at..cut]);
            at = cut;
        }
        let mut inbound = inbound(&frames);
        for expected in [&b"first message"[..], b"second", b"", b"fourth"] {
            let got = next(&mut inbound).await.unwrap().unwrap();
            assert_eq!(&got[..], expected);
        }
        assert_eq!(next(&mut inbound).await.unwrap(), None);
    }

    #[tokio::test]
    async fn what_follows_a_message_is_copied_out_of_its_buffer() {
        let wire = [framed(0, &[1; 20]), framed(0, &[2; 3])].concat();
        let mut inbound = inbound(&[&wire]);
        let first = inbound.next_message().await.unwrap().unwrap();
        assert_eq!(first.len(), 20);
        // Only the next message's bytes remain, in a buffer of their own size.
        assert_eq!(inbound.pending.len(), HEADER_BYTES + 3);
        assert_eq!(inbound.pending.capacity(), HEADER_BYTES + 3);
    }

    #[tokio::test]
    async fn what_is_not_a_readable_message_ends_the_stream_with_a_reason() {
        let compressed = framed(1, b"abc");
        let err = next(&mut inbound(&[&compressed])).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unimplemented, "{err:?}");

        let large = framed(0, &[0; 65]);
        let err = next(&mut inbound(&[&large])).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
        assert!(err.message().contains("65 bytes"), "{err:?}");

        let cut = framed(0, b"abcdef");
        let err = next(&mut inbound(&[&cut[..8]])).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        let err = next(&mut inbound(&[&cut[..3]])).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    }

    #[test]
    fn the_service_name_is_the_contract_s() {
        assert_eq!(
            <IngestServer as NamedService>::NAME,
            <backwatch_proto::wire::IngestServer<()> as NamedService>::NAME
        );
    }
}
