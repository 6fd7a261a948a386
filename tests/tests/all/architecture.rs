//! The architecture's walls, checked: which crate may depend on what (from `cargo metadata`), and
//! that no crate's modules use each other in a cycle. ARCHITECTURE.md names each rule; a change
//! that breaks one fails here, before review.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sluice_tests::repo_root;

/// Broker client libraries: only their own connector crate may reach one.
const BROKER_CLIENTS: &[&str] = &[
    "rdkafka",
    "lapin",
    "aws-sdk-sqs",
    "azure_storage_queue",
    "azure_identity",
    "zeromq",
];

/// Crates that must not appear anywhere below the named workspace crate (normal dependencies,
/// transitively), with the reason a reader of a failure needs.
fn forbidden(krate: &str) -> Vec<(&'static str, &'static str)> {
    let wasm = [("wasmtime", "only sluice-plugin runs WebAssembly")];
    let brokers = BROKER_CLIENTS
        .iter()
        .map(|b| (*b, "broker clients belong to their connector crate"));
    let exporter = [(
        "opentelemetry-otlp",
        "only the CLI installs an exporter; the rest uses the OpenTelemetry API",
    )];
    let upper = |names: &[&'static str]| -> Vec<(&'static str, &'static str)> {
        names
            .iter()
            .map(|n| (*n, "a lower crate never depends on a higher one"))
            .collect()
    };
    let mut rules: Vec<(&'static str, &'static str)> = Vec::new();
    match krate {
        "sluice-core" => {
            rules.extend(wasm);
            rules.extend(brokers);
            rules.extend(exporter);
            rules.push(("opentelemetry", "the core knows no tracing"));
            rules.extend(upper(&[
                "sluice-trace",
                "sluice-engine",
                "sluice-plugin",
                "sluice-config",
                "sluice-connectors",
            ]));
        }
        "sluice-trace" => {
            rules.extend(wasm);
            rules.extend(brokers);
            rules.extend(exporter);
            rules.extend(upper(&["sluice-engine", "sluice-plugin", "sluice-config"]));
        }
        "sluice-engine" => {
            rules.extend(wasm);
            rules.extend(brokers);
            rules.extend(exporter);
            rules.extend(upper(&[
                "sluice-plugin",
                "sluice-config",
                "sluice-connectors",
                "serde-saphyr",
            ]));
        }
        "sluice-plugin" => {
            rules.extend(brokers);
            rules.extend(exporter);
            rules.extend(upper(&[
                "sluice-engine",
                "sluice-config",
                "sluice-connectors",
            ]));
        }
        "sluice-config" | "sluice-connectors" => {
            rules.extend(wasm);
            rules.extend(exporter);
            rules.extend(upper(&["sluice-engine", "sluice-plugin"]));
            if krate == "sluice-connectors" {
                rules.extend(upper(&["sluice-config"]));
            }
        }
        c if c.starts_with("sluice-connector-") => {
            rules.extend(wasm);
            rules.extend(exporter);
            rules.extend(upper(&[
                "sluice-engine",
                "sluice-plugin",
                "sluice-config",
                "sluice-connectors",
            ]));
            // Each family reaches its own client only.
            let own: &[&str] = match c {
                "sluice-connector-kafka" => &["rdkafka"],
                "sluice-connector-rabbitmq" => &["lapin"],
                "sluice-connector-sqs" => &["aws-sdk-sqs"],
                "sluice-connector-azure-queue" => &["azure_storage_queue", "azure_identity"],
                "sluice-connector-zeromq" => &["zeromq"],
                _ => &[],
            };
            rules.extend(
                BROKER_CLIENTS
                    .iter()
                    .filter(|b| !own.contains(b))
                    .map(|b| (*b, "a connector crate reaches only its own broker client")),
            );
            rules.extend(
                WORKSPACE_CONNECTORS
                    .iter()
                    .filter(|n| **n != c)
                    .map(|n| (*n, "connector crates do not depend on each other")),
            );
        }
        _ => {}
    }
    rules
}

