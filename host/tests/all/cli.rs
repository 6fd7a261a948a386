//! The `sluice` command as a user runs it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::repo;

fn sluice() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.env("SLUICE_CACHE_DIR", crate::common::plugin_cache_dir())
        .env("RUST_LOG", "info")
        // Tests run side by side: each host's admin server takes a port of its own.
        .env("SLUICE_ADMIN_ADDR", "127.0.0.1:0");
    cmd
}

/// The admin server's address from a `sluice run` log line that announces it.
fn admin_addr(line: &str) -> Option<String> {
    line.contains("admin server listening")
        .then(|| line.split("addr=").nth(1))
        .flatten()
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
}

/// `/readyz` (status and body) and `sluice status`'s output, of the host at `admin`.
fn readiness(admin: &str) -> (u16, String, String) {
    let readyz = reqwest::blocking::get(format!("http://{admin}/readyz")).unwrap();
    let code = readyz.status().as_u16();
    let body = readyz.text().unwrap();
    let status = sluice()
        .args(["status", "--admin-addr", admin])
        .output()
        .unwrap();
    (
        code,
        body,
        String::from_utf8_lossy(&status.stdout).into_owned(),
    )
}

fn require_plugins() {
    assert!(
        repo().join("plugins/dist/json-enrich.wasm").is_file(),
        "run scripts/build-plugins.sh first"
    );
}

/// Every example needs every broker family: this runs in the default build, where all are in.
#[test]
#[cfg(all(
    feature = "kafka",
    feature = "rabbitmq",
    feature = "sqs",
    feature = "azure",
    feature = "zeromq"
))]
fn validate_accepts_every_example_pipeline() {
    require_plugins();
    let out = sluice()
        .arg("validate")
        .arg(repo().join("pipelines"))
        .arg(repo().join("pipelines/brokers"))
        .arg(repo().join("pipelines/languages"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let examples = std::fs::read_dir(repo().join("pipelines"))
        .unwrap()
        .chain(std::fs::read_dir(repo().join("pipelines/brokers")).unwrap())
        .chain(std::fs::read_dir(repo().join("pipelines/languages")).unwrap())
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "yaml")
        })
        .count();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{examples} pipeline(s) valid")),
        "every example, broker and language ones included"
    );
}

/// Only in a build without Kafka (scripts/test.sh runs this file's tests again in a RabbitMQ-only
/// build, `--no-default-features --features rabbitmq`): a pipeline naming a connector left out of
/// the build is refused with the feature that brings it in, and starts nothing.
#[test]
#[cfg(not(feature = "kafka"))]
fn a_connector_left_out_of_the_build_is_refused_naming_its_feature() {
    let file = repo().join("pipelines/brokers/kafka-to-rabbitmq.yaml");
    for verb in ["validate", "run"] {
        let out = sluice().arg(verb).arg(&file).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{verb}: {stderr}");
        assert!(
            stderr.contains(
                "source.type: connector `kafka` is not built into this sluice: build it with the \
                 cargo feature `kafka`"
            ),
            "{verb}: {stderr}"
        );
    }
}

/// `sluice schema` prints the schema that is committed as `docs/sluice.schema.json` (which the
/// config crate's tests keep equal to the types, and the independent validator checks every
/// example pipeline against). The default build's: a build without some connectors prints a
/// smaller one.
#[test]
#[cfg(all(
    feature = "kafka",
    feature = "rabbitmq",
    feature = "sqs",
    feature = "azure",
    feature = "zeromq"
))]
fn schema_prints_the_committed_pipeline_schema() {
    let out = sluice().arg("schema").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("docs/sluice.schema.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(printed, committed);
    assert_eq!(printed["title"], "Sluice pipeline file");
}

#[test]
fn validate_prints_every_error_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "source: { type: memory }\nsinks: { out: { type: kafkaa } }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.yaml"),
        "source: { type: memory, queue: q }\nsinks: { out: { type: drop } }\ndead_letter: { type: drop }\nhandlers: [ { plugin: missing.wasm } ]\n",
    )
    .unwrap();
    let out = sluice().arg("validate").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let a = dir.path().join("a.yaml").display().to_string();
    let b = dir.path().join("b.yaml").display().to_string();
    assert!(
        stderr.contains(&format!("{a}:1:9: source.queue: missing field")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{a}:1:1: dead_letter: missing field")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{a}:2:17: sinks.out.type: unknown type `kafkaa`")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{b}:4:15: handlers[0].plugin: plugin ")),
        "plugins are checked too: {stderr}"
    );
    assert!(stderr.contains("4 error(s)"), "{stderr}");
}

