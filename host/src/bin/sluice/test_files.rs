//! `sluice test`: run pipeline test files through the real handlers and report each case.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use sluice::plugin::PluginHost;

/// `sluice test`: every case of every test file, a line per case, a diff per failure.
pub async fn run_tests(host: &PluginHost, paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(".test.yaml"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    if files.is_empty() {
        anyhow::bail!("no *.test.yaml files found");
    }
    let (mut passed, mut failed) = (0, 0);
    for file in &files {
        let results = match sluice::testing::run_file(host, file).await {
            Ok(r) => r,
            Err(err) => {
                outln!("ERROR {}: {err:#}", file.display());
                failed += 1;
                continue;
            }
        };
        for r in results {
            if r.failures.is_empty() {
                passed += 1;
                outln!("ok    {}: {}", r.file.display(), r.name);
            } else {
                failed += 1;
                outln!("FAIL  {}: {}", r.file.display(), r.name);
                for f in &r.failures {
                    outln!("  - {}", f.replace('\n', "\n    "));
                }
            }
        }
    }
    outln!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
