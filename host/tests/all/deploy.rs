//! What deploys Sluice, checked without a cluster: the Helm chart in `deploy/helm/sluice` and the
//! compose file in `deploy/compose`.

use std::process::{Command, Output, Stdio};

use crate::common::repo;

/// Runs `scripts/<installer>` (what a check needs, installed once), then
/// `python3 -S tests/<check> <args>` with `<tools dir>/<site>` on `PYTHONPATH`. The check must
/// pass; returns its stdout, echoed for the test log.
fn python_check(installer: &str, site: &str, check: &str, args: &[&str]) -> String {
    let installed = Command::new(repo().join("scripts").join(installer))
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("run scripts/{installer}: {e}"));
    assert!(installed.success(), "scripts/{installer} failed");
    let tools = std::env::var("SLUICE_TOOLS").unwrap_or_else(|_| "/var/tmp/sluice-tools".into());
    let out = Command::new("python3")
        .arg("-S")
        .arg(repo().join("tests").join(check))
        .args(args)
        .env("PYTHONPATH", format!("{tools}/{site}"))
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "tests/{check}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `sluice <args>`, run from the repository's root.
fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap()
}

/// `sluice <args>`, which must succeed: its stdout and stderr.
fn sluice_ok(args: &[&str]) -> (String, String) {
    let out = sluice(args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "sluice {args:?}: {stderr}");
    (stdout, stderr)
}

/// `helm lint --strict`, render and schema validation (Kubernetes' schemas, and KEDA's and the
/// Prometheus Operator's CRDs for their resources) of the chart for its default values and each
/// `ci/*-values.yaml`, the promises it makes (non-root, read-only root filesystem, probes,
/// grace period, KEDA owning the replica count) and the values it must refuse
/// (`tests/helm/check.py`, with Helm v4 from helm-python-sdk). The pipeline files of its default
/// values pass `sluice validate` against the image's plugin layout.
#[test]
fn the_helm_chart_lints_renders_and_validates_for_each_values_file() {
    let dir = tempfile::tempdir().unwrap();
    let pipelines = dir.path().join("pipelines");
    let stdout = python_check(
        "helm-tools.sh",
        "helm",
        "helm/check.py",
        &["--pipelines-out", pipelines.to_str().unwrap()],
    );
    assert_eq!(
        stdout.matches("manifests valid").count(),
        1 + std::fs::read_dir(repo().join("deploy/helm/sluice/ci"))
            .unwrap()
            .count(),
        "every values file is checked: {stdout}"
    );
    assert_eq!(
        stdout.matches("refused, as it must be").count(),
        5,
        "{stdout}"
    );
    // The chart's pipelines, as the image lays them out: /etc/sluice/{pipelines,plugins}.
    std::os::unix::fs::symlink(repo().join("plugins"), dir.path().join("plugins")).unwrap();
    sluice_ok(&["validate", pipelines.to_str().unwrap()]);
}

/// `deploy/compose/compose.yaml` loads in podman-compose, mounts only files that exist, runs
/// the `sluice` service hardened and with a pipeline of the image, which `sluice validate`
/// accepts (`tests/compose/check.py`). Its images (RabbitMQ, Prometheus, Grafana) cannot be
/// pulled on the test machine, so it is not started here.
#[test]
fn the_compose_file_loads_and_names_what_exists() {
    let stdout = python_check("container-tools.sh", "compose", "compose/check.py", &[]);
    let pipeline = stdout.lines().last().unwrap();
    sluice_ok(&["validate", pipeline]);
}

