//! The plugin sandbox: what loads, what is refused and why, and the handlers' behaviour.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::executor::block_on;

use bytes::Bytes;
use sluice::engine::{ErrorClass, Outcome, Transform};
use sluice::message::{HeaderValue, Message, Metadata};
use sluice::plugin::PluginHost;
use sluice::plugin::{BatchAbi, Contract, Grant, Limits};
use sluice_tests::*;

fn load_error(path: &std::path::Path) -> String {
    match plugin_host().load(path, &Limits::default()) {
        Ok(_) => panic!("{} loaded but should be refused", path.display()),
        Err(e) => format!("{e:#}"),
    }
}

fn message(payload: &str) -> Message {
    let mut meta = Metadata::received_now("memory".into(), "q".into());
    meta.received_ms = 1_700_000_000_000;
    Message {
        id: "q:1".into(),
        key: Some(Bytes::from_static(b"k")),
        payload: Bytes::from(payload.to_owned()),
        headers: vec![("h".into(), "v".into())],
        meta,
    }
}

#[test]
fn a_component_of_another_world_is_refused_naming_the_missing_export() {
    let err = load_error(&plugin_path("wrong-world"));
    assert!(
        err.contains(
            "does not implement world sluice:plugin/handler@0.2.0 nor sluice:plugin/handler@0.1.0"
        ),
        "{err}"
    );
    assert!(err.contains("sluice:plugin/message-handler@0.1.0"), "{err}");
    assert!(err.contains("sluice:plugin/message-handler@0.2.0"), "{err}");
    assert!(err.contains("wrong-world.wasm"), "names the plugin: {err}");
}

#[test]
fn a_core_module_and_a_non_wasm_file_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    assert!(load_error(&core).contains("is a core WebAssembly module, not a component"));
    let text = dir.path().join("text.wasm");
    std::fs::write(&text, b"hello").unwrap();
    assert!(load_error(&text).contains("is not a WebAssembly file"));
    let truncated = dir.path().join("truncated.wasm");
    let mut bytes = std::fs::read(plugin_path("uppercase")).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&truncated, bytes).unwrap();
    assert!(
        load_error(&truncated).contains("does not compile"),
        "{}",
        load_error(&truncated)
    );
    assert!(load_error(&PathBuf::from("/nonexistent/x.wasm")).contains("cannot read"));
}

#[test]
fn a_component_importing_wasi_not_granted_is_refused_naming_each_import_and_grant() {
    // `needs-wasi` is built for wasm32-wasip2 and reads an environment variable, so it imports
    // `wasi:cli/environment` (and Rust's std brings stdin, stdout, stderr and exit).
    let plugin = plugin_host()
        .load(&plugin_path("needs-wasi"), &Limits::default())
        .expect("WASI imports are checked against the pipeline's grants, not at load");
    let err = plugin
        .into_handler(
            "p",
            "needs-wasi",
            Vec::new(),
            sluice::plugin::BatchAbi::Auto,
        )
        .err()
        .expect("refused without grants");
    let err = format!("{err:#}");
    assert!(
        err.contains("imports WASI interfaces its pipeline does not grant"),
        "{err}"
    );
    assert!(
        err.contains("wasi:cli/environment@0.2.6 (needs `cli`)"),
        "{err}"
    );
    assert!(
        err.contains("wasi:cli/stdout@0.2.6 (needs `stdout`)"),
        "{err}"
    );
    assert!(err.contains("set `grants: [cli, stderr, stdout]`"), "{err}");
    // Only some of what it needs: still refused, naming what is missing.
    let plugin = plugin_host()
        .load(&plugin_path("needs-wasi"), &Limits::default())
        .unwrap();
    let err = plugin
        .into_handler_with(
            "p",
            "needs-wasi",
            Vec::new(),
            sluice::plugin::BatchAbi::Auto,
            &[Grant::Cli],
        )
        .err()
        .expect("refused with a partial grant");
    let err = format!("{err:#}");
    assert!(!err.contains("environment"), "{err}");
    assert!(
        err.contains("wasi:cli/stderr@0.2.6 (needs `stderr`)"),
        "{err}"
    );
}

