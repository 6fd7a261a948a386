//! `sluice new`: a ready-to-build handler project in one of the supported languages, with its
//! build script, a README, a pipeline that runs it and a `sluice test` file for it.
//!
//! The templates live in `host/templates/` and are embedded in the binary; the contract
//! (`wit/v0.1/plugin.wit`) is copied into guest projects that need it as a WIT dependency, and a
//! Rust project gets a copy of the Rust SDK (`vendor/sluice-sdk`, with the WIT it is generated
//! from in `vendor/wit`), so that it builds wherever it is copied and whatever installed `sluice`
//! wrote it: nothing in it points back at a checkout.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::ValueEnum;

/// A language `sluice new` can start a handler in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    #[value(alias = "rs")]
    Rust,
    #[value(alias = "py")]
    Python,
    #[value(alias = "javascript")]
    Js,
    #[value(alias = "typescript")]
    Ts,
    C,
    Zig,
    #[value(name = "assemblyscript")]
    AssemblyScript,
}

const CONTRACT: &str = include_str!("../../wit/v0.1/plugin.wit");
const WORLD: &str = include_str!("../templates/common-world.wit");
const PIPELINE: &str = include_str!("../templates/common-pipeline.yaml");
const TEST: &str = include_str!("../templates/common-test.yaml");
const GITIGNORE: &str = include_str!("../templates/common-gitignore");

/// The Rust SDK as a project gets it: its sources, the WIT its bindings are generated from (its
/// `generate!` reads `../wit/v0.2`, so `vendor/wit` sits beside `vendor/sluice-sdk`), and a
/// manifest of its own (`sdk/Cargo.toml` inherits from this workspace; a test keeps the two
/// manifests' dependencies equal).
const VENDORED_SDK: [(&str, &str); 5] = [
    (
        "vendor/sluice-sdk/Cargo.toml",
        include_str!("../templates/rust/sdk-Cargo.toml"),
    ),
    (
        "vendor/sluice-sdk/src/lib.rs",
        include_str!("../../sdk/src/lib.rs"),
    ),
    (
        "vendor/sluice-sdk/src/json.rs",
        include_str!("../../sdk/src/json.rs"),
    ),
    (
        "vendor/sluice-sdk/src/packed.rs",
        include_str!("../../sdk/src/packed.rs"),
    ),
    (
        "vendor/wit/v0.2/plugin.wit",
        include_str!("../../wit/v0.2/plugin.wit"),
    ),
];

/// Where a project's `Cargo.toml` finds the SDK when it carries its own copy.
const VENDORED_SDK_PATH: &str = "vendor/sluice-sdk";

/// One file of a template: where it goes, what it holds, whether it is a script.
struct File {
    path: String,
    text: &'static str,
    executable: bool,
}

fn file(path: &str, text: &'static str) -> File {
    File {
        path: path.to_owned(),
        text,
        executable: path.ends_with(".sh"),
    }
}

/// The files of `templates/<dir>/`, each named once: `template!("js", "handler.js", "build.sh")`.
macro_rules! template {
    ($dir:literal, $($path:literal),+ $(,)?) => {
        [$(file($path, include_str!(concat!("../templates/", $dir, "/", $path)))),+]
    };
}

fn files(lang: Lang) -> Vec<File> {
    let mut files = vec![
        file("pipeline.yaml", PIPELINE),
        file("{{name}}.test.yaml", TEST),
        file(".gitignore", GITIGNORE),
    ];
    // Every guest language but Rust (whose SDK carries the WIT) gets the world and the contract.
    if lang != Lang::Rust {
        files.extend([
            file("wit/world.wit", WORLD),
            file("wit/deps/plugin/plugin.wit", CONTRACT),
        ]);
    }
    match lang {
        Lang::Rust => files.extend(template!(
            "rust",
            "Cargo.toml",
            "src/lib.rs",
            "build.sh",
            "README.md"
        )),
        Lang::Python => files.extend(template!(
            "python",
            "app.py",
            "sluice_crash.py",
            "build.sh",
            "README.md"
        )),
        Lang::Js => files.extend(template!("js", "handler.js", "build.sh", "README.md")),
        Lang::Ts => files.extend(template!(
            "ts",
            "handler.ts",
            "tsconfig.json",
            "build.sh",
            "README.md"
        )),
        Lang::C => files.extend(template!("c", "handler.c", "build.sh", "README.md")),
        Lang::Zig => files.extend(template!("zig", "handler.zig", "build.sh", "README.md")),
        Lang::AssemblyScript => files.extend(template!(
            "assemblyscript",
            "assembly/handler.ts",
            "assembly/sluice/arena.ts",
            "assembly/sluice/exports.ts",
            "assembly/sluice/host.ts",
            "assembly/sluice/index.ts",
            "assembly/sluice/json-float.ts",
            "assembly/sluice/json-members.ts",
            "assembly/sluice/json-parse.ts",
            "assembly/sluice/json-value.ts",
            "assembly/sluice/json-write.ts",
            "assembly/sluice/json.ts",
            "assembly/sluice/message.ts",
            "assembly/sluice/names.mjs",
            "assembly/sluice/output.ts",
            "assembly/sluice/register.ts",
            "asconfig.json",
            "package.json",
            "build.sh",
            "README.md"
        )),
    }
    files
}