/// Fifteen mistakes of different kinds in one file (the schema's, cross-field rules, plugins
/// that are missing or not components, a directory that does not exist, bounds): one run of
/// `validate` reports each, at its place, whatever else is wrong in the file.
#[test]
fn validate_reports_every_planted_mistake_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        r#"name: bad name!
source:
  type: generate
  count: many
handlers:
  - plugin: missing.wasm
  - plugin: bad.yaml
  - plugin: missing2.wasm
    limits: { memory_mb: 0 }
  - plugin: missing3.wasm
    name: dup
  - plugin: missing4.wasm
    name: dup
sinks:
  out:
    type: file
    path: /nonexistent/dir/out.jsonl
    codec: xml
  other: { type: stdout, bogus: 1 }
default_sink: nope
dead_letter: { type: nosuch }
delivery:
  max_in_flight: 2305843009213693952
  retry: { base_delay_ms: 5000, max_delay_ms: 10 }
"#,
    )
    .unwrap();
    let out = sluice().arg("validate").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want = [
        "1:1: name: `bad name!` is not a valid pipeline name",
        "4:3: source.count: invalid type: string \"many\"",
        "6:5: handlers[0].plugin: plugin ",
        "7:5: handlers[1].plugin: plugin ",
        "9:15: handlers[2].limits.memory_mb: must be between 1 and 4096",
        "10:5: handlers[3].plugin: plugin ",
        "12:5: handlers[4]: the name `dup` is taken by handlers[3]",
        "12:5: handlers[4].plugin: plugin ",
        "17:5: sinks.out.path: the directory /nonexistent/dir does not exist",
        "18:5: sinks.out.codec: unknown value `xml`",
        "19:26: sinks.other.bogus: unknown field",
        "20:1: default_sink: names no sink `nope`",
        "21:16: dead_letter.type: unknown type `nosuch`",
        "23:3: delivery.max_in_flight: must be between 1 and 1000000",
        "24:12: delivery.retry.base_delay_ms: must not exceed retry.max_delay_ms",
    ];
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("bad.yaml:")).collect();
    // Why each plugin was refused (the paths are absolute).
    for (i, why) in [
        (2, "missing.wasm: cannot read"),
        (3, "bad.yaml: is not a WebAssembly file"),
        (5, "missing3.wasm: cannot read"),
        (7, "missing4.wasm: cannot read"),
    ] {
        assert!(
            lines.get(i).is_some_and(|l| l.contains(why)),
            "line {i}: {why}\n{stderr}"
        );
    }
    for (line, want) in lines.iter().zip(want) {
        assert!(
            line.contains(&format!("bad.yaml:{want}")),
            "{line}\nwanted {want}\n{stderr}"
        );
    }
    assert_eq!(lines.len(), want.len(), "{stderr}");
    assert!(stderr.contains("15 error(s)"), "{stderr}");
}

/// Paths in messages read as people write them: no `.` components, whether the user typed
/// them (`dir/./p.yaml`) or a relative path in the file was joined to its folder (`./p.wasm`).
#[test]
fn validate_shows_paths_without_dot_components() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "name: p
source: { type: generate }
handlers:
  - plugin: ./missing.wasm
sinks:
  out: { type: file, path: ./nodir/out.jsonl }
dead_letter: { type: drop }
",
    )
    .unwrap();
    let out = sluice()
        .arg("validate")
        .arg(dir.path().join(".").join("p.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let d = dir.path().display();
    assert!(
        stderr.contains(&format!(
            "{d}/p.yaml:4:5: handlers[0].plugin: plugin {d}/missing.wasm: cannot read"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("the directory {d}/nodir does not exist")),
        "{stderr}"
    );
    assert!(!stderr.contains("/./"), "{stderr}");
}

/// What `run` would find building the connectors, without connecting: a file source's missing
/// file, a sink's missing directory, Kafka's TLS files (relative to the pipeline file; in builds
/// with Kafka).
#[test]
fn validate_makes_the_connectors_local_checks() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.yaml");
    std::fs::write(
        &file,
        "source: { type: file, path: missing.jsonl }\n\
         sinks: { out: { type: file, path: nowhere/out.jsonl } }\ndead_letter: { type: drop }\n\
         delivery: { guarantee: at_most_once }\n",
    )
    .unwrap();
    let out = sluice().arg("validate").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let missing = dir.path().join("missing.jsonl");
    assert!(
        stderr.contains(&format!("source.path: cannot open {}", missing.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("sinks.out.path: the directory "),
        "{stderr}"
    );
    assert!(stderr.contains("2 error(s)"), "{stderr}");
    #[cfg(feature = "kafka")]
    {
        std::fs::write(
            &file,
            "source: { type: kafka, brokers: \"127.0.0.1:1\", topics: [t], group: g, tls: { ca_file: certs/ca.pem } }\n\
             sinks: { out: { type: drop } }\ndead_letter: { type: drop }\n",
        )
        .unwrap();
        let out = sluice().arg("validate").arg(&file).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let ca = dir.path().join("certs/ca.pem");
        assert!(
            stderr.contains(&format!(
                "source.tls.ca_file: {} is not a readable file",
                ca.display()
            )),
            "{stderr}"
        );
        assert!(stderr.contains("1 error(s)"), "{stderr}");
    }
}

/// A path that never ends (a device) or a file too large is an error at once, never a host that
/// reads until it is killed.
#[test]
fn validate_refuses_a_device_and_an_oversized_file() {
    let out = sluice().arg("validate").arg("/dev/zero").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/dev/zero: cannot read: not a regular file"),
        "{stderr}"
    );
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yaml");
    std::fs::write(&big, "#".repeat(5 << 20)).unwrap();
    let out = sluice().arg("validate").arg(&big).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("over the limit of 4194304 bytes"),
        "{stderr}"
    );
    // A plugin path naming a device is refused the same way.
    let pipeline = dir.path().join("p.yaml");
    std::fs::write(
        &pipeline,
        "source: { type: generate, count: 1 }\nhandlers: [ { plugin: /dev/zero } ]\nsinks: { out: { type: drop } }\ndead_letter: { type: drop }\n",
    )
    .unwrap();
    let out = sluice().arg("validate").arg(&pipeline).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("handlers[0].plugin: plugin /dev/zero: cannot read: not a regular file"),
        "{stderr}"
    );
}

