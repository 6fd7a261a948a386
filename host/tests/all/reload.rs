//! Hot reload under load, against the machine's RabbitMQ: `sluice run` consumes a queue fed at a
//! steady rate while its plugin, or its pipeline file, is replaced every second; then a broken
//! version is dropped in. Every message sent must arrive exactly once, tagged with the one
//! plugin version that handled it, and the broken version must never handle a message.

use std::collections::{BTreeMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::Value;

use crate::common;
use sha2::{Digest, Sha256};

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const TOKEN: &str = "reload-test-token";
/// Messages per second the publisher keeps up.
const RATE: u64 = 200;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn plugin(name: &str) -> Vec<u8> {
    let path = repo().join("plugins/dist").join(format!("{name}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/build-plugins.sh)", path.display()))
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Replace `path` atomically, as a deployment does (write beside it, then rename over it).
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("sluice-reload-{prefix}-{nanos}")
}

async fn channel() -> (Connection, Channel) {
    let conn = Connection::connect(AMQP, ConnectionProperties::default())
        .await
        .expect("RabbitMQ on 127.0.0.1:5672 (scripts/brokers.sh starts it)");
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    (conn, ch)
}

async fn declare(ch: &Channel, queue: &str) {
    let options = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(queue.into(), options, FieldTable::default())
        .await
        .unwrap();
}

/// Publish `m-0`, `m-1`, … at [`RATE`] until `stop`, each confirmed; returns how many.
fn publisher(
    queue: String,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let (_conn, ch) = channel().await;
        let started = Instant::now();
        let mut n = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let due = started + Duration::from_micros(n * 1_000_000 / RATE);
            tokio::time::sleep_until(due.into()).await;
            ch.basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                format!("m-{n}").as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap()
            .await
            .unwrap();
            n += 1;
            sent.store(n, Ordering::SeqCst);
        }
        n
    })
}

/// One message as it arrived: payload and its `x-sluice-plugin` label.
struct Arrived {
    payload: String,
    plugin: Option<String>,
}