/// Refuse an `--sdk-path` that is not the Rust SDK's crate: the project would be written and then
/// fail to build with a cargo error far from its cause.
fn check_sdk(path: &Path) -> anyhow::Result<()> {
    let manifest = path.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).with_context(|| {
        format!(
            "--sdk-path {}: no Cargo.toml there; it must be the `sdk` folder of a Sluice checkout",
            path.display()
        )
    })?;
    if !text.contains("name = \"sluice-sdk\"") {
        bail!(
            "--sdk-path {}: its Cargo.toml is not the `sluice-sdk` crate's; it must be the `sdk` folder of a Sluice checkout",
            path.display()
        );
    }
    Ok(())
}

/// Create the project `<parent>/<name>` and return its directory.
pub fn create(
    name: &str,
    lang: Lang,
    parent: &Path,
    sdk_path: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        bail!(
            "`{name}` is not a valid handler name (lowercase letters, digits, `-`, `_`; a letter first)"
        );
    }
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let mut files = files(lang);
    // A Rust project takes the SDK from `--sdk-path` (a checkout's `sdk`, to work on the SDK
    // itself), else from a copy of its own.
    let sdk = match (lang, sdk_path) {
        (Lang::Rust, Some(path)) => {
            check_sdk(path)?;
            let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
            path.to_string_lossy().into_owned()
        }
        (Lang::Rust, None) => {
            files.extend(VENDORED_SDK.map(|(path, text)| file(path, text)));
            VENDORED_SDK_PATH.to_owned()
        }
        _ => String::new(),
    };
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{sdk_path}}", &sdk)
    };
    for f in files {
        let path = dir.join(fill(&f.path));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        // The SDK's copy is written as it is: its text is not a template.
        let text = if f.path.starts_with("vendor/") {
            f.text.to_owned()
        } else {
            fill(f.text)
        };
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        #[cfg(unix)]
        if f.executable {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SDK's copy builds as the SDK does: its manifest names the same dependencies as
    /// `sdk/Cargo.toml`, with the specifications and package fields it inherits from the
    /// workspace's `Cargo.toml` (single-line `key = value` entries there) written out.
    #[test]
    fn the_vendored_sdk_manifest_matches_the_sdk() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap();
        let (workspace, sdk, vendored) = (
            read("Cargo.toml"),
            read("sdk/Cargo.toml"),
            read("host/templates/rust/sdk-Cargo.toml"),
        );
        let entry = |text: &str, key: &str| -> Option<String> {
            text.lines()
                .find(|line| line.split_once(" = ").is_some_and(|(k, _)| k.trim() == key))
                .map(|line| line.split_once(" = ").unwrap().1.trim().to_owned())
        };
        for key in ["name", "description"] {
            assert_eq!(entry(&vendored, key), entry(&sdk, key), "package.{key}");
        }
        for key in ["version", "edition", "rust-version", "license"] {
            assert_eq!(
                entry(&vendored, key),
                entry(&workspace, key),
                "package.{key}"
            );
        }
        let dependencies = |text: &str| -> Vec<String> {
            let section = text.split("[dependencies]").nth(1).unwrap();
            let section = section.split("\n[").next().unwrap();
            section
                .lines()
                .filter_map(|line| line.split_once(" = ").map(|(k, _)| k.trim().to_owned()))
                .collect()
        };
        // `sdk/Cargo.toml` takes each dependency from the workspace: `serde.workspace = true`.
        let names: Vec<String> = dependencies(&sdk)
            .iter()
            .map(|key| {
                key.strip_suffix(".workspace")
                    .unwrap_or_else(|| panic!("sdk/Cargo.toml: {key} is not from the workspace"))
                    .to_owned()
            })
            .collect();
        assert_eq!(names, dependencies(&vendored));
        for name in &names {
            assert_eq!(entry(&vendored, name), entry(&workspace, name), "{name}");
        }
        // Every source file of the SDK is copied.
        for source in std::fs::read_dir(root.join("sdk/src")).unwrap() {
            let source = format!(
                "vendor/sluice-sdk/src/{}",
                source.unwrap().file_name().to_string_lossy()
            );
            assert!(
                VENDORED_SDK.iter().any(|(path, _)| *path == source),
                "{source} is not in VENDORED_SDK"
            );
        }
    }

    #[test]
    fn a_rust_project_carries_its_sdk() {
        let parent = tempfile::tempdir().unwrap();
        let dir = create("rs-handler", Lang::Rust, parent.path(), None).unwrap();
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains("sluice-sdk = { path = \"vendor/sluice-sdk\" }"),
            "{manifest}"
        );
        for (path, text) in VENDORED_SDK {
            assert_eq!(
                std::fs::read_to_string(dir.join(path)).unwrap(),
                text,
                "{path}"
            );
        }
    }

    #[test]
    fn a_project_has_its_files_with_the_name_filled_in() {
        let parent = tempfile::tempdir().unwrap();
        let dir = create("my-handler", Lang::Python, parent.path(), None).unwrap();
        for f in [
            "app.py",
            "build.sh",
            "README.md",
            "pipeline.yaml",
            "my-handler.test.yaml",
            "wit/world.wit",
            "wit/deps/plugin/plugin.wit",
        ] {
            let text = std::fs::read_to_string(dir.join(f)).unwrap();
            assert!(!text.contains("{{"), "{f} still has a placeholder");
        }
        let pipeline = std::fs::read_to_string(dir.join("pipeline.yaml")).unwrap();
        assert!(pipeline.contains("plugin: dist/my-handler.wasm"));
        assert!(
            create("my-handler", Lang::Python, parent.path(), None).is_err(),
            "exists"
        );
        assert!(create("Bad Name", Lang::Js, parent.path(), None).is_err());
    }
}