#[test]
fn run_starts_nothing_when_a_file_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.yaml"), "source: { type: generate }\n").unwrap();
    let out = sluice().arg("run").arg(dir.path()).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sinks: missing field"), "{stderr}");
    assert!(stderr.contains("nothing was started"), "{stderr}");
}

/// The README's first command, `./scripts/quickstart.sh`, without its setup (the test command
/// has just run it): it runs the quickstart pipeline with the binary of this build.
#[test]
fn quickstart_enriches_and_dead_letters_the_malformed_events() {
    require_plugins();
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.jsonl");
    let binary = Path::new(env!("CARGO_BIN_EXE_sluice"));
    // quickstart.sh runs `$CARGO_TARGET_DIR/debug/sluice`: this test's binary.
    let target = binary.parent().unwrap().parent().unwrap();
    assert!(binary.ends_with("debug/sluice"), "{}", binary.display());
    let out = Command::new(repo().join("scripts/quickstart.sh"))
        .env("SLUICE_CACHE_DIR", crate::common::plugin_cache_dir())
        .env("RUST_LOG", "info")
        .env("SLUICE_ADMIN_ADDR", "127.0.0.1:0")
        .env("SLUICE_SKIP_SETUP", "1")
        .env("CARGO_TARGET_DIR", target)
        .env("QUICKSTART_COUNT", "40")
        .env("QUICKSTART_RATE", "10000")
        .env("QUICKSTART_DEAD_LETTER", &dead)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 36, "40 events, 4 malformed: {stdout}");
    assert!(lines.iter().all(|l| l.contains("processed_by")), "{stdout}");
    let users = lines
        .iter()
        .filter(|l| l.contains("\"route\":\"users\""))
        .count();
    // Events 3, 7, 11, … 39 are user events; 19 and 39 are among the malformed ones.
    assert_eq!(
        users, 8,
        "user events are routed to the users sink: {stdout}"
    );
    let dead = std::fs::read_to_string(&dead).unwrap();
    assert_eq!(dead.lines().count(), 4);
    assert!(
        dead.lines()
            .all(|l| l.contains("[\"x-sluice-error-class\",\"invalid\"]")),
        "{dead}"
    );
    assert!(stderr.contains("dead_lettered=4"), "{stderr}");
}

#[test]
fn sigterm_drains_in_flight_work_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("endless.yaml");
    std::fs::write(
        &file,
        "source: { type: generate, rate_per_second: 500, payload: fixed, size: 16 }\nsinks: { out: { type: stdout } }\ndead_letter: { type: drop }\n",
    )
    .unwrap();
    let mut child = sluice()
        .arg("run")
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let started = Instant::now();
    // Wait for output to flow, then ask it to stop.
    for _ in 0..20 {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "output ended early"
        );
        assert!(started.elapsed() < Duration::from_secs(60), "no output");
    }
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    std::io::copy(&mut stdout, &mut std::io::sink()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{:?} {stderr}", out.status);
    assert!(stderr.contains("shutdown requested"), "{stderr}");
    assert!(stderr.contains("end=Drained"), "{stderr}");
}

/// `sluice plugin inspect x.wasm | head -1`: the reader closes the pipe early. The command ends
/// quietly, without a panic. Here the pipe's read end is closed before the command starts, so
/// every write meets a closed pipe.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    require_plugins();
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = sluice()
        .args(["plugin", "inspect"])
        .arg(repo().join("plugins/dist/json-enrich.wasm"))
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