/// Take everything from `queue` until `expect` arrived (or 60 s of nothing new).
async fn drain(queue: &str, expect: u64) -> Vec<Arrived> {
    let (_conn, ch) = channel().await;
    let mut got = Vec::new();
    let mut last_new = Instant::now();
    while (got.len() as u64) < expect && last_new.elapsed() < Duration::from_secs(60) {
        match ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            Some(m) => {
                last_new = Instant::now();
                let plugin = m.delivery.properties.headers().as_ref().and_then(|t| {
                    t.inner().iter().find_map(|(k, v)| match v {
                        AMQPValue::LongString(s) if k.as_str() == "x-sluice-plugin" => {
                            Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
                        }
                        _ => None,
                    })
                });
                got.push(Arrived {
                    payload: String::from_utf8(m.delivery.data).unwrap(),
                    plugin,
                });
            }
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    got
}

/// A `sluice run` child with its admin server on an ephemeral port.
struct Host {
    child: Child,
    base: String,
}

impl Host {
    fn start(pipeline: &Path, extra: &[&str]) -> Host {
        let mut args = vec![pipeline.as_os_str()];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        let (child, base, stderr) = common::run_with_admin(&args, TOKEN);
        std::thread::spawn(move || {
            // Keep the pipe drained; echo reload lines for the test log.
            for line in stderr.lines().map_while(Result::ok) {
                if line.contains("reload") || line.contains("swapped") || line.contains("ERROR") {
                    eprintln!("sluice: {line}");
                }
            }
        });
        Host { child, base }
    }

    async fn json(&self, path: &str) -> (u16, Value) {
        let r = reqwest::get(format!("{}{path}", self.base)).await.unwrap();
        let code = r.status().as_u16();
        (code, r.json().await.unwrap_or(Value::Null))
    }

    /// `/metrics`, the Prometheus text.
    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn post(&self, path: &str) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        (code, r.json().await.unwrap_or(Value::Null))
    }

    async fn wait_ready(&self) {
        let started = Instant::now();
        while self.json("/readyz").await.0 != 200 {
            assert!(started.elapsed() < Duration::from_secs(60), "never ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then the exit status must be 0 (drained).
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = self.child.wait().unwrap();
        assert!(status.success(), "sluice exited with {status}");
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pipeline_yaml(input: &str, out: &str, dlq: &str) -> String {
    format!(
        "name: reload\n\
         source: {{ type: rabbitmq, url: \"{AMQP}\", queue: {input}, declare: true }}\n\
         handlers:\n  - plugin: handler.wasm\n\
         sinks:\n  out: {{ type: rabbitmq, url: \"{AMQP}\", routing_key: {out}, declare_queue: {out} }}\n\
         dead_letter: {{ type: rabbitmq, url: \"{AMQP}\", routing_key: {dlq}, declare_queue: {dlq} }}\n\
         delivery: {{ max_in_flight: 64, batch_size: 16 }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_swaps_every_second_under_load_lose_and_duplicate_nothing() {
    // Two working versions that show which one handled a message, and two broken ones.
    let upper = plugin("uppercase"); // "m-1" -> "M-1"
    let echo = plugin("faulty"); // "m-1" -> "m-1"
    let wrong_world = plugin("wrong-world");
    let garbage = b"\0asm this is not a component".to_vec();
    let (upper_hash, echo_hash) = (sha256(&upper), sha256(&echo));
    let broken = [sha256(&wrong_world), sha256(&garbage)];

    let dir = tempfile::tempdir().unwrap();
    let (input, out, dlq) = (unique("in"), unique("out"), unique("dlq"));
    let (_conn, ch) = channel().await;
    for q in [&input, &out, &dlq] {
        declare(&ch, q).await;
    }
    replace(&dir.path().join("handler.wasm"), &upper);
    let file = dir.path().join("reload.yaml");
    std::fs::write(&file, pipeline_yaml(&input, &out, &dlq)).unwrap();
    let host = Host::start(&file, &[]);
    host.wait_ready().await;

    let (stop, sent) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let publishing = publisher(input.clone(), stop.clone(), sent.clone());
    // 20 swaps, one a second, alternating, while messages flow.
    for i in 0..20 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let next = if i % 2 == 0 { &echo } else { &upper };
        replace(&dir.path().join("handler.wasm"), next);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let last_good = if 19 % 2 == 0 { &echo_hash } else { &upper_hash };
    // Broken versions: another world, then bytes that are no component at all.
    replace(&dir.path().join("handler.wasm"), &wrong_world);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    replace(&dir.path().join("handler.wasm"), &garbage);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    let total = publishing.await.unwrap();
    assert!(total >= 20 * RATE, "the publisher fell behind: {total}");

    let arrived = drain(&out, total).await;
    let dead = drain_now(&ch, &dlq).await;
    assert!(
        dead.is_empty(),
        "{} dead-lettered, e.g. {:?}",
        dead.len(),
        dead[0].payload
    );
    let mut seen = HashSet::new();
    let mut by_version: BTreeMap<&str, u64> = BTreeMap::new();
    for m in &arrived {
        let id = m.payload.to_lowercase();
        assert!(seen.insert(id.clone()), "{id} arrived twice");
        let label = m
            .plugin
            .as_deref()
            .unwrap_or_else(|| panic!("{id}: no x-sluice-plugin"));
        let hash = label.rsplit("sha256:").next().unwrap();
        assert!(
            !broken.contains(&hash.to_owned()),
            "{id} was handled by a broken version"
        );
        // The label names the version that really handled it.
        if hash == upper_hash {
            assert_eq!(m.payload, m.payload.to_uppercase(), "{label}");
            *by_version.entry("uppercase").or_default() += 1;
        } else if hash == echo_hash {
            assert_eq!(m.payload, id, "{label}");
            *by_version.entry("echo").or_default() += 1;
        } else {
            panic!("{id}: unknown version {label}");
        }
    }
    assert_eq!(
        arrived.len() as u64,
        total,
        "sent {total}, arrived {}",
        arrived.len()
    );
    assert!(by_version.len() == 2, "{by_version:?}");

    // The host says what happened: swaps counted, the broken versions refused, the last good
    // version still in place.
    let (_, status) = host.json("/pipelines/reload").await;
    let handler = &status["handlers"][0];
    assert_eq!(handler["sha256"], last_good.as_str(), "{status}");
    let swaps = handler["swaps"].as_u64().unwrap();
    assert!(swaps >= 15, "only {swaps} swaps: {status}");
    let errors = status["last_errors"].to_string();
    assert!(
        errors.contains("reload refused") && errors.contains("does not implement world"),
        "{errors}"
    );
    let (code, last) = host.json("/reload").await;
    assert_eq!(code, 200);
    assert_eq!(last["ok"], false, "{last}");
    let metrics = host.metrics().await;
    let refused = metrics
        .lines()
        .find(|l| l.starts_with("sluice_reloads_total{result=\"refused\"}"))
        .unwrap();
    assert!(!refused.ends_with(" 0"), "{refused}");
    eprintln!("sent {total}; by version {by_version:?}; {swaps} swaps");
    host.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_file_changes_every_second_under_load_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out_a, out_b, dlq) = (
        unique("in"),
        unique("out-a"),
        unique("out-b"),
        unique("dlq"),
    );
    let (_conn, ch) = channel().await;
    for q in [&input, &out_a, &out_b, &dlq] {
        declare(&ch, q).await;
    }
    replace(&dir.path().join("handler.wasm"), &plugin("faulty"));
    let file = dir.path().join("reload.yaml");
    replace(&file, pipeline_yaml(&input, &out_a, &dlq).as_bytes());
    let host = Host::start(&file, &[]);
    host.wait_ready().await;

    let (stop, sent) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let publishing = publisher(input.clone(), stop.clone(), sent.clone());
    // The sink's routing key flips between two queues every second: each change drains the
    // running version and starts the new one.
    for i in 0..20 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let to = if i % 2 == 0 { &out_b } else { &out_a };
        replace(&file, pipeline_yaml(&input, to, &dlq).as_bytes());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // An invalid file is refused; the running version (sending to out_a) goes on.
    let before = sent.load(Ordering::SeqCst);
    replace(
        &file,
        format!("{}bogus_field: 1\n", pipeline_yaml(&input, &out_b, &dlq)).as_bytes(),
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stop.store(true, Ordering::SeqCst);
    let total = publishing.await.unwrap();
    assert!(total > before + RATE, "the publisher fell behind");

    // Take both queues until everything sent is there (or 90 s pass).
    let (mut in_a, mut in_b) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(90);
    while ((in_a.len() + in_b.len()) as u64) < total && Instant::now() < deadline {
        in_a.extend(drain_now(&ch, &out_a).await);
        in_b.extend(drain_now(&ch, &out_b).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (count_a, count_b) = (in_a.len(), in_b.len());
    let arrived: Vec<Arrived> = in_a.into_iter().chain(in_b).collect();
    assert!(
        drain_now(&ch, &dlq).await.is_empty(),
        "something was dead-lettered"
    );
    let mut seen = HashSet::new();
    for m in &arrived {
        assert!(
            seen.insert(m.payload.clone()),
            "{} arrived twice",
            m.payload
        );
    }
    assert_eq!(
        arrived.len() as u64,
        total,
        "sent {total}, arrived {}",
        arrived.len()
    );
    for i in 0..total {
        assert!(seen.contains(&format!("m-{i}")), "m-{i} never arrived");
    }
    assert!(
        count_a > 0 && count_b > 0,
        "both sink settings were used: {count_a} / {count_b}"
    );

    let (code, last) = host.json("/reload").await;
    assert_eq!(code, 200);
    assert_eq!(last["ok"], false, "{last}");
    assert!(
        last["refused"]
            .to_string()
            .contains("bogus_field: unknown field"),
        "{last}"
    );
    let (_, status) = host.json("/pipelines/reload").await;
    assert_eq!(status["state"], "running", "{status}");
    eprintln!("sent {total}: {count_a} to out-a, {count_b} to out-b");
    host.stop();
}

/// Reload without the watcher: a changed plugin waits for SIGHUP or `POST .../reload`, whose
/// answer is the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_the_admin_api_reload_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out, dlq) = (unique("in"), unique("out"), unique("dlq"));
    replace(&dir.path().join("handler.wasm"), &plugin("uppercase"));
    let file = dir.path().join("reload.yaml");
    std::fs::write(&file, pipeline_yaml(&input, &out, &dlq)).unwrap();
    let host = Host::start(&file, &["--no-watch"]);
    host.wait_ready().await;
    let hash_of = |v: &Value| v["handlers"][0]["sha256"].as_str().unwrap().to_owned();

    let echo = plugin("faulty");
    replace(&dir.path().join("handler.wasm"), &echo);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        hash_of(&host.json("/pipelines/reload").await.1),
        sha256(&plugin("uppercase")),
        "reloaded without being asked"
    );

    let pid = host.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    while hash_of(&host.json("/pipelines/reload").await.1) != sha256(&echo) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "SIGHUP did not reload"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The API answers with what it did, and with 422 and the errors when it refuses.
    replace(&dir.path().join("handler.wasm"), &plugin("uppercase"));
    let (code, report) = host.post("/pipelines/reload/reload").await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["swapped"].as_array().unwrap().len(), 1, "{report}");
    replace(&dir.path().join("handler.wasm"), &plugin("wrong-world"));
    let (code, report) = host.post("/reload").await;
    assert_eq!(code, 422, "{report}");
    assert!(
        report["refused"][0]
            .as_str()
            .unwrap()
            .contains("does not implement world"),
        "{report}"
    );
    let (code, _) = host.post("/pipelines/nope/reload").await;
    assert_eq!(code, 404);
    host.stop();
}

async fn drain_now(ch: &Channel, queue: &str) -> Vec<Arrived> {
    let mut got = Vec::new();
    while let Some(m) = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        got.push(Arrived {
            payload: String::from_utf8(m.delivery.data).unwrap(),
            plugin: None,
        });
    }
    got
}

/// A pipeline that ran to its end (a `file` source) beside one that keeps running: a reload
/// caused by an edit to the other file, and a refused one, never start it again, so its outputs
/// and dead letters are not written twice. An edit to its own file runs it again, as new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_never_reruns_a_finished_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    replace(&d.join("handler.wasm"), &plugin("faulty"));
    std::fs::write(d.join("input.txt"), "one\nfatal\ntwo\n").unwrap();
    let finished = "name: finished\n\
        source: { type: file, path: input.txt }\n\
        handlers:\n  - plugin: handler.wasm\n\
        sinks:\n  out: { type: file, path: out.txt }\n\
        dead_letter: { type: file, path: dead.txt }\n";
    std::fs::write(d.join("finished.yaml"), finished).unwrap();
    let running = "name: running\n\
        source: { type: generate, rate_per_second: 5 }\n\
        sinks:\n  out: { type: drop }\n\
        dead_letter: { type: drop }\n";
    std::fs::write(d.join("running.yaml"), running).unwrap();
    let host = Host::start(d, &["--no-watch"]);
    let lines = |file: &str| {
        std::fs::read_to_string(d.join(file))
            .unwrap_or_default()
            .lines()
            .count()
    };
    let started = Instant::now();
    while host.json("/pipelines/finished").await.1["state"] != "stopped" {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never finished"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!((lines("out.txt"), lines("dead.txt")), (2, 1));

    // The other file changes: only it is restarted, and its totals go on from where they were.
    let received = |status: &Value| status["totals"]["received"].as_u64().unwrap();
    let started = Instant::now();
    let before = loop {
        let n = received(&host.json("/pipelines/running").await.1);
        if n >= 10 {
            break n;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "running received nothing"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let read_before = Instant::now();
    std::fs::write(d.join("running.yaml"), format!("{running}# edited\n")).unwrap();
    let (code, report) = host.post("/reload").await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(
        report["restarted"],
        serde_json::json!(["running"]),
        "{report}"
    );
    let after = received(&host.json("/pipelines/running").await.1);
    // Carried over once: not from zero, and not twice (at 5 a second, a few more arrived).
    let bound = before + 5 * (read_before.elapsed().as_secs() + 2);
    assert!(
        (before..=bound).contains(&after),
        "received went from {before} to {after} across the restart (at most {bound})"
    );
    // `/metrics` counts on too.
    let metrics = host.metrics().await;
    let exported: u64 = metrics
        .lines()
        .find(|l| l.starts_with("sluice_messages_in_total{pipeline=\"running\""))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, n)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sluice_messages_in_total for running:\n{metrics}"));
    assert!(exported >= before, "{exported} < {before}");
    assert_eq!(report["started"], serde_json::json!([]), "{report}");
    // A refused edit of the other file.
    std::fs::write(
        d.join("running.yaml"),
        "name: running\nsource: { type: nope }\n",
    )
    .unwrap();
    let (code, report) = host.post("/reload").await;
    assert_eq!(code, 422, "{report}");
    assert_eq!(report["started"], serde_json::json!([]), "{report}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        (lines("out.txt"), lines("dead.txt")),
        (2, 1),
        "the finished pipeline ran again"
    );

    // Its own file changes: it runs again, from the new file.
    std::fs::write(d.join("finished.yaml"), format!("{finished}# edited\n")).unwrap();
    let (code, report) = host.post("/reload").await;
    assert_eq!(code, 422, "running.yaml is still refused: {report}");
    assert_eq!(
        report["started"],
        serde_json::json!(["finished"]),
        "{report}"
    );
    let started = Instant::now();
    while (lines("out.txt"), lines("dead.txt")) != (4, 2) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "did not run again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The refusal shows on the running pipeline until its file is fixed, then no longer.
    let refusals = |status: &Value| {
        status["last_errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["message"].as_str().unwrap().starts_with("reload refused"))
            .count()
    };
    assert!(refusals(&host.json("/pipelines/running").await.1) > 0);
    std::fs::write(d.join("running.yaml"), format!("{running}# edited\n")).unwrap();
    let (code, report) = host.post("/reload").await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(refusals(&host.json("/pipelines/running").await.1), 0);

    // The dashboard's reload history: the reloads above that changed or refused something (the
    // last one found the file as it runs), oldest first, when and what.
    let (_, list) = host.json("/pipelines").await;
    let recent = list["host"]["recent_reloads"].as_array().unwrap();
    assert_eq!(recent.len(), 3, "{list}");
    let what = |i: usize, key: &str| recent[i]["report"][key].clone();
    assert_eq!(
        what(0, "restarted"),
        serde_json::json!(["running"]),
        "{list}"
    );
    assert_eq!(what(1, "ok"), false, "{list}");
    assert_eq!(
        what(2, "started"),
        serde_json::json!(["finished"]),
        "{list}"
    );
    assert!(
        recent
            .iter()
            .all(|r| r["at"].as_str().unwrap().ends_with('Z'))
    );
    assert!(
        list["host"]["reloads_refused"].as_u64().unwrap() >= 2,
        "{list}"
    );
    host.stop();
}

/// Kubernetes mounts a ConfigMap as a directory whose files are links through `..data`, itself a
/// link to a timestamped directory. An update (kubelet's atomic writer) writes a new timestamped
/// directory, renames a new link over `..data` and removes the old directory: no file the host
/// watches is written in place. Watching the mounted directory, the host reloads: a changed
/// pipeline file restarts its pipeline, and a changed plugin (a ConfigMap's `binaryData`) is
/// swapped in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_update_through_its_data_link_reloads() {
    let mount = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let m = mount.path();
    let pipeline = |sink: &str| {
        format!(
            "name: cm\nsource: {{ type: generate, rate_per_second: 20, payload: fixed, size: 8 }}\n\
             handlers:\n  - plugin: enrich.wasm\n\
             sinks:\n  out: {{ type: file, path: {} }}\ndead_letter: {{ type: drop }}\n",
            out.path().join(sink).display()
        )
    };
    // One version of the ConfigMap: its timestamped directory.
    let version = |n: u32, yaml: &str, wasm: &[u8]| -> PathBuf {
        let dir = m.join(format!("..2026_12_07_10_00_0{n}.12345678{n}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("cm.yaml"), yaml).unwrap();
        std::fs::write(dir.join("enrich.wasm"), wasm).unwrap();
        dir
    };
    // What kubelet does on an update: a new `..data` link renamed over the old one.
    let publish = |dir: &Path| {
        std::os::unix::fs::symlink(dir.file_name().unwrap(), m.join("..data_tmp")).unwrap();
        std::fs::rename(m.join("..data_tmp"), m.join("..data")).unwrap();
    };
    let lines = |file: &str| {
        std::fs::read_to_string(out.path().join(file))
            .unwrap_or_default()
            .lines()
            .count()
    };
    let first = version(1, &pipeline("v1.txt"), &plugin("uppercase"));
    publish(&first);
    for file in ["cm.yaml", "enrich.wasm"] {
        std::os::unix::fs::symlink(Path::new("..data").join(file), m.join(file)).unwrap();
    }
    let host = Host::start(m, &[]);
    host.wait_ready().await;
    let started = Instant::now();
    while lines("v1.txt") == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "v1 wrote nothing"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The pipeline file changes (its sink's path).
    let second = version(2, &pipeline("v2.txt"), &plugin("uppercase"));
    publish(&second);
    std::fs::remove_dir_all(&first).unwrap();
    let started = Instant::now();
    while lines("v2.txt") == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the update through ..data was not reloaded: {:?}",
            host.json("/reload").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, last) = host.json("/reload").await;
    assert_eq!(last["restarted"], serde_json::json!(["cm"]), "{last}");
    assert_eq!(last["cause"], "watch", "{last}");

    // Only the plugin changes: it is swapped in, the pipeline runs on.
    let json_enrich = plugin("json-enrich");
    let third = version(3, &pipeline("v2.txt"), &json_enrich);
    publish(&third);
    std::fs::remove_dir_all(&second).unwrap();
    let started = Instant::now();
    loop {
        let (_, last) = host.json("/reload").await;
        let swapped = last["swapped"].as_array().cloned().unwrap_or_default();
        if swapped
            .iter()
            .any(|s| s.as_str().unwrap().ends_with(&sha256(&json_enrich)[..12]))
        {
            assert_eq!(last["restarted"], serde_json::json!([]), "{last}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the plugin update through ..data was not swapped in: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(host.json("/pipelines/cm").await.1["state"], "running");
    host.stop();
}
