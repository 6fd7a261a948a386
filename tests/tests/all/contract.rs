//! The published contracts, `sluice:plugin@0.1.0` and `@0.2.0`, never change in place: their WIT
//! is pinned by hash here, and every copy a handler builds against (`plugins/*/wit/deps/plugin/`)
//! is one of them. A new contract version goes in `wit/v0.3/` beside them, with a pin of its own.

use std::path::{Path, PathBuf};

use sluice::plugin::content_hash;
use sluice_tests::repo_root;

/// SHA-256 of `wit/v0.1/plugin.wit` as published. Changing it breaks every built handler.
const V0_1: &str = "bb87403f11f11d41da3fbe932e0733e8167e200e2741b7f6f870760b86797c1a";
/// SHA-256 of `wit/v0.2/plugin.wit` as published (the Rust SDK builds against it).
const V0_2: &str = "8b462f9d560b496e19fdbb6af42bf02751e7cad6768c34e171379c6921897c8b";

fn hash_of(path: &Path) -> String {
    content_hash(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

#[test]
fn the_published_wit_is_unchanged() {
    assert_eq!(
        hash_of(&repo_root().join("wit/v0.1/plugin.wit")),
        V0_1,
        "wit/v0.1/plugin.wit changed in place: a published contract never changes; put the new \
         version in wit/v0.3/"
    );
    assert_eq!(
        hash_of(&repo_root().join("wit/v0.2/plugin.wit")),
        V0_2,
        "wit/v0.2/plugin.wit changed in place: a published contract never changes; put the new \
         version in wit/v0.3/"
    );
}

fn copies(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() && name != "node_modules" && name != "target" {
            copies(&path, out);
        } else if path.ends_with("deps/plugin/plugin.wit") {
            out.push(path);
        }
    }
}

#[test]
fn every_handler_builds_against_the_published_wit() {
    let mut found = Vec::new();
    copies(&repo_root().join("plugins"), &mut found);
    assert!(
        found.len() >= 7,
        "the example handlers' WIT copies: {found:?}"
    );
    let differ: Vec<String> = found
        .iter()
        .filter(|p| ![V0_1, V0_2].contains(&hash_of(p).as_str()))
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        differ.is_empty(),
        "copies that differ from wit/v0.1 and wit/v0.2: {differ:?}"
    );
}