#[test]
fn plugin_inspect_describes_a_handler_and_refuses_another_world() {
    require_plugins();
    let out = sluice()
        .args(["plugin", "inspect"])
        .arg(repo().join("plugins/dist/json-enrich.wasm"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("world:   sluice:plugin/handler@0.2.0 (with lifecycle.init)"),
        "{text}"
    );
    assert!(
        text.contains("sluice:plugin/log@0.2.0 (instance)"),
        "{text}"
    );
    assert!(text.contains("handle-batch: func"), "{text}");

    let out = sluice()
        .args(["plugin", "inspect"])
        .arg(repo().join("plugins/dist/wrong-world.wasm"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("not a Sluice handler: does not implement world sluice:plugin/handler@0.2.0 nor sluice:plugin/handler@0.1.0"),
        "{text}"
    );
    assert!(text.contains("greet: func"), "{text}");
}

#[test]
fn help_lists_the_commands() {
    let out = sluice().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["run", "validate", "plugin"] {
        assert!(text.contains(cmd), "{text}");
    }
}

/// JSON logs: every per-message line names the pipeline, the message and its trace; payloads
/// appear only because the pipeline asks, with the configured fields hashed.
#[test]
fn json_logs_carry_trace_ids_and_scrubbed_payloads_only_when_asked() {
    require_plugins();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        concat!(
            r#"{"event_type":"order.created","event_id":"e1","version":"1","timestamp":1,"#,
            r#""metadata":{"producer":"shop"},"data":{"card":{"number":"4111111111111111"}}}"#,
            "\nnot json at all\n"
        ),
    )
    .unwrap();
    let pipeline = |name: &str, logging: &str| {
        format!(
            "name: {name}\nsource: {{ type: file, path: {} }}\nhandlers:\n  - plugin: {}\n    \
             config: {{ route.order: out }}\nsinks: {{ out: {{ type: drop }} }}\n\
             dead_letter: {{ type: drop }}\n{logging}",
            input.display(),
            repo().join("plugins/dist/json-enrich.wasm").display()
        )
    };
    let asked = dir.path().join("asked.yaml");
    std::fs::write(
        &asked,
        pipeline(
            "asked",
            "logging: { payloads: true, scrub_fields: [data.card.number] }\n",
        ),
    )
    .unwrap();
    let quiet = dir.path().join("quiet.yaml");
    std::fs::write(&quiet, pipeline("quiet", "")).unwrap();
    let out = sluice()
        .args(["--log-format", "json", "run"])
        .arg(&asked)
        .arg(&quiet)
        // Spans go nowhere (nothing listens there); trace ids are made all the same.
        .args(["--otlp-endpoint", "http://127.0.0.1:9"])
        .env(
            "RUST_LOG",
            "debug,sluice::telemetry=info,opentelemetry=off,reqwest=off,hyper_util=off",
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let per_message: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["message"] == "pulled" || l["message"] == "dead-lettering")
        .collect();
    // asked: 2 pulled + 1 dead-lettered; quiet: 1 dead-lettered, no `pulled` line.
    assert_eq!(per_message.len(), 4, "{stderr}");
    for line in &per_message {
        assert!(line["pipeline"].is_string(), "{line}");
        assert!(!line["message_id"].as_str().unwrap().is_empty(), "{line}");
        let trace_id = line["trace_id"].as_str().unwrap();
        assert!(trace_id.len() == 32 && trace_id != "0".repeat(32), "{line}");
    }
    assert!(
        !stderr.contains("4111111111111111"),
        "a scrubbed field leaked: {stderr}"
    );
    assert!(
        !stderr.contains("not json at all"),
        "a non-JSON payload leaked: {stderr}"
    );
    let pulled: Vec<&str> = per_message
        .iter()
        .filter(|l| l["message"] == "pulled")
        .map(|l| l["payload"].as_str().unwrap())
        .collect();
    assert_eq!(pulled.len(), 2, "{stderr}");
    assert!(pulled[0].contains("\"number\":\"sha256:"), "{}", pulled[0]);
    assert!(
        pulled[0].contains("\"event_type\":\"order.created\""),
        "{}",
        pulled[0]
    );
    assert_eq!(pulled[1], "<withheld: 15 bytes, not JSON>");
    let quiet_lines: Vec<&&serde_json::Value> = per_message
        .iter()
        .filter(|l| l["pipeline"] == "quiet")
        .collect();
    assert_eq!(quiet_lines.len(), 1, "{stderr}");
    assert!(
        quiet_lines[0].get("payload").is_none(),
        "{}",
        quiet_lines[0]
    );
}

/// `sluice test`: the example test files pass; a wrong expectation fails with a readable diff.
#[test]
fn sluice_test_runs_pipeline_unit_tests_and_shows_a_diff() {
    require_plugins();
    let out = sluice()
        .arg("test")
        .arg(repo().join("pipelines/tests"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.test.yaml");
    std::fs::write(
        &wrong,
        format!(
            "pipeline: {}\ntests:\n  - name: wrong route\n    input:\n      - json: {{ event_type: user.x, event_id: e, version: \"1\", timestamp: 1, metadata: {{ producer: p }}, data: {{}} }}\n    expect:\n      sinks:\n        orders:\n          - json_contains: {{ event_type: order.x }}\n  - name: bad envelope\n    input:\n      - payload: nope\n    expect:\n      dead_letter:\n        - error_class: fatal\n",
            repo().join("pipelines/quickstart.yaml").display()
        ),
    )
    .unwrap();
    let out = sluice().arg("test").arg(&wrong).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL  ") && stdout.contains("wrong route"),
        "{stdout}"
    );
    assert!(
        stdout.contains("sink `orders`: expected 1 message(s), got 0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("sink `users`: expected 0 message(s), got 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"event_type\":\"user.x\""),
        "the diff shows what arrived: {stdout}"
    );
    assert!(
        stdout.contains("dead_letter[0]: error_class: expected \"fatal\", got Some(\"invalid\")"),
        "{stdout}"
    );
    assert!(stdout.contains("0 passed, 2 failed"), "{stdout}");

    std::fs::write(
        &wrong,
        "pipeline: x.yaml\ntests:\n  - input: []\n    expect: { sinkz: {} }\n",
    )
    .unwrap();
    let out = sluice().arg("test").arg(&wrong).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("tests[0].expect.sinkz: unknown field"),
        "{stdout}"
    );
}

/// `sluice new`: a project builds with its own script and passes its own test file through
/// `sluice test` after it is moved elsewhere (a Rust project carries its SDK). The guides run the
/// other languages' projects (`docs.rs`); TypeScript is here. The toolchains come from
/// scripts/build-handlers.sh and rustup (Rust).
#[test]
fn sluice_new_projects_build_and_pass_their_own_tests_after_a_move() {
    let tools = std::env::var("SLUICE_TOOLS").unwrap_or_else(|_| "/var/tmp/sluice-tools".into());
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_sluice")).parent().unwrap();
    let path = format!(
        "{}:{tools}/venv/bin:{tools}/npm/node_modules/.bin:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let written = tempfile::tempdir().unwrap();
    let parent = tempfile::tempdir().unwrap();
    for (lang, name) in [("ts", "ts-tagger"), ("rust", "rs-tagger")] {
        let out = sluice()
            .args(["new", name, "--lang", lang, "--dir"])
            .arg(written.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(written.path().join(name), parent.path().join(name)).unwrap();
        let dir = parent.path().join(name);
        let built = Command::new(dir.join("build.sh"))
            .env("PATH", &path)
            // A Rust project builds into a target directory shared between runs.
            .env(
                "CARGO_TARGET_DIR",
                std::env::temp_dir().join("sluice-new-target"),
            )
            .output()
            .unwrap();
        assert!(
            built.status.success(),
            "{lang}: build.sh failed:\n{}{}",
            String::from_utf8_lossy(&built.stdout),
            String::from_utf8_lossy(&built.stderr)
        );
        let tested = sluice()
            .arg("test")
            .arg(dir.join(format!("{name}.test.yaml")))
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&tested.stdout);
        assert!(
            tested.status.success(),
            "{lang}: {report}{}",
            String::from_utf8_lossy(&tested.stderr)
        );
        assert!(report.contains("2 passed, 0 failed"), "{lang}: {report}");
        // The folder is a pipeline directory: its unit test file is not read as a pipeline.
        let validated = sluice().arg("validate").arg(&dir).output().unwrap();
        assert!(
            validated.status.success(),
            "{lang}: sluice validate {}: {}{}",
            dir.display(),
            String::from_utf8_lossy(&validated.stdout),
            String::from_utf8_lossy(&validated.stderr)
        );
    }
    let out = sluice()
        .args(["new", "ts-tagger", "--lang", "python", "--dir"])
        .arg(parent.path())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "an existing project is never overwritten"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}

/// `--sdk-path` must name the Rust SDK: anything else is refused before a file is written.
#[test]
fn sluice_new_refuses_an_sdk_path_that_is_not_the_sdk() {
    let parent = tempfile::tempdir().unwrap();
    for (sdk, why) in [
        (PathBuf::from("/nonexistent"), "no Cargo.toml there"),
        (repo().join("host"), "not the `sluice-sdk` crate's"),
    ] {
        let out = sluice()
            .args(["new", "rs", "--lang", "rust", "--sdk-path"])
            .arg(&sdk)
            .arg("--dir")
            .arg(parent.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{}: {stderr}", sdk.display());
        assert!(stderr.contains(why), "{}: {stderr}", sdk.display());
        assert!(!parent.path().join("rs").exists(), "nothing written");
    }
}

/// SIGTERM while a reload is compiling a large plugin (a Python handler, seconds to compile on a
/// fresh cache): the host drains what runs and exits without waiting for the reload, which is
/// cut short (the pipeline it was starting never starts).
#[test]
fn sigterm_during_a_reload_does_not_wait_for_it() {
    let python = repo().join("plugins/dist/python-crash.wasm");
    assert!(python.is_file(), "run scripts/build-handlers.sh first");
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("steady.yaml"),
        "name: steady\nsource: { type: generate, rate_per_second: 200, payload: fixed, size: 16 }\nsinks: { out: { type: stdout } }\ndead_letter: { type: drop }\n",
    )
    .unwrap();
    let mut child = sluice()
        .arg("run")
        .arg(dir.path())
        // A cache of its own: the reload below must compile the Python handler.
        .env("SLUICE_CACHE_DIR", cache.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    for _ in 0..5 {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "output ended early"
        );
    }
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for l in stderr.lines().map_while(Result::ok) {
            if lines_tx.send(l).is_err() {
                break;
            }
        }
    });
    // A new pipeline file: the watcher reloads, and the reload compiles its handler.
    std::fs::write(
        dir.path().join("slow.yaml"),
        format!(
            "name: slow\nsource: {{ type: generate, rate_per_second: 10, payload: fixed, size: 8 }}\nhandlers:\n  - name: crash\n    plugin: {}\n    limits: {{ memory_mb: 128 }}\nsinks: {{ out: {{ type: drop }} }}\ndead_letter: {{ type: drop }}\n",
            python.display()
        ),
    )
    .unwrap();
    let mut log = Vec::new();
    let mut admin = None;
    loop {
        let l = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the reload started compiling the handler within 60 s");
        admin = admin.or_else(|| admin_addr(&l));
        let compiling = l.contains("compiling plugin") && l.contains("python-crash");
        log.push(l);
        if compiling {
            break;
        }
    }
    // While the new pipeline's handler compiles, /readyz names it and says what it waits for;
    // the host, which runs `steady`, stays ready.
    let admin = admin.expect("the admin server's address in the log");
    let (code, body, status) = readiness(&admin);
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("slow (starting: loading its handlers and connectors"),
        "{body}"
    );
    assert!(
        status.contains("starting: slow (starting: loading its handlers")
            && status.contains("steady"),
        "{status}"
    );
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    // A hang guard, not a timing assertion: the host must exit on its own.
    let exited = (0..1200).find_map(|_| {
        std::thread::sleep(Duration::from_millis(100));
        child.try_wait().unwrap()
    });
    let Some(exit) = exited else {
        let _ = child.kill();
        panic!("still running 120 s after SIGTERM:\n{}", log.join("\n"));
    };
    log.extend(lines.try_iter());
    while let Ok(l) = lines.recv_timeout(Duration::from_secs(2)) {
        log.push(l);
    }
    let log = log.join("\n");
    assert_eq!(exit.code(), Some(0), "{log}");
    assert!(log.contains("shutdown requested"), "{log}");
    assert!(
        !log.contains("plugin compiled") && !log.contains("pipeline=slow"),
        "the reload was waited for:\n{log}"
    );
}