#[test]
fn granted_wasi_works_and_gives_no_more_than_granted() {
    let plugin = plugin_host()
        .load(&plugin_path("needs-wasi"), &Limits::default())
        .unwrap();
    let grants = [Grant::Cli, Grant::Stdout, Grant::Stderr];
    let handler = plugin
        .into_handler_with(
            "p",
            "needs-wasi",
            Vec::new(),
            sluice::plugin::BatchAbi::Auto,
            &grants,
        )
        .expect("granted");
    // It appends $SUFFIX; the handler's environment is empty whatever the host's is.
    let outcomes = block_on(handler.process(&[message("payload")]));
    match &outcomes[0] {
        Outcome::Outputs(out) => assert_eq!(&out[0].payload[..], b"payload"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn filesystem_and_network_imports_are_never_granted() {
    for (import, why) in [
        (
            "wasi:filesystem/preopens@0.2.0",
            "handlers get no filesystem",
        ),
        ("wasi:sockets/tcp@0.2.0", "handlers get no network"),
        ("wasi:http/outgoing-handler@0.2.0", "handlers get no HTTP"),
    ] {
        assert_eq!(sluice::plugin::wasi::grant_for(import), Err(why));
    }
}

#[test]
fn init_refusing_its_configuration_fails_the_handler() {
    let plugin = plugin_host()
        .load(&plugin_path("json-enrich"), &Limits::default())
        .unwrap();
    let err = plugin
        .into_handler(
            "p",
            "json-enrich",
            vec![("colour".into(), "blue".into())],
            sluice::plugin::BatchAbi::Auto,
        )
        .err()
        .expect("refused");
    let err = format!("{err:#}");
    assert!(
        err.contains("init refused the configuration: unknown setting `colour`"),
        "{err}"
    );
}

#[test]
fn compiled_components_are_cached_by_content_hash() {
    let dir = tempfile::tempdir().unwrap();
    let host = PluginHost::new(Some(dir.path().to_path_buf()));
    let first = host
        .load(&plugin_path("uppercase"), &Limits::default())
        .unwrap();
    assert!(!first.from_cache);
    let second = host
        .load(&plugin_path("uppercase"), &Limits::default())
        .unwrap();
    assert!(second.from_cache);
    assert_eq!(first.hash, second.hash);
    // One compiled entry (beside it, the lock its compile held).
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1);
    assert!(
        entries[0]
            .file_name()
            .to_string_lossy()
            .starts_with(&first.hash)
    );
    // A corrupt cache entry is discarded and rebuilt, never trusted.
    std::fs::write(entries[0].path(), b"garbage").unwrap();
    let third = host
        .load(&plugin_path("uppercase"), &Limits::default())
        .unwrap();
    assert!(!third.from_cache);
}

/// Hosts sharing a cache (replicas on one volume, tests side by side) compile a plugin version
/// once: the others wait for the compile and load what it stored.
#[test]
fn hosts_sharing_a_cache_compile_a_plugin_once() {
    let dir = tempfile::tempdir().unwrap();
    let loads: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let host = PluginHost::new(Some(dir.path().to_path_buf()));
                    host.load(&plugin_path("json-enrich"), &Limits::default())
                        .unwrap()
                        .from_cache
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        loads.iter().filter(|from_cache| !**from_cache).count(),
        1,
        "compiled once: {loads:?}"
    );
}

/// A component built for contract 0.1 (`tests/fixtures/uppercase-contract-0.1.wasm`: the
/// `uppercase` example as the Rust SDK built it before it moved to 0.2, kept as it was built)
/// still loads beside 0.2 ones and runs, in batches (its packed export, the 0.1 layout) and
/// alone (the canonical ABI). It sees header values as text: bytes as lossy UTF-8, null as "".
#[test]
fn a_component_of_contract_0_1_still_loads_and_runs_beside_0_2() {
    let current = plugin_host()
        .load(&plugin_path("uppercase"), &Limits::default())
        .unwrap();
    assert_eq!(current.contract, Contract::V0_2);
    let path = repo_root().join("tests/fixtures/uppercase-contract-0.1.wasm");
    let plugin = plugin_host().load(&path, &Limits::default()).unwrap();
    assert_eq!(plugin.contract, Contract::V0_1);
    let handler = plugin
        .into_handler("test", "old", Vec::new(), BatchAbi::Auto)
        .unwrap();
    let with_headers = |payload: &str| {
        let mut m = message(payload);
        m.headers = vec![
            ("t".into(), "v".into()),
            (
                "bin".into(),
                HeaderValue::binary(Bytes::from_static(b"\xffa")),
            ),
            ("nul".into(), HeaderValue::null()),
        ];
        m
    };
    for batch in [
        vec![with_headers("one")],
        vec![with_headers("b"), with_headers("c")],
    ] {
        let out = block_on(handler.process(&batch));
        assert_eq!(out.len(), batch.len());
        for (outcome, m) in out.iter().zip(&batch) {
            let Outcome::Outputs(o) = outcome else {
                panic!("{outcome:?}")
            };
            assert_eq!(&o[0].payload[..], &m.payload.to_ascii_uppercase()[..]);
            let seen: Vec<(&str, &str, bool)> = o[0]
                .headers
                .iter()
                .map(|(n, v)| (&**n, &**v, v.native().is_some()))
                .collect();
            assert_eq!(
                seen,
                vec![
                    ("t", "v", false),
                    ("bin", "\u{fffd}a", false),
                    ("nul", "", false)
                ],
                "a 0.1 handler returns text (the engine gives unchanged ones their bytes back)"
            );
        }
    }
}

#[test]
fn uppercase_keeps_key_and_headers() {
    let h = wasm_handler("uppercase", Limits::default(), &[]);
    let out = block_on(h.process(&[message("hello"), message("World")]));
    let Outcome::Outputs(o) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(&o[0].payload[..], b"HELLO");
    assert_eq!(o[0].key.as_deref(), Some(&b"k"[..]));
    assert_eq!(o[0].headers, vec![("h".into(), "v".into())]);
    let Outcome::Outputs(o) = &out[1] else {
        panic!("{out:?}")
    };
    assert_eq!(&o[0].payload[..], b"WORLD");
}

#[test]
fn json_enrich_validates_enriches_and_routes() {
    let h = wasm_handler("json-enrich", Limits::default(), &[("route.user", "users")]);
    let valid = r#"{"event_type":"user.signed_up","event_id":"e1","timestamp":1,"version":"1","data":{"id":7},"metadata":{"producer":"p","trace_id":"t"}}"#;
    let order = valid.replace("user.signed_up", "order.created");
    let cases = [
        valid.to_owned(),
        order,
        "not json".to_owned(),
        r#"{"event_type":"x"}"#.to_owned(),
        r#"{"event_type":"x","event_id":"e","timestamp":1,"version":"1","data":[],"metadata":{"producer":"p"}}"#.to_owned(),
        r#"{"event_type":"x","event_id":"e","timestamp":1,"version":"1","data":{},"metadata":{}}"#.to_owned(),
    ];
    let out = block_on(h.process(&cases.iter().map(|c| message(c)).collect::<Vec<_>>()));
    let Outcome::Outputs(o) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(o[0].route.as_deref(), Some("users"));
    assert_eq!(o[0].header("event-type"), Some("user.signed_up"));
    let v: serde_json::Value = serde_json::from_slice(&o[0].payload).unwrap();
    assert_eq!(v["processed_at"], 1_700_000_000_000_i64);
    assert_eq!(v["processed_by"], "sluice/json-enrich");
    assert_eq!(v["data"]["id"], 7, "the event itself is kept");
    let Outcome::Outputs(o) = &out[1] else {
        panic!("{out:?}")
    };
    assert_eq!(
        o[0].route, None,
        "no route configured for `order`: the default sink"
    );
    let reasons: Vec<(ErrorClass, String)> = out[2..]
        .iter()
        .map(|o| match o {
            Outcome::Failed(f) => (f.class, f.reason.clone()),
            other => panic!("expected a failure, got {other:?}"),
        })
        .collect();
    assert_eq!(reasons[0].0, ErrorClass::Invalid);
    assert!(
        reasons[0].1.starts_with("payload is not valid JSON"),
        "{}",
        reasons[0].1
    );
    assert_eq!(
        reasons[1],
        (
            ErrorClass::Invalid,
            "envelope is missing `event_id`".to_owned()
        )
    );
    assert_eq!(
        reasons[2],
        (
            ErrorClass::Invalid,
            "envelope field `data` must be an object".to_owned()
        )
    );
    assert_eq!(
        reasons[3],
        (
            ErrorClass::Invalid,
            "envelope field `metadata.producer` must be a non-empty string".to_owned()
        )
    );
}

#[test]
fn a_trapped_instance_is_replaced_and_the_next_call_works() {
    let h: Arc<dyn Transform> = wasm_handler("faulty", Limits::default(), &[]);
    for _ in 0..3 {
        let out = block_on(h.process(&[message("trap")]));
        assert!(
            matches!(&out[0], Outcome::Failed(f) if f.class == ErrorClass::Trap),
            "{out:?}"
        );
        let out = block_on(h.process(&[message("fine")]));
        assert!(
            matches!(&out[0], Outcome::Outputs(o) if &o[0].payload[..] == b"fine"),
            "{out:?}"
        );
    }
}

/// Guest code runs in its pipeline's task and yields at every epoch tick: on a runtime with a
/// single thread, a handler looping until its timeout still lets other tasks run meanwhile.
#[tokio::test(flavor = "current_thread")]
async fn a_looping_handler_shares_its_thread_until_its_timeout() {
    let limits = Limits {
        timeout_ms: 300,
        ..Limits::default()
    };
    let h: Arc<dyn Transform> = wasm_handler("faulty", limits, &[]);
    let ticks = Arc::new(AtomicU64::new(0));
    let ticker = tokio::spawn({
        let ticks = ticks.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                ticks.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    // The ticker first runs when this call yields, and is not polled again before the read
    // below: every tick counted happened while the guest was looping.
    let out = h.process(&[message("loop")]).await;
    let during_the_call = ticks.load(Ordering::SeqCst);
    ticker.abort();
    assert!(
        matches!(&out[0], Outcome::Failed(f) if f.class == ErrorClass::Timeout && f.reason.contains("300 ms")),
        "{out:?}"
    );
    assert!(
        during_the_call > 0,
        "the only thread was held by the looping guest"
    );
    let out = h.process(&[message("fine")]).await;
    assert!(
        matches!(&out[0], Outcome::Outputs(o) if &o[0].payload[..] == b"fine"),
        "{out:?}"
    );
}
