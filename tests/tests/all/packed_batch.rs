//! The packed batch format: the host's encoder and the SDK's decoder agree, and a handler gives
//! the same outcomes through `handle-packed` as through `handle-batch`.

use bytes::Bytes;
use futures::executor::block_on;
use sluice::engine::{ErrorClass, Failure, Outcome, Transform};
use sluice::message::{HeaderValue, Message, Metadata, ValueRef};
use sluice::plugin::{BatchAbi, Limits};
use sluice::plugin::{Contract, packed};
use sluice_tests::*;

fn sample(i: u32) -> Message {
    let mut meta = Metadata::received_now("kafka".into(), "orders".into());
    meta.partition = i.is_multiple_of(2).then_some(i as i32);
    meta.offset = Some(i64::from(i) * 1000);
    meta.timestamp_ms = i.is_multiple_of(3).then_some(-5);
    meta.attempt = i + 1;
    Message {
        id: format!("orders:{i}"),
        key: (i % 2 == 1).then(|| Bytes::from(vec![0xff, i as u8])),
        payload: Bytes::from(format!("payload-{i}-\u{e9}")),
        headers: vec![
            ("a".into(), "1".into()),
            ("a".into(), format!("{i}").into()),
            (
                "bin".into(),
                HeaderValue::binary(Bytes::from(vec![0xff, 0, i as u8])),
            ),
            ("nul".into(), HeaderValue::null()),
        ],
        meta,
    }
}

#[test]
fn host_encoding_decodes_in_the_sdk_field_for_field() {
    let msgs: Vec<Message> = (0..5).map(sample).collect();
    let encoded = packed::encode_batch(&msgs, Contract::V0_2);
    let decoded = sluice_sdk::packed::decode_batch(encoded.as_slice()).unwrap();
    assert_eq!(decoded.len(), 5);
    for (m, d) in msgs.iter().zip(&decoded) {
        assert_eq!(d.id, m.id);
        assert_eq!(d.key.as_deref(), m.key.as_deref());
        assert_eq!(d.payload, m.payload.to_vec());
        let expected: Vec<(String, sluice_sdk::HeaderValue)> = m
            .headers
            .iter()
            .map(|(n, v)| {
                let v = match v.value() {
                    ValueRef::Text(t) => sluice_sdk::HeaderValue::Text(t.to_owned()),
                    ValueRef::Bytes(b) => sluice_sdk::HeaderValue::Bytes(b.to_vec()),
                    ValueRef::Null => sluice_sdk::HeaderValue::Null,
                };
                (n.to_string(), v)
            })
            .collect();
        assert_eq!(d.headers, expected);
        assert_eq!(
            d.headers[2].1,
            sluice_sdk::HeaderValue::Bytes(vec![0xff, 0, m.meta.attempt as u8 - 1])
        );
        assert_eq!(d.metadata.source, "kafka");
        assert_eq!(d.metadata.topic, "orders");
        assert_eq!(d.metadata.partition, m.meta.partition);
        assert_eq!(d.metadata.offset, m.meta.offset);
        assert_eq!(d.metadata.timestamp_ms, m.meta.timestamp_ms);
        assert_eq!(d.metadata.received_ms, m.meta.received_ms);
        assert_eq!(d.metadata.attempt, m.meta.attempt);
    }
    assert!(
        sluice_sdk::packed::decode_batch(&[1, 0, 0, 0, 9]).is_err(),
        "a short buffer is an error"
    );
}