/// The Rust, Python, JavaScript and AssemblyScript guides show their template's handler as `sluice new` writes it (Rust's
/// crate comment left out): a guide cannot drift from what users get.
#[test]
fn the_guides_show_the_template_handlers() {
    for (guide, intro, lang, template, name) in [
        (
            "docs/writing-handlers.md",
            "and `src/lib.rs` is a complete handler",
            "rust",
            "host/templates/rust/src/lib.rs",
            "enrich",
        ),
        (
            "docs/handlers/python.md",
            "The template's `app.py`",
            "python",
            "host/templates/python/app.py",
            "my-handler",
        ),
        (
            "docs/handlers/assemblyscript.md",
            "The template's `assembly/handler.ts`",
            "ts",
            "host/templates/assemblyscript/assembly/handler.ts",
            "my-handler",
        ),
        (
            "docs/handlers/javascript.md",
            "The template's `handler.js`",
            "js",
            "host/templates/js/handler.js",
            "my-handler",
        ),
    ] {
        let text = std::fs::read_to_string(repo().join(guide)).unwrap();
        let after = text
            .split(intro)
            .nth(1)
            .unwrap_or_else(|| panic!("{guide} introduces the template's handler"));
        let shown = after
            .split(&format!("```{lang}\n"))
            .nth(1)
            .and_then(|block| block.split("```").next())
            .unwrap_or_else(|| panic!("{guide}: a {lang} block after the introduction"));
        let template = std::fs::read_to_string(repo().join(template)).unwrap();
        // Rust's crate doc comment is left out of the guide; Python's docstring is shown.
        let template: String = template
            .lines()
            .skip_while(|l| l.starts_with("//!") || (lang == "rust" && l.is_empty()))
            .map(|l| format!("{}\n", l.replace("{{name}}", name)))
            .collect();
        assert_eq!(shown, template, "{guide}");
    }
}

