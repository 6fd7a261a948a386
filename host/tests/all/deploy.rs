//! What deploys Sluice, checked without a cluster: the Helm chart in `deploy/helm/sluice`.

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
