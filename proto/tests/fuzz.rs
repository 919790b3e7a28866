//! Property tests for what the collector does with bytes from the network: decoding arbitrary
//! bytes and converting whatever decodes never panics, and a result that converts survives a
//! round trip unchanged.

use backwatch_proto::model::ProbeResult;
use backwatch_proto::wire::{AgentMessage, AgentPayload, Message, ProbeResult as WireResult};
use proptest::prelude::*;

proptest! {
    // Failures are shown with their minimal input; nothing is written into the source tree.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(w) = WireResult::decode(bytes.as_slice()) {
            let _ = ProbeResult::try_from(w);
        }
        if let Ok(AgentMessage { payload: Some(AgentPayload::Results(batch)), .. }) =
            AgentMessage::decode(bytes.as_slice())
        {
            for r in batch.results {
                let _ = ProbeResult::try_from(r);
            }
        }
    }

    #[test]
    fn fields_of_any_value_convert_or_are_rejected(
        id in ".{0,80}",
        name in "[a-z0-9_.-]{0,70}",
        kind in -2i32..6,
        secs in any::<i64>(),
        nanos in any::<i32>(),
        error in ".{0,20}",
    ) {
        let w = WireResult {
            result_id: id,
            kind,
            name,
            measured_at: Some(prost_types_timestamp(secs, nanos)),
            error,
            ..Default::default()
        };
        if let Ok(r) = ProbeResult::try_from(w) {
            let back = ProbeResult::try_from(WireResult::from(&r)).expect("round trip");
            prop_assert_eq!(back, r);
        }
    }
}

fn prost_types_timestamp(seconds: i64, nanos: i32) -> backwatch_proto::wire::Timestamp {
    backwatch_proto::wire::Timestamp { seconds, nanos }
}