/// The command-line conventions: completions for the usual shells, a man page, `--version`
/// naming the commit, `--lang typescript` for `ts`, and a hint when the admin port is taken.
#[test]
fn completions_man_page_version_and_hints() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = sluice().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("sluice") && script.contains("validate"),
            "{shell}: {script}"
        );
    }
    let man = sluice().arg("man").output().unwrap();
    assert!(man.status.success());
    assert!(String::from_utf8_lossy(&man.stdout).contains(".TH sluice"));
    let version = sluice().arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(
        version.starts_with("sluice ") && version.contains("commit "),
        "{version}"
    );

    let parent = tempfile::tempdir().unwrap();
    let out = sluice()
        .args(["new", "tsx", "--lang", "typescript", "--dir"])
        .arg(parent.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(parent.path().join("tsx/handler.ts").is_file());

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let file = parent.path().join("p.yaml");
    std::fs::write(
        &file,
        "name: p\nsource: { type: generate, count: 1 }\nsinks: { out: { type: drop } }\ndead_letter: { type: drop }\n",
    )
    .unwrap();
    let out = sluice()
        .arg("run")
        .arg(&file)
        .args(["--admin-addr", &addr])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the address is in use") && stderr.contains("--admin-addr 127.0.0.1:0"),
        "{stderr}"
    );
}

