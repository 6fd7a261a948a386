//! The docs, run as a user would run them. Every `sh` and `yaml` block of README.md and docs/
//! is run or validated here, in a temporary directory outside the repository, with `sluice`
//! installed from the release layout (`scripts/release.sh --binary` of this build) first on
//! `PATH`, the guest toolchains of `scripts/build-handlers.sh` after it, and no
//! `CARGO_TARGET_DIR`:
//!
//! - a doc's `sh` blocks run in order as one `bash -euo pipefail` script (a `cd` in one block
//!   holds for the next, as in the reader's terminal), each line checked on its own (a failure
//!   inside `a && b && c` stops the script too). Install lines (`pip install`,
//!   `npm install -g`, `apt-get install`) are checked, not run: each package must be installed at
//!   the version the line names (the test machine's toolchains come from the setup scripts);
//! - a `yaml` block that is a pipeline (or part of one: the keys it leaves out are filled in) is
//!   checked by `sluice validate`; one with `tests:` is a test file, run by `sluice test` against
//!   a copy of `pipelines/quickstart.yaml` (the work directory also has a copy of
//!   `pipelines/brokers/`). Plugins are found under `../plugins/dist/` as in the
//!   repository's `pipelines/`. They are checked before the `sh` blocks run: none depends on
//!   what a command makes.
//!
//! A shell or YAML block must say so as `sh` or `yaml` (`bash`, `console`, `yml` and the like are
//! refused, so that no block escapes by its label).
//!
//! A block that cannot run here says so on the line above its fence,
//! `<!-- doc-test: not run: <why> -->`, and the test prints it with its reason.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{plugin_cache_dir, repo};

/// Every Markdown file a user reads: each must be listed in `doc_tests!` below.
fn docs() -> Vec<PathBuf> {
    let mut docs = vec![PathBuf::from("README.md")];
    let mut dirs = vec![PathBuf::from("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(repo().join(&dir)).unwrap() {
            let path = dir.join(entry.unwrap().file_name());
            if repo().join(&path).is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                docs.push(path);
            }
        }
    }
    docs.sort();
    docs
}

/// A fenced block: its language, the line of its fence, its text, and why it is not run.
struct Block {
    lang: String,
    line: usize,
    text: String,
    not_run: Option<String>,
}

fn blocks(doc: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let lines: Vec<&str> = doc.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let Some(lang) = lines[i].strip_prefix("```").filter(|l| !l.is_empty()) else {
            i += 1;
            continue;
        };
        let line = i + 1;
        let above = lines[..i].iter().rev().find(|l| !l.trim().is_empty());
        let marker = above.filter(|l| l.trim().starts_with("<!-- doc-test"));
        let not_run = marker.map(|l| {
            l.trim()
                .strip_prefix("<!-- doc-test: not run: ")
                .and_then(|l| l.strip_suffix("-->"))
                .map(|why| why.trim().to_owned())
                .unwrap_or_else(|| {
                    panic!("line {i}: a marker reads `<!-- doc-test: not run: <why> -->`: {l}")
                })
        });
        let mut text = String::new();
        i += 1;
        while i < lines.len() && !lines[i].starts_with("```") {
            text.push_str(lines[i]);
            text.push('\n');
            i += 1;
        }
        blocks.push(Block {
            lang: lang.trim().to_owned(),
            line,
            text,
            not_run,
        });
        i += 1;
    }
    blocks
}

/// A block's commands, a line each, with `\`-continued lines joined; blank and comment-only
/// lines left out.
fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        let done = std::mem::take(&mut current);
        let trimmed = done.trim();
        if !trimmed.is_empty() && !trimmed.starts_with('#') {
            lines.push(done);
        }
    }
    lines
}

/// `sluice` as a user installs it: the release layout, made once per build of the binary (the
/// tests run in processes of their own, side by side; a lock makes one of them write it).
fn installed() -> PathBuf {
    let binary = Path::new(env!("CARGO_BIN_EXE_sluice"));
    let out = binary.parent().unwrap().join("doc-tests-release");
    std::fs::create_dir_all(&out).unwrap();
    let lock = std::fs::File::create(out.with_extension("lock")).unwrap();
    lock.lock().unwrap();
    let meta = std::fs::metadata(binary).unwrap();
    let stamp = format!("{:?} {}", meta.modified().unwrap(), meta.len());
    let stamp_file = out.join("stamp");
    let layout = || {
        std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.is_dir())
    };
    if std::fs::read_to_string(&stamp_file).ok().as_deref() != Some(stamp.as_str())
        || layout().is_none()
    {
        let _ = std::fs::remove_dir_all(&out);
        let made = Command::new(repo().join("scripts/release.sh"))
            .arg("--binary")
            .arg(binary)
            .arg("--out")
            .arg(&out)
            .arg("--no-archive")
            .output()
            .unwrap();
        assert!(
            made.status.success(),
            "scripts/release.sh failed:\n{}{}",
            String::from_utf8_lossy(&made.stdout),
            String::from_utf8_lossy(&made.stderr)
        );
        std::fs::write(&stamp_file, &stamp).unwrap();
    }
    layout().expect("scripts/release.sh wrote no layout")
}

