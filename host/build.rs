//! Records which commit the binary was built from, for `sluice --version`: the short hash and
//! the commit's date (not the build's, so that a rebuild of the same commit says the same), or
//! `unknown commit` outside a git checkout.

use std::process::Command;

fn main() {
    let described = Command::new("git")
        .args(["log", "-1", "--format=%h %cs"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let build = described.map_or_else(|| "unknown commit".to_owned(), |d| format!("commit {d}"));
    println!("cargo:rustc-env=SLUICE_BUILD={build}");
    // A new commit moves HEAD or the branch it names. Only paths that exist: cargo takes a
    // missing one as changed and would run this (and rebuild the crate) on every build.
    println!("cargo:rerun-if-changed=build.rs");
    for path in ["../.git/HEAD", "../.git/refs/heads", "../.git/packed-refs"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
