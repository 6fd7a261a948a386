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
        .env(
            "SLUICE_CACHE_DIR",
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache"),
        )
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
