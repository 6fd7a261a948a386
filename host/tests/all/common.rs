//! What the binary's integration tests share: starting `sluice run` with its admin server on an
//! ephemeral port.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStderr, Command, Stdio};

/// `sluice run <args>` with its admin server on an ephemeral port and `token`; returns the
/// child, the admin base URL and the rest of its stderr (the caller must keep reading it, or the
/// child blocks on a full pipe).
pub fn run_with_admin(
    args: &[&std::ffi::OsStr],
    token: &str,
) -> (Child, String, BufReader<ChildStderr>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("run")
        .args(args)
        .args(["--admin-addr", "127.0.0.1:0", "--admin-token", token])
        .env("SLUICE_CACHE_DIR", plugin_cache_dir())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "sluice exited before its admin server listened"
        );
        if line.contains("admin server listening")
            && let Some(rest) = line.split("addr=").nth(1)
        {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    (child, format!("http://{addr}"), stderr)
}

/// The compile cache every test of the workspace shares, `target/<profile>/plugin-cache` (the
/// one `sluice_tests::test_cache_dir` names): a Python or JavaScript handler, 12-18 MB, is then
/// compiled once per test run, not once per test crate.
pub fn plugin_cache_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(std::path::Path::parent)
        .expect("the test binary runs from target/<profile>/deps")
        .join("plugin-cache")
}

/// The repository's root.
pub fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is in the repository")
        .to_path_buf()
}
