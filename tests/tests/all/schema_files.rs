//! The pipeline schema checked by a second, independent implementation: Python's `jsonschema`
//! (installed by `scripts/schema-tools.sh`) validates every example pipeline against the schema
//! this build derives, and refuses a wrong file at the same path Sluice's loader reports.

use std::path::{Path, PathBuf};
use std::process::Command;

use sluice_tests::repo_root;

const TOOLS: &str = "/var/tmp/sluice-tools/python";

/// Every pipeline file under `pipelines/`; `*.test.yaml` are `sluice test` files, not pipelines.
fn example_pipelines(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            example_pipelines(&path, out);
        } else if (name.ends_with(".yaml") || name.ends_with(".yml"))
            && !name.ends_with(".test.yaml")
        {
            out.push(path);
        }
    }
}

/// Run `tests/schema/validate.py` over `files` with the schema of this build; its output lines.
fn python_validate(files: &[PathBuf]) -> (bool, Vec<String>) {
    let root = repo_root();
    let status = Command::new(root.join("scripts/schema-tools.sh"))
        .status()
        .expect("run scripts/schema-tools.sh");
    assert!(status.success(), "scripts/schema-tools.sh failed");
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("sluice.schema.json");
    let text = serde_json::to_string_pretty(&sluice::config::schema::pipeline_schema()).unwrap();
    std::fs::write(&schema, text).unwrap();
    let out = Command::new("python3")
        .arg("-S")
        .arg(root.join("tests/schema/validate.py"))
        .arg(&schema)
        .args(files)
        .env("PYTHONPATH", TOOLS)
        .output()
        .expect("run python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || out.status.code() == Some(1),
        "validate.py crashed: {stderr}"
    );
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    (out.status.success(), lines)
}

#[test]
fn every_example_pipeline_passes_an_independent_validator() {
    let mut files = Vec::new();
    example_pipelines(&repo_root().join("pipelines"), &mut files);
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    let (ok, lines) = python_validate(&files);
    assert!(ok && lines.is_empty(), "{}", lines.join("\n"));
}

#[test]
fn a_wrong_file_is_refused_at_the_same_path_by_both_validators() {
    let text = "source: { type: memory, queue: in }\nsinks: { a: { type: drop } }\ndead_letter: { type: drop }\nhandlers:\n  - plugin: a.wasm\n  - plugin: b.wasm\n    limits: { memory_mb: 8192 }\n";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wrong.yaml");
    std::fs::write(&file, text).unwrap();

    let (ok, lines) = python_validate(std::slice::from_ref(&file));
    assert!(!ok);
    let paths: Vec<&str> = lines
        .iter()
        .map(|l| l.split('\t').nth(1).unwrap_or_default())
        .collect();
    assert_eq!(paths, ["handlers[1].limits.memory_mb"], "{lines:?}");

    let errors = sluice::config::parse(&file, text, |_| None).unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|e| e.error.path.as_str()).collect();
    assert_eq!(paths, ["handlers[1].limits.memory_mb"]);
    assert_eq!(
        errors[0].to_string(),
        format!(
            "{}:7:15: handlers[1].limits.memory_mb: must be between 1 and 4096",
            file.display()
        )
    );
}