const WORKSPACE_CONNECTORS: &[&str] = &[
    "sluice-connector-kafka",
    "sluice-connector-rabbitmq",
    "sluice-connector-sqs",
    "sluice-connector-azure-queue",
    "sluice-connector-zeromq",
];

struct Metadata {
    /// package id → name
    names: BTreeMap<String, String>,
    /// package id → ids of its normal (non-dev, non-build) dependencies
    normal_deps: BTreeMap<String, Vec<String>>,
    /// workspace crate name → package id
    members: BTreeMap<String, String>,
}

/// The platform this test runs on, as rustc names it (`x86_64-unknown-linux-gnu`).
fn host_triple() -> String {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names its host")
        .to_owned()
}

fn metadata() -> Metadata {
    // Offline and for this platform only: the build already fetched every crate it needs, and
    // crates for other platforms (Windows consoles) are never downloaded here.
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
        ])
        .arg(host_triple())
        .current_dir(repo_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let names = v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_owned(),
                p["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect::<BTreeMap<_, _>>();
    let members = v["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| {
            let id = id.as_str().unwrap().to_owned();
            (names[&id].clone(), id)
        })
        .collect();
    let normal_deps = v["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let deps = n["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|k| k["kind"].is_null())
                })
                .map(|d| d["pkg"].as_str().unwrap().to_owned())
                .collect();
            (n["id"].as_str().unwrap().to_owned(), deps)
        })
        .collect();
    Metadata {
        names,
        normal_deps,
        members,
    }
}

/// Every crate below `id` through normal dependencies, each with the chain that reaches it.
fn reachable(m: &Metadata, id: &str) -> BTreeMap<String, Vec<String>> {
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut stack = vec![(id.to_owned(), vec![m.names[id].clone()])];
    while let Some((cur, chain)) = stack.pop() {
        for dep in m.normal_deps.get(&cur).into_iter().flatten() {
            let name = m.names[dep].clone();
            if seen.contains_key(&name) {
                continue;
            }
            let mut next = chain.clone();
            next.push(name.clone());
            seen.insert(name, next.clone());
            stack.push((dep.clone(), next));
        }
    }
    seen
}