/// `run` refuses to start with every bad plugin named, as `validate` would, not just the first.
#[test]
fn run_names_every_bad_plugin_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["bad1.wasm", "bad2.wasm", "bad3.wasm"] {
        std::fs::write(dir.path().join(bad), "not wasm").unwrap();
    }
    let file = dir.path().join("p.yaml");
    std::fs::write(
        &file,
        "name: p\nsource: { type: generate, count: 1 }\nhandlers:\n  - plugin: bad1.wasm\n  - plugin: bad2.wasm\n  - plugin: bad3.wasm\nsinks: { out: { type: drop } }\ndead_letter: { type: drop }\n",
    )
    .unwrap();
    let out = sluice().arg("run").arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for (i, bad) in ["bad1.wasm", "bad2.wasm", "bad3.wasm"].iter().enumerate() {
        assert!(
            stderr.contains(&format!(
                "handlers[{i}].plugin: plugin {}",
                dir.path().join(bad).display()
            )),
            "{bad}: {stderr}"
        );
    }
    assert!(
        stderr.contains("3 error(s) in pipelines; nothing was started"),
        "{stderr}"
    );
    assert!(!stderr.contains("pipeline started"), "{stderr}");
}

/// `scripts/release.sh` (with this build's binary): an archive that unpacks into a prefix as the
/// README says, with the man page, completions, SDK, WIT and schema, and whose `sluice` needs
/// nothing from this checkout (its SDK copy is a valid `--sdk-path`).
#[test]
fn the_release_archive_installs_into_a_prefix() {
    let out = tempfile::tempdir().unwrap();
    let made = Command::new(repo().join("scripts/release.sh"))
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_sluice"))
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}{}",
        String::from_utf8_lossy(&made.stdout),
        String::from_utf8_lossy(&made.stderr)
    );
    let archive = out.path().join("sluice.tar.gz");
    assert!(archive.is_file(), "no sluice.tar.gz link");
    let prefix = tempfile::tempdir().unwrap();
    let unpacked = Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(prefix.path())
        .args(["--strip-components", "1"])
        .status()
        .unwrap();
    assert!(unpacked.success());
    let p = prefix.path();
    for file in [
        "share/man/man1/sluice.1",
        "share/bash-completion/completions/sluice",
        "share/zsh/site-functions/_sluice",
        "share/fish/vendor_completions.d/sluice.fish",
        "share/sluice/sdk/Cargo.toml",
        "share/sluice/sdk/src/lib.rs",
        "share/sluice/wit/v0.1/plugin.wit",
        "share/sluice/wit/v0.2/plugin.wit",
        "share/sluice/templates/rust/src/lib.rs",
        "share/sluice/sluice.schema.json",
        "share/doc/sluice/README.md",
    ] {
        let text = std::fs::read_to_string(p.join(file)).unwrap_or_default();
        assert!(!text.is_empty(), "{file} is missing or empty");
    }
    let man = std::fs::read_to_string(p.join("share/man/man1/sluice.1")).unwrap();
    assert!(
        man.contains(".TH sluice"),
        "not a man page: {}",
        &man[..man.len().min(200)]
    );
    let installed = p.join("bin/sluice");
    let version = Command::new(&installed).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("sluice "));
    let projects = tempfile::tempdir().unwrap();
    let created = Command::new(&installed)
        .args(["new", "from-prefix", "--lang", "rust", "--sdk-path"])
        .arg(p.join("share/sluice/sdk"))
        .arg("--dir")
        .arg(projects.path())
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
}

