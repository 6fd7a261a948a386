//! What deploys Sluice, checked without a cluster: the Helm chart in `deploy/helm/sluice` and the
//! compose file in `deploy/compose`.

use std::process::Command;

use crate::common::repo;

/// `helm lint --strict`, render and schema validation (Kubernetes' schemas, and KEDA's and the
/// Prometheus Operator's CRDs for their resources) of the chart for its default values and each
/// `ci/*-values.yaml`, the promises it makes (non-root, read-only root filesystem, probes,
/// grace period, KEDA owning the replica count) and the values it must refuse
/// (`tests/helm/check.py`, with Helm v4 from helm-python-sdk). The pipeline files of its default
/// values pass `sluice validate` against the image's plugin layout.
#[test]
fn the_helm_chart_lints_renders_and_validates_for_each_values_file() {
    let installed = Command::new(repo().join("scripts/helm-tools.sh"))
        .status()
        .expect("run scripts/helm-tools.sh");
    assert!(installed.success(), "scripts/helm-tools.sh failed");
    let tools = std::env::var("SLUICE_TOOLS").unwrap_or_else(|_| "/var/tmp/sluice-tools".into());
    let dir = tempfile::tempdir().unwrap();
    let pipelines = dir.path().join("pipelines");
    let out = Command::new("python3")
        .arg("-S")
        .arg(repo().join("tests/helm/check.py"))
        .arg("--pipelines-out")
        .arg(&pipelines)
        .env("PYTHONPATH", format!("{tools}/helm"))
        .output()
        .expect("run python3");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    eprintln!("{stdout}");
    assert!(out.status.success(), "{stdout}{stderr}");
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
    let validated = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("validate")
        .arg(&pipelines)
        .output()
        .unwrap();
    assert!(
        validated.status.success(),
        "the chart's default pipelines: {}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );
}

/// `deploy/compose/compose.yaml` loads in podman-compose, mounts only files that exist, runs
/// the `sluice` service hardened and with a pipeline of the image, which `sluice validate`
/// accepts (`tests/compose/check.py`). Its images (RabbitMQ, Prometheus, Grafana) cannot be
/// pulled on the test machine, so it is not started here.
#[test]
fn the_compose_file_loads_and_names_what_exists() {
    let installed = Command::new(repo().join("scripts/container-tools.sh"))
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run scripts/container-tools.sh");
    assert!(installed.success(), "scripts/container-tools.sh failed");
    let tools = std::env::var("SLUICE_TOOLS").unwrap_or_else(|_| "/var/tmp/sluice-tools".into());
    let out = Command::new("python3")
        .arg("-S")
        .arg(repo().join("tests/compose/check.py"))
        .env("PYTHONPATH", format!("{tools}/compose"))
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{stdout}");
    let pipeline = stdout.lines().last().unwrap();
    let validated = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["validate", pipeline])
        .output()
        .unwrap();
    assert!(
        validated.status.success(),
        "{}",
        String::from_utf8_lossy(&validated.stderr)
    );
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
    let plan = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("plan")
            .args(args)
            .current_dir(repo())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sluice plan {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
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
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["plan", "--terraform", "rabbitmq"])
        .arg(&declared)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vars: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        vars["queues"]["work"],
        serde_json::json!({ "durable": true,
            "arguments_json": r#"{"x-delivery-limit":5,"x-queue-type":"quorum"}"# })
    );
    assert_eq!(vars["exchanges"], serde_json::json!({}));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("exchange `events`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A pipeline that would not run is not planned: the errors `sluice validate` prints.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "name: bad\nsource: { type: rabbitmq }\n",
    )
    .unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("plan")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("source.url"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let installed = Command::new(repo().join("scripts/helm-tools.sh"))
        .status()
        .expect("run scripts/helm-tools.sh");
    assert!(installed.success(), "scripts/helm-tools.sh failed");
    let tools = std::env::var("SLUICE_TOOLS").unwrap_or_else(|_| "/var/tmp/sluice-tools".into());
    let out = Command::new("python3")
        .arg("-S")
        .arg(repo().join("tests/terraform/check.py"))
        .arg(env!("CARGO_BIN_EXE_sluice"))
        .env("PYTHONPATH", format!("{tools}/helm"))
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("terraform modules valid for the example pipelines: 4 families"));
}