#[test]
fn crates_depend_only_downwards() {
    let m = metadata();
    let mut broken = Vec::new();
    for (name, id) in &m.members {
        let below = reachable(&m, id);
        for (bad, why) in forbidden(name) {
            if let Some(chain) = below.get(bad) {
                broken.push(format!(
                    "{name} reaches {bad} ({why}): {}",
                    chain.join(" -> ")
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "forbidden dependencies:\n{}",
        broken.join("\n")
    );
}

#[test]
fn only_the_plugin_host_depends_on_wasmtime_directly() {
    let m = metadata();
    let direct: Vec<&String> = m
        .members
        .iter()
        .filter(|(_, id)| {
            m.normal_deps[*id]
                .iter()
                .any(|d| m.names[d].starts_with("wasmtime"))
        })
        .map(|(name, _)| name)
        .collect();
    assert_eq!(direct, vec!["sluice-plugin"]);
}

#[test]
fn the_rule_table_names_only_real_crates() {
    // A renamed crate must not silently escape its rules.
    let m = metadata();
    for name in [
        "sluice-core",
        "sluice-trace",
        "sluice-engine",
        "sluice-plugin",
        "sluice-config",
        "sluice-connectors",
    ]
    .iter()
    .chain(WORKSPACE_CONNECTORS)
    {
        assert!(
            m.members.contains_key(*name),
            "{name} is not a workspace member"
        );
    }
}

/// The module a source file defines, as a path from its crate root (`runtime/watch.rs` →
/// `["runtime", "watch"]`; `lib.rs`, `main.rs` → `[]`).
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_owned());
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module paths `text` (the source of module `here`) refers to: `crate::a::b` and
/// `super::c`, resolved to absolute paths (they may end in an item name).
fn references(here: &[String], text: &str) -> Vec<Vec<String>> {
    let mut refs = Vec::new();
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    for (i, _) in code.match_indices("crate::") {
        if i > 0 {
            let prev = code[..i].chars().next_back().unwrap();
            if prev.is_alphanumeric() || prev == '_' || prev == '$' {
                continue;
            }
        }
        refs.push(path_at(&code[i + "crate::".len()..], Vec::new()));
    }
    for (i, _) in code.match_indices("super::") {
        if i > 0 {
            let prev = code[..i].chars().next_back().unwrap();
            if prev.is_alphanumeric() || prev == '_' || prev == ':' {
                continue;
            }
        }
        // In `a/b.rs` (module a::b) `super` is `a`; in `a/mod.rs` (module a) it is the root.
        let mut base = here.to_vec();
        base.pop();
        refs.push(path_at(&code[i + "super::".len()..], base));
    }
    refs
}

/// `base` extended by the `ident::ident::…` at the start of `rest`; a `{` group counts each of
/// its first idents.
fn path_at(rest: &str, mut base: Vec<String>) -> Vec<String> {
    let mut s = rest;
    loop {
        let ident: String = s
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if ident.is_empty() {
            break;
        }
        base.push(ident.clone());
        s = &s[ident.len()..];
        match s.strip_prefix("::") {
            Some(next) if !next.starts_with('{') => s = next,
            _ => break,
        }
    }
    base
}

/// Cycles among sibling modules: an edge a → b when code in `a` (or below it) uses something in
/// its sibling `b` (or below it).
fn module_cycles(crate_dir: &Path) -> Vec<String> {
    let src = crate_dir.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_path(&src, f)).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<(String, String)>> = BTreeMap::new();
    for file in &files {
        let here = module_path(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        for target in references(&here, &text) {
            let common = here.iter().zip(&target).take_while(|(a, b)| a == b).count();
            let (Some(from), Some(to)) = (here.get(common), target.get(common)) else {
                continue;
            };
            let parent = here[..common].to_vec();
            let mut to_mod = parent.clone();
            to_mod.push(to.clone());
            if modules.contains(&to_mod) {
                edges
                    .entry(parent)
                    .or_default()
                    .insert((from.clone(), to.clone()));
            }
        }
    }
    let mut cycles = Vec::new();
    for (parent, level) in &edges {
        let pairs: BTreeSet<_> = level.iter().cloned().collect();
        // Any cycle among siblings shows as a path back to its start; the graphs are tiny.
        let nodes: BTreeSet<&String> = pairs.iter().map(|(a, _)| a).collect();
        for start in nodes {
            let mut stack = vec![vec![start.clone()]];
            while let Some(path) = stack.pop() {
                let last = path.last().unwrap();
                for (_, next) in pairs.iter().filter(|(a, _)| a == last) {
                    if next == start {
                        let mut shown = path.clone();
                        shown.push(next.clone());
                        cycles.push(format!(
                            "{}: in `{}`: {}",
                            crate_dir.display(),
                            if parent.is_empty() {
                                "crate".to_owned()
                            } else {
                                parent.join("::")
                            },
                            shown.join(" -> ")
                        ));
                    } else if !path.contains(next) {
                        let mut longer = path.clone();
                        longer.push(next.clone());
                        stack.push(longer);
                    }
                }
            }
        }
    }
    cycles.sort();
    cycles.dedup();
    cycles
}

fn workspace_crate_dirs() -> Vec<PathBuf> {
    let root = repo_root();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.extend(["host", "sdk", "bench", "tests"].map(|d| root.join(d)));
    dirs.sort();
    dirs
}

#[test]
fn no_crate_has_a_module_cycle() {
    let cycles: Vec<String> = workspace_crate_dirs()
        .iter()
        .flat_map(|d| module_cycles(d))
        .collect();
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_cycle_check_sees_a_cycle() {
    // The check itself, on a crate made to have one: a check that finds nothing is no check.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\n").unwrap();
    std::fs::write(src.join("a/mod.rs"), "mod inner;\n").unwrap();
    std::fs::write(src.join("a/inner.rs"), "use crate::b::Thing;\n").unwrap();
    std::fs::write(src.join("b.rs"), "use super::a::Other;\n").unwrap();
    let cycles = module_cycles(dir.path());
    assert_eq!(cycles.len(), 2, "{cycles:?}"); // a -> b -> a, seen from each end
    assert!(cycles[0].contains("a -> b -> a"), "{cycles:?}");
}