/// At start-up, while a handler's first load compiles it, `/readyz` answers 503 naming the
/// pipeline and what it waits for, and `sluice status` says the same; once it runs, 200.
#[test]
fn readyz_names_the_pipeline_still_starting_at_start_up() {
    // Go's component (4 MB) takes seconds to compile on a fresh cache: time to ask.
    let go = repo().join("plugins/dist/go-enrich.wasm");
    assert!(go.is_file(), "run scripts/build-handlers.sh first");
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("go.yaml"),
        format!(
            "name: go\nsource: {{ type: generate, rate_per_second: 5, payload: envelope }}\nhandlers:\n  - plugin: {}\n    grants: [clocks, random]\nsinks: {{ out: {{ type: drop }} }}\ndead_letter: {{ type: drop }}\n",
            go.display()
        ),
    )
    .unwrap();
    let mut child = sluice()
        .arg("run")
        .arg(dir.path())
        // A cache of its own: the start must compile the handler.
        .env("SLUICE_CACHE_DIR", cache.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut admin = None;
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "sluice exited before compiling the handler"
        );
        admin = admin.or_else(|| admin_addr(&line));
        if line.contains("compiling plugin") && line.contains("go-enrich") {
            break;
        }
    }
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let admin = admin.expect("the admin server listens before the handlers are loaded");
    let (code, body, status) = readiness(&admin);
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("go (starting: checking its handlers and connectors"),
        "{body}"
    );
    assert!(
        status.contains("starting: go (starting: checking"),
        "{status}"
    );
    // A hang guard, not a timing assertion: it becomes ready.
    let ready = (0..1200).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        reqwest::blocking::get(format!("http://{admin}/readyz"))
            .is_ok_and(|r| r.status().as_u16() == 200)
    });
    assert!(ready, "never ready");
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    assert!(child.wait().unwrap().success());
}

/// `sluice plugin precompile`: the handlers the pipeline files name are compiled into the cache,
/// so that a host started on that cache compiles nothing; a second precompile finds them there;
/// a plugin that does not load is an error naming it.
#[test]
fn precompile_fills_the_cache_so_that_a_start_compiles_nothing() {
    require_plugins();
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let plugin = repo().join("plugins/dist/json-enrich.wasm");
    let file = dir.path().join("enrich.yaml");
    std::fs::write(
        &file,
        format!(
            "source: {{ type: generate, count: 5, payload: envelope }}\nhandlers:\n  - plugin: {}\nsinks: {{ out: {{ type: drop }} }}\ndead_letter: {{ type: drop }}\n",
            plugin.display()
        ),
    )
    .unwrap();
    let precompile = || {
        sluice()
            .args(["plugin", "precompile"])
            .arg(dir.path())
            .env("SLUICE_CACHE_DIR", cache.path())
            .output()
            .unwrap()
    };
    let first = precompile();
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        stdout.starts_with("compiled  ") && stdout.contains("json-enrich.wasm in "),
        "{stdout}"
    );
    let second = precompile();
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(
        stdout.starts_with("cached    ") && stdout.contains("json-enrich.wasm"),
        "{stdout}"
    );

    let run = sluice()
        .arg("run")
        .arg(&file)
        .env("SLUICE_CACHE_DIR", cache.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("handler loaded"), "{stderr}");
    assert!(
        !stderr.contains("compiling plugin"),
        "the start compiled: {stderr}"
    );

    std::fs::write(
        &file,
        "source: { type: generate, count: 5 }\nhandlers:\n  - plugin: missing.wasm\nsinks: { out: { type: drop } }\ndead_letter: { type: drop }\n",
    )
    .unwrap();
    let failed = precompile();
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("missing.wasm") && stderr.contains("1 error(s)"),
        "{stderr}"
    );
    // With no cache to write, it says so rather than compile for nothing.
    let nowhere = sluice()
        .args(["plugin", "precompile"])
        .arg(dir.path())
        .env_remove("SLUICE_CACHE_DIR")
        .env_remove("XDG_CACHE_HOME")
        .env_remove("HOME")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&nowhere.stderr);
    assert!(!nowhere.status.success(), "{stderr}");
    assert!(stderr.contains("no compile cache to write"), "{stderr}");
}