/// `sluice plan` of the RabbitMQ and SQS example pipelines, resource by resource, and the
/// Terraform modules in `deploy/terraform/` checked against its output for every example
/// pipeline (`tests/terraform/check.py`: parsed with python-hcl2, since no Terraform binary or
/// provider registry is reachable here). The example pipelines name every broker family: run in
/// the default build, where all are in.
#[cfg(all(
    feature = "kafka",
    feature = "rabbitmq",
    feature = "sqs",
    feature = "azure",
    feature = "zeromq"
))]
#[test]
fn sluice_plan_lists_what_pipelines_need_and_the_terraform_modules_declare_it() {
    let plan = |args: &[&str]| sluice_ok(&[&["plan"], args].concat()).0;
    let table = plan(&["pipelines/brokers/rabbitmq-orders.yaml"]);
    let lines: Vec<&str> = table.lines().map(str::trim).collect();
    assert_eq!(
        lines,
        [
            "rabbitmq-orders (pipelines/brokers/rabbitmq-orders.yaml)",
            "source           rabbitmq queue orders",
            "sinks.orders     rabbitmq queue orders-enriched",
            "sinks.users      rabbitmq queue users-enriched",
            "dead_letter      rabbitmq queue orders-dead-letter",
        ],
        "{table}"
    );
    let sqs: serde_json::Value = serde_json::from_str(&plan(&[
        "--terraform",
        "sqs",
        "pipelines/brokers/sqs-orders.yaml",
    ]))
    .unwrap();
    assert_eq!(
        sqs,
        serde_json::json!({ "queues": {
            "orders": { "fifo": false, "dead_letter_queue": "orders-dead-letter", "max_receive_count": 10 },
            "orders-enriched.fifo": { "fifo": true },
            "orders-dead-letter": { "fifo": false },
        }})
    );
    let json: serde_json::Value = serde_json::from_str(&plan(&[
        "--json",
        "pipelines/brokers/kafka-to-rabbitmq.yaml",
    ]))
    .unwrap();
    let needs = json[0]["needs"].as_array().unwrap();
    assert!(
        needs
            .iter()
            .any(|n| n["kind"] == "kafka_consumer_group" && n["role"] == "source"),
        "{json:#}"
    );
    let azure: serde_json::Value = serde_json::from_str(&plan(&[
        "--terraform",
        "azure",
        "pipelines/brokers/azure-orders.yaml",
    ]))
    .unwrap();
    assert!(
        azure["queues"]
            .as_array()
            .unwrap()
            .contains(&"orders-poison".into()),
        "the source's default poison queue: {azure}"
    );
    // Settings a topology declares reach Terraform (a queue redeclared with others is refused
    // by the broker); an exchange declared nowhere is left out, with a note.
    let dir = tempfile::tempdir().unwrap();
    let declared = dir.path().join("declared.yaml");
    std::fs::write(
        &declared,
        [
            "name: declared",
            "source:",
            "  type: rabbitmq",
            "  url: amqp://127.0.0.1",
            "  queue: work",
            "  topology:",
            "    queues:",
            "      - { name: work, arguments: { x-queue-type: quorum, x-delivery-limit: 5 } }",
            "sinks:",
            "  out: { type: rabbitmq, url: amqp://127.0.0.1, exchange: events }",
            "dead_letter: { type: drop }",
        ]
        .join("\n"),
    )
    .unwrap();
    let (stdout, stderr) = sluice_ok(&[
        "plan",
        "--terraform",
        "rabbitmq",
        declared.to_str().unwrap(),
    ]);
    let vars: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        vars["queues"]["work"],
        serde_json::json!({ "durable": true,
            "arguments_json": r#"{"x-delivery-limit":5,"x-queue-type":"quorum"}"# })
    );
    assert_eq!(vars["exchanges"], serde_json::json!({}));
    assert!(stderr.contains("exchange `events`"), "{stderr}");

    // A pipeline that would not run is not planned: the errors `sluice validate` prints.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "name: bad\nsource: { type: rabbitmq }\n",
    )
    .unwrap();
    let refused = sluice(&["plan", dir.path().to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("source.url"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let stdout = python_check(
        "helm-tools.sh",
        "helm",
        "terraform/check.py",
        &[env!("CARGO_BIN_EXE_sluice")],
    );
    assert!(stdout.contains("terraform modules valid for the example pipelines: 4 families"));
}