/// `pip`, `npm`, `apt-get` (and `sudo` before one) for the docs' install lines: they check that what the line
/// installs is there, at the version it names, and change nothing.
const SHIMS: [(&str, &str); 4] = [
    // `sudo apt-get install …`: the install line is checked as without sudo.
    ("sudo", "#!/usr/bin/env bash\nexec \"$@\"\n"),
    (
        "pip",
        r#"#!/usr/bin/env bash
set -euo pipefail
[ "$1" = install ] || { echo "doc-test pip shim: only 'pip install' is expected" >&2; exit 2; }
shift
for spec in "$@"; do
  name=${spec%%==*} want=${spec#*==}
  have=$("$SLUICE_TOOLS/venv/bin/python" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
  [ "$have" = "$want" ] || { echo "doc-test: the doc installs $name $want; the toolchain has '${have:-none}'" >&2; exit 1; }
  echo "doc-test: pip install $spec checked, not run: $name $have is installed"
done
"#,
    ),
    (
        "npm",
        r#"#!/usr/bin/env bash
set -euo pipefail
[ "$1 $2" = "install -g" ] || { echo "doc-test npm shim: only 'npm install -g' is expected" >&2; exit 2; }
shift 2
for spec in "$@"; do
  name=${spec%@*} want=${spec##*@}
  have=$(node -p "require('$SLUICE_TOOLS/npm/node_modules/$name/package.json').version" 2>/dev/null || true)
  [ "$have" = "$want" ] || { echo "doc-test: the doc installs $name $want; the toolchain has '${have:-none}'" >&2; exit 1; }
  echo "doc-test: npm install -g $spec checked, not run: $name $have is installed"
done
"#,
    ),
    (
        "apt-get",
        r#"#!/usr/bin/env bash
set -euo pipefail
[ "$1" = install ] || { echo "doc-test apt-get shim: only 'apt-get install' is expected" >&2; exit 2; }
shift
for package in "$@"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' ||
    { echo "doc-test: the doc installs $package, which is not installed" >&2; exit 1; }
  echo "doc-test: apt-get install $package checked, not run: it is installed"
done
"#,
    ),
];

/// Keys a pipeline block may leave out, filled in so that the rest is validated.
const PIPELINE_BASE: [(&str, &str); 3] = [
    ("source", "source: { type: generate, count: 1 }"),
    ("sinks", "sinks: { out: { type: stdout } }"),
    ("dead_letter", "dead_letter: { type: drop }"),
];

/// Run or validate every block of `doc`, or say why not.
fn run_doc(doc: &str) {
    let text = std::fs::read_to_string(repo().join(doc)).unwrap();
    let tools = std::env::var("SLUICE_TOOLS").unwrap_or_else(|_| "/var/tmp/sluice-tools".into());
    let prefix = installed();
    let home = tempfile::tempdir().unwrap();
    let work = home.path().join("work");
    let shims = home.path().join("shims");
    std::fs::create_dir_all(work.join("pipelines/tests")).unwrap();
    std::fs::create_dir_all(&shims).unwrap();
    for (name, script) in SHIMS {
        let path = shims.join(name);
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::os::unix::fs::symlink(repo().join("plugins"), work.join("plugins")).unwrap();
    std::fs::copy(
        repo().join("pipelines/quickstart.yaml"),
        work.join("pipelines/quickstart.yaml"),
    )
    .unwrap();
    // The broker examples, which docs/deploy.md plans (`sluice plan pipelines/brokers`).
    std::fs::create_dir(work.join("pipelines/brokers")).unwrap();
    for entry in std::fs::read_dir(repo().join("pipelines/brokers")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(
            entry.path(),
            work.join("pipelines/brokers").join(entry.file_name()),
        )
        .unwrap();
    }
    let path = format!(
        "{}:{}:{tools}/venv/bin:{tools}/npm/node_modules/.bin:{}",
        shims.display(),
        prefix.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let command = |program: &str| {
        let mut command = Command::new(program);
        command
            .current_dir(&work)
            .env("PATH", &path)
            .env("SLUICE_TOOLS", &tools)
            .env("SLUICE_CACHE_DIR", plugin_cache_dir())
            .env("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
            // Tests run side by side: a host a block starts takes an admin port of its own.
            .env("SLUICE_ADMIN_ADDR", "127.0.0.1:0")
            .env_remove("CARGO_TARGET_DIR");
        command
    };

    let mut script = String::from("set -euo pipefail\n");
    let mut checked = 0;
    for block in blocks(&text) {
        let place = format!("{doc}:{}", block.line);
        assert!(
            !matches!(
                block.lang.as_str(),
                "bash" | "shell" | "console" | "zsh" | "shell-session" | "yml"
            ),
            "{place}: label the block `sh` or `yaml` (it is `{}`), so that it is run",
            block.lang
        );
        if !matches!(block.lang.as_str(), "sh" | "yaml") {
            continue;
        }
        if let Some(why) = &block.not_run {
            assert!(!why.is_empty(), "{place}: a `not run` marker must say why");
            eprintln!("doc-test: NOT RUN {place} ({}): {why}", block.lang);
            continue;
        }
        checked += 1;
        if block.lang == "sh" {
            script.push_str(&format!("echo '+ {place}' >&2\n"));
            for line in logical_lines(&block.text) {
                // A group per line: its status is the whole line's, `a && b` included, which
                // `set -e` alone would let pass when `a` fails.
                script.push_str(&format!(
                    "{{ {line}\n}} || {{ echo 'doc-test: {place}: this line failed' >&2; exit 1; }}\n"
                ));
            }
            continue;
        }
        let is_test_file = block.text.lines().any(|l| l.starts_with("tests:"));
        let (file, args) = if is_test_file {
            (
                work.join(format!("pipelines/tests/block-{}.test.yaml", block.line)),
                "test",
            )
        } else {
            (
                work.join(format!("pipelines/block-{}.yaml", block.line)),
                "validate",
            )
        };
        let mut yaml = block.text.clone();
        if !is_test_file {
            for (key, line) in PIPELINE_BASE {
                if !yaml.lines().any(|l| l.starts_with(&format!("{key}:"))) {
                    yaml.push_str(line);
                    yaml.push('\n');
                }
            }
        }
        std::fs::write(&file, &yaml).unwrap();
        let out = command("sluice").arg(args).arg(&file).output().unwrap();
        assert!(
            out.status.success(),
            "{place}: sluice {args} of the block failed:\n{yaml}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = command("bash").arg("-c").arg(&script).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    eprintln!("{stdout}{stderr}");
    assert!(
        out.status.success(),
        "{doc}: a block failed (the last `+ {doc}:LINE` above names it)"
    );
    eprintln!("doc-test: {doc}: {checked} block(s) run or validated");
}

/// One test per document, so that they run side by side.
macro_rules! doc_tests {
    ($($name:ident => $doc:literal,)*) => {
        $(
            #[test]
            fn $name() {
                run_doc($doc);
            }
        )*

        /// A new document is run too: it must be listed here.
        #[test]
        fn every_doc_is_run() {
            let listed = [$($doc),*];
            for doc in docs() {
                let doc = doc.to_string_lossy().into_owned();
                assert!(listed.contains(&doc.as_str()), "{doc} is not in doc_tests! (host/tests/all/docs.rs)");
            }
        }
    };
}

doc_tests! {
    readme => "README.md",
    connectors => "docs/connectors.md",
    delivery => "docs/delivery.md",
    deploy => "docs/deploy.md",
    languages => "docs/languages.md",
    operations => "docs/operations.md",
    packed_batch => "docs/packed-batch.md",
    pipeline_reference => "docs/pipeline-reference.md",
    testing => "docs/testing.md",
    writing_handlers => "docs/writing-handlers.md",
    assemblyscript_guide => "docs/handlers/assemblyscript.md",
    c_guide => "docs/handlers/c.md",
    go_guide => "docs/handlers/go.md",
    javascript_guide => "docs/handlers/javascript.md",
    python_guide => "docs/handlers/python.md",
    zig_guide => "docs/handlers/zig.md",
}
