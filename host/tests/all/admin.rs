//! The admin server as operators use it: health, readiness, metrics checked by `promtool`,
//! status, pause/resume with a bearer token, `sluice status`, and the dashboard in Chromium.
//!
//! Needs `promtool`, Chromium and playwright-core: `scripts/browser-tools.sh` installs them.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{self, repo};

const TOKEN: &str = "test-admin-token";

/// A `sluice run` child with its admin server on an ephemeral port.
struct Host {
    child: Child,
    base: String,
    dir: tempfile::TempDir,
}

impl Host {
    /// Start `sluice run` on `pipelines` (file name → YAML) and wait for the admin address.
    fn start(pipelines: &[(&str, &str)]) -> Host {
        let dir = tempfile::tempdir().unwrap();
        for (name, yaml) in pipelines {
            std::fs::write(dir.path().join(name), yaml).unwrap();
        }
        let (child, base, mut stderr) = common::run_with_admin(&[dir.path().as_os_str()], TOKEN);
        // Keep draining stderr so the child never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Host { child, base, dir }
    }

    fn get(&self, path: &str) -> (u16, String) {
        let r = reqwest::blocking::get(format!("{}{path}", self.base)).unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    fn json(&self, path: &str) -> Value {
        let (code, body) = self.get(path);
        assert_eq!(code, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// `GET path` with the admin token, as JSON.
    fn json_with_token(&self, path: &str) -> Value {
        let r = reqwest::blocking::Client::new()
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        r.json().unwrap()
    }

    fn post(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let client = reqwest::blocking::Client::new();
        let mut req = client.post(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    /// Deliveries the pipeline pulled; 0 while it is not listed yet (still being built).
    fn received(&self, name: &str) -> u64 {
        let (code, body) = self.get(&format!("/pipelines/{name}"));
        if code == 404 {
            return 0;
        }
        assert_eq!(code, 200, "{body}");
        let status: Value = serde_json::from_str(&body).unwrap();
        status["totals"]["received"].as_u64().unwrap()
    }

    fn wait_for(&self, what: &str, mut done: impl FnMut(&Host) -> bool) {
        let started = Instant::now();
        while !done(self) {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A steady generator → json-enrich → file pipeline (every 10th event malformed: dead-lettered).
fn steady(dir_note: &str) -> String {
    let plugin = repo().join("plugins/dist/json-enrich.wasm");
    assert!(plugin.is_file(), "run scripts/build-plugins.sh first");
    format!(
        "# {dir_note}\nname: steady\nsource: {{ type: generate, rate_per_second: 200, payload: envelope, malformed_every: 10 }}\n\
         handlers:\n  - plugin: {}\nsinks: {{ out: {{ type: drop }} }}\ndead_letter: {{ type: drop }}\n",
        plugin.display()
    )
}

#[test]
fn health_metrics_status_and_pause_resume() {
    let host = Host::start(&[("steady.yaml", &steady("admin test"))]);
    assert_eq!(host.get("/healthz"), (200, "ok\n".to_owned()));
    host.wait_for("steady to be ready", |h| h.get("/readyz").0 == 200);
    host.wait_for("messages to flow", |h| h.received("steady") > 100);

    // Every state-changing call needs the token.
    assert_eq!(host.post("/pipelines/steady/pause", None).0, 401);
    assert_eq!(host.post("/pipelines/steady/pause", Some("wrong")).0, 401);
    assert_eq!(host.post("/pipelines/nope/pause", Some(TOKEN)).0, 404);
    assert_eq!(host.get("/pipelines/nope").0, 404);

    let status = host.json("/pipelines/steady");
    assert_eq!(status["state"], "running");
    assert_eq!(status["source"], "generate");
    assert_eq!(status["sinks"], serde_json::json!(["out"]));
    assert_eq!(status["handlers"][0]["name"], "json-enrich");
    assert_eq!(status["handlers"][0]["sha256"].as_str().unwrap().len(), 64);
    // Rates come from samples taken once a second.
    host.wait_for("a rate", |h| {
        h.json("/pipelines/steady")["rates"]["received"]
            .as_f64()
            .unwrap()
            > 0.0
    });

    // What the dashboard shows beside the rates: recent latency (end to end and per handler
    // call), per-sink numbers, dead letters by reason (every tenth message is malformed), and
    // the host's version and uptime.
    host.wait_for("recent latency and dead letters by reason", |h| {
        let s = h.json("/pipelines/steady");
        s["end_to_end_latency"]["p99_ms"].as_f64().is_some()
            && s["handlers"][0]["latency"]["p50_ms"].as_f64().is_some()
            && s["dead_letters_by_class"]["invalid"].as_u64().unwrap_or(0) > 0
    });
    let status = host.json("/pipelines/steady");
    let e2e = &status["end_to_end_latency"];
    assert!(
        e2e["p50_ms"].as_f64().unwrap() <= e2e["p99_ms"].as_f64().unwrap(),
        "{e2e}"
    );
    assert!(e2e["count"].as_u64().unwrap() > 0, "{e2e}");
    let sink = &status["sink_totals"][0];
    assert_eq!(sink["name"], "out", "{status}");
    assert_eq!(sink["kind"], "drop", "{status}");
    assert!(sink["outputs"].as_u64().unwrap() > 0, "{status}");
    let list = host.json("/pipelines");
    let version = list["host"]["version"].as_str().unwrap();
    assert!(version.starts_with(env!("CARGO_PKG_VERSION")), "{version}");
    assert!(list["host"]["uptime_seconds"].as_u64().is_some(), "{list}");
    assert!(
        list["host"]["started_at"].as_str().unwrap().ends_with('Z'),
        "{list}"
    );

    // Pause: the state says so and nothing more is pulled.
    let (code, body) = host.post("/pipelines/steady/pause", Some(TOKEN));
    assert_eq!(code, 200, "{body}");
    // The answer is the state after the pause, not before it.
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["state"], "paused", "{body}");
    host.wait_for("the pause", |h| {
        h.json("/pipelines/steady")["state"] == "paused"
    });
    std::thread::sleep(Duration::from_millis(300));
    let frozen = host.received("steady");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        host.received("steady"),
        frozen,
        "a paused pipeline kept pulling"
    );
    let paused = host.json("/pipelines/steady");
    assert_eq!(paused["in_flight"], 0, "{paused}");
    // Nothing in flight: every delivery pulled is settled one way or another, exactly once.
    let t = &paused["totals"];
    let settled = ["acked", "filtered", "discarded", "dead_lettered", "nacked"]
        .iter()
        .map(|k| t[k].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(t["received"].as_u64().unwrap(), settled, "{paused}");
    // Paused on purpose is still ready: the source is connected.
    assert_eq!(host.get("/readyz").0, 200);
    let metrics = host.get("/metrics").1;
    assert!(
        metrics.contains("sluice_pipeline_paused{pipeline=\"steady\"} 1"),
        "{metrics}"
    );

    // The last dead letters (every tenth message is malformed) show with why, apart from the
    // errors, which they do not push out.
    let dead = paused["last_dead_letters"].as_array().unwrap();
    assert!(!dead.is_empty(), "{paused}");
    assert!(
        dead.iter()
            .all(|e| e["message"].as_str().unwrap().contains(": invalid: ")),
        "{paused}"
    );
    // Without `logging.payloads` the payload and header values are withheld even from a caller
    // with the token; its size is shown.
    let with_token = host.json_with_token("/pipelines/steady");
    assert!(
        with_token["last_dead_letters"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["payload_preview"]
                .as_str()
                .unwrap()
                .contains("does not set logging.payloads")
                && e["payload_bytes"].as_u64().unwrap() > 0),
        "{with_token}"
    );

    let (code, body) = host.post("/pipelines/steady/resume", Some(TOKEN));
    assert_eq!(code, 200);
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["state"], "running", "{body}");
    host.wait_for("messages to flow again", |h| {
        h.received("steady") > frozen + 50
    });

    // The exposition passes promtool, and its numbers are the pipeline's.
    let metrics = host.get("/metrics").1;
    promtool_check(&metrics);
    let value = |line_start: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(line_start))
            .unwrap_or_else(|| panic!("no `{line_start}` in\n{metrics}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let received = value("sluice_messages_in_total{pipeline=\"steady\",source=\"generate\"}");
    let out = value("sluice_messages_out_total{pipeline=\"steady\",sink=\"out\"}");
    let dead = value("sluice_dead_lettered_total{pipeline=\"steady\",reason=\"invalid\"}");
    let invalid = value(
        "sluice_handler_errors_total{pipeline=\"steady\",handler=\"json-enrich\",class=\"invalid\"}",
    );
    let in_flight = value("sluice_in_flight{pipeline=\"steady\"}");
    assert!(received > 0.0 && out > 0.0 && dead > 0.0, "{metrics}");
    assert!(in_flight >= 0.0, "{metrics}");
    assert!(invalid >= dead, "{metrics}");
    let calls =
        value("sluice_handler_duration_seconds_count{pipeline=\"steady\",handler=\"json-enrich\"}");
    assert!(calls > 0.0, "{metrics}");
    let e2e = value("sluice_end_to_end_seconds_count{pipeline=\"steady\"}");
    assert!(e2e >= out, "{metrics}");
    assert!(
        metrics
            .contains("sluice_plugin_info{pipeline=\"steady\",handler=\"json-enrich\",sha256=\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_pipeline_up{pipeline=\"steady\"} 1"),
        "{metrics}"
    );

    // `sluice status` prints the same from the command line.
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["status", "--admin-addr", &host.base])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("steady"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains("running") && row.contains("json-enrich ("),
        "{table}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["status", "steady", "--json", "--admin-addr", &host.base])
        .output()
        .unwrap();
    let one: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(one["name"], "steady");
    let _ = host.dir.path();
}

#[test]
fn readyz_names_a_pipeline_whose_source_cannot_connect() {
    let steady = steady("ready one");
    let broken = "name: broken\nsource: { type: rabbitmq, url: \"amqp://guest:guest@127.0.0.1:1/%2f\", queue: nowhere }\n\
                  sinks: { out: { type: drop } }\ndead_letter: { type: drop }\n";
    // A RabbitMQ source on a reachable broker is ready while its queue is empty: connected.
    let live = "name: live\nsource: { type: rabbitmq, url: \"amqp://guest:guest@127.0.0.1:5672/%2f\", queue: sluice-admin-live, declare: true }\n\
                sinks: { out: { type: drop } }\ndead_letter: { type: drop }\n";
    let host = Host::start(&[
        ("steady.yaml", &steady),
        ("broken.yaml", broken),
        ("live.yaml", live),
    ]);
    // Until the pipelines are built the host is not ready either (it has none yet).
    assert_ne!(host.get("/readyz").0, 200);
    host.wait_for("the broken source to fail", |h| {
        let (code, body) = h.get("/pipelines/broken");
        code == 200
            && serde_json::from_str::<Value>(&body).unwrap()["totals"]["source_errors"]
                .as_u64()
                .unwrap()
                > 0
    });
    host.wait_for("the live source to connect", |h| {
        h.json("/pipelines/live")["ready"] == true
    });
    let (code, body) = host.get("/readyz");
    assert_eq!(code, 503, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["ready"], false);
    assert_eq!(body["not_ready"], serde_json::json!(["broken (running)"]));
    let broken = host.json("/pipelines/broken");
    assert_eq!(broken["ready"], false);
    let last = broken["last_errors"].as_array().unwrap().last().unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(last.contains("cannot connect"), "{last}");
    assert!(
        host.get("/metrics")
            .1
            .contains("sluice_source_errors_total{pipeline=\"broken\",source=\"rabbitmq\"}")
    );
}

/// A dead letter's header values and payload are shown only where the pipeline logs payloads
/// (`logging.payloads`), with its `scrub_fields` hashed, as in its log.
#[test]
fn dead_letters_show_a_scrubbed_preview_where_payloads_are_logged() {
    let plugin = repo().join("plugins/dist/json-enrich.wasm");
    // No `event_id`: json-enrich refuses it as invalid.
    let poison = r#"{"event_type":"order.created","card":{"number":"4111111111111111"}}"#;
    let pipeline = format!(
        "name: poison\nsource: {{ type: file, path: input.jsonl }}\nhandlers:\n  - plugin: {}\n\
         sinks: {{ out: {{ type: drop }} }}\ndead_letter: {{ type: drop }}\n\
         logging: {{ payloads: true, scrub_fields: [card.number] }}\n",
        plugin.display()
    );
    let host = Host::start(&[
        ("poison.yaml", &pipeline),
        // Keeps the host up after the file has been read.
        ("steady.yaml", &steady("preview test")),
        ("input.jsonl", &format!("{poison}\n")),
    ]);
    host.wait_for("the poison message to be dead-lettered", |h| {
        h.get("/pipelines/poison").0 == 200
            && h.json("/pipelines/poison")["last_dead_letters"]
                .as_array()
                .is_some_and(|d| !d.is_empty())
    });
    // Without the admin token a caller sees that there were dead letters, not what they held.
    let anonymous = host.json("/pipelines/poison");
    let withheld = anonymous["last_dead_letters"][0]["payload_preview"]
        .as_str()
        .unwrap();
    assert!(withheld.contains("send the admin token"), "{anonymous}");
    let status = host.json_with_token("/pipelines/poison");
    let dead = &status["last_dead_letters"][0];
    let preview = dead["payload_preview"].as_str().unwrap();
    assert!(preview.contains("order.created"), "{dead}");
    assert!(preview.contains("sha256:"), "{dead}");
    assert!(
        !preview.contains("4111"),
        "the scrubbed field leaked: {dead}"
    );
    assert_eq!(dead["payload_bytes"], poison.len(), "{dead}");
    assert_eq!(status["dead_letters_by_class"]["invalid"], 1, "{status}");
}

#[test]
fn dashboard_shows_live_numbers_and_pauses_in_chromium() {
    let browser = repo().join("tests/browser");
    assert!(
        browser.join("node_modules/playwright-core").is_dir(),
        "run scripts/browser-tools.sh first"
    );
    let host = Host::start(&[("steady.yaml", &steady("dashboard test"))]);
    host.wait_for("messages to flow", |h| h.received("steady") > 20);
    let screenshot = host.dir.path().join("dashboard.png");
    let out = Command::new("node")
        .arg(browser.join("dashboard.mjs"))
        .arg(format!("{}/?token={TOKEN}", host.base))
        .arg("steady")
        .arg(&screenshot)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "dashboard test failed:\n{stdout}\n{stderr}"
    );
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["pipeline"], "steady", "{summary}");
    assert_eq!(summary["page_errors"], serde_json::json!([]), "{summary}");
    let mut png = Vec::new();
    std::fs::File::open(&screenshot)
        .unwrap()
        .read_to_end(&mut png)
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"), "no screenshot");
    // The pause went through the API: the engine logged it and the state came back.
    assert_eq!(host.json("/pipelines/steady")["state"], "running");
    if let Ok(keep) = std::env::var("SLUICE_DASHBOARD_SCREENSHOT") {
        std::fs::write(keep, &png).unwrap();
    }
}

fn promtool_check(metrics: &str) {
    use std::io::Write as _;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (run scripts/browser-tools.sh)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One raw HTTP/1.1 request (the test controls every header, `Host` included); the status code.
fn raw_status(base: &str, request_head: &str) -> u16 {
    use std::io::{Read as _, Write as _};
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request_head.as_bytes()).unwrap();
    let mut buf = [0u8; 512];
    let n = stream.read(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

/// DNS rebinding (a page whose own name resolves to 127.0.0.1 sends that name as `Host` and
/// `Origin`), an `Origin` that is not text, and an oversized body are refused before any action
/// runs, with a token and without one.
#[test]
fn the_admin_api_refuses_rebinding_hosts_bad_origins_and_large_bodies() {
    for token in [Some(TOKEN), None] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("slow.yaml"),
            "name: slow\nsource: { type: generate, rate_per_second: 50 }\nsinks: { out: { type: drop } }\ndead_letter: { type: drop }\n",
        )
        .unwrap();
        let (mut child, base, mut stderr) =
            common::run_with_admin(&[dir.path().as_os_str()], token.unwrap_or(""));
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        let port = base.rsplit(':').next().unwrap().to_owned();
        let started = Instant::now();
        while reqwest::blocking::get(format!("{base}/pipelines/slow"))
            .unwrap()
            .status()
            != 200
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the pipeline never started"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let pause = |host: &str, extra: &str| {
            raw_status(
                &base,
                &format!(
                    "POST /pipelines/slow/pause HTTP/1.1\r\nHost: {host}\r\n{auth}{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
                ),
            )
        };
        let rebind = format!("rebind.example:{port}");
        assert_eq!(
            pause(&rebind, &format!("Origin: http://{rebind}\r\n")),
            421,
            "a rebinding name as Host and Origin (token {token:?})"
        );
        assert_eq!(
            raw_status(
                &base,
                &format!("GET /pipelines HTTP/1.1\r\nHost: {rebind}\r\nConnection: close\r\n\r\n")
            ),
            421,
            "reads are refused to a rebinding name too"
        );
        let local = format!("127.0.0.1:{port}");
        assert_eq!(
            pause(&local, "Origin: http://\u{e9}vil.example\r\n"),
            403,
            "an Origin that is not ASCII"
        );
        assert_eq!(
            raw_status(
                &base,
                &format!(
                    "POST /pipelines/slow/pause HTTP/1.1\r\nHost: {local}\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    64 << 20
                ),
            ),
            413,
            "a 64 MiB body is refused before it is read"
        );
        // None of the refused calls paused the pipeline; a proper call does.
        let status: Value = serde_json::from_str(
            &reqwest::blocking::get(format!("{base}/pipelines/slow"))
                .unwrap()
                .text()
                .unwrap(),
        )
        .unwrap();
        assert_ne!(status["state"], "paused", "{status}");
        assert_eq!(pause(&format!("localhost:{port}"), ""), 200);
        let _ = child.kill();
        let _ = child.wait();
    }
}