#[test]
fn sdk_results_decode_on_the_host() {
    use sluice_sdk::{HandlerError, Output};
    let mut results = vec![
        Ok(vec![
            Output::from_payload(vec![0u8, 255])
                .with_key("k")
                .with_header("h", "v")
                .with_binary_header("b", vec![0xff, 0])
                .with_route("r"),
            Output::from_payload("x"),
        ]),
        Ok(vec![]),
        Err(HandlerError::Transient("later".into())),
        Err(HandlerError::Fatal("never".into())),
        Err(HandlerError::Invalid("bad".into())),
    ];
    let mut with_null = Output::from_payload("x");
    with_null
        .headers
        .push(("n".into(), sluice_sdk::HeaderValue::Null));
    results.push(Ok(vec![with_null]));
    let outcomes = packed::decode_results(
        Bytes::from(sluice_sdk::packed::encode_results(&results)),
        6,
        Contract::V0_2,
        &Limits::default(),
    )
    .unwrap();
    let Outcome::Outputs(o) = &outcomes[0] else {
        panic!("{outcomes:?}")
    };
    assert_eq!(&o[0].payload[..], &[0, 255]);
    assert_eq!(o[0].key.as_deref(), Some(&b"k"[..]));
    assert_eq!(o[0].headers[0], ("h".into(), "v".into()));
    assert_eq!(o[0].headers[1].1.value(), ValueRef::Bytes(&[0xff, 0]));
    assert_eq!(o[0].route.as_deref(), Some("r"));
    assert_eq!(&o[1].payload[..], b"x");
    assert_eq!(outcomes[1], Outcome::Outputs(vec![]));
    assert_eq!(
        outcomes[2],
        Outcome::Failed(Failure::new(ErrorClass::Transient, "later"))
    );
    assert_eq!(
        outcomes[3],
        Outcome::Failed(Failure::new(ErrorClass::Fatal, "never"))
    );
    assert_eq!(
        outcomes[4],
        Outcome::Failed(Failure::new(ErrorClass::Invalid, "bad"))
    );
    let Outcome::Outputs(o) = &outcomes[5] else {
        panic!("{outcomes:?}")
    };
    assert_eq!(o[0].headers[0].1.value(), ValueRef::Null);
}

#[test]
fn packed_and_canonical_calls_give_the_same_outcomes() {
    // The budget must leave `huge` (8 MiB of output, lifted through the canonical ABI by a debug
    // build) time to finish and be judged on its size: at 200 ms a busy CI machine timed it out
    // in one mode and not the other. `loop` still runs into it.
    let limits = Limits {
        timeout_ms: 1000,
        memory_mb: 16,
        max_outputs: 100,
        max_output_bytes: 1 << 20,
        ..Limits::default()
    };
    let load = |abi| {
        let plugin = plugin_host().load(&plugin_path("faulty"), &limits).unwrap();
        plugin
            .into_handler("test", "faulty", Vec::new(), abi)
            .unwrap()
    };
    let (packed, canonical) = (load(BatchAbi::Auto), load(BatchAbi::Canonical));
    let payloads = [
        "ok",
        "trap",
        "transient",
        "fatal",
        "invalid",
        "filter",
        "route:x",
        "many",
        "huge",
        "loop",
        "ok-2",
    ];
    let batch = || {
        payloads
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut m = sample(i as u32);
                m.payload = Bytes::from(p.to_string());
                m
            })
            .collect::<Vec<_>>()
    };
    let a = block_on(packed.process(&batch()));
    let b = block_on(canonical.process(&batch()));
    assert_eq!(a, b);
    assert!(
        matches!(&a[0], Outcome::Outputs(o) if &o[0].payload[..] == b"ok" && o[0].headers == batch()[0].headers),
        "headers pass through a 0.2 handler byte for byte, binary and null ones too: {:?}",
        a[0]
    );
    assert!(matches!(&a[1], Outcome::Failed(f) if f.class == ErrorClass::Trap));
    assert!(matches!(&a[9], Outcome::Failed(f) if f.class == ErrorClass::Timeout));
    // A batch without a misbehaving message goes through in one packed call.
    let clean: Vec<Message> = (0..64).map(sample).collect();
    let out = block_on(packed.process(&clean));
    assert_eq!(out, block_on(canonical.process(&clean)));
    assert_eq!(out.len(), 64);
}
