//! `sluice new`: a ready-to-build handler project in one of the supported languages, with its
//! build script, a README, a pipeline that runs it and a `sluice test` file for it.
//!
//! The templates live in `host/templates/` and are embedded in the binary; the contract
//! (`wit/v0.1/plugin.wit`) is copied into guest projects that need it as a WIT dependency.

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

/// The Rust SDK this binary was built with, when its sources are still where they were.
pub fn default_sdk_path() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?.join("sdk");
    sdk.join("Cargo.toml").is_file().then_some(sdk)
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
    let sdk = match (lang, sdk_path) {
        (Lang::Rust, Some(path)) => {
            check_sdk(path)?;
            path.to_path_buf()
        }
        (Lang::Rust, None) => default_sdk_path().context(
            "the Rust SDK's sources are not where this binary was built from; pass --sdk-path",
        )?,
        _ => PathBuf::new(),
    };
    let sdk = sdk.canonicalize().unwrap_or(sdk);
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{sdk_path}}", &sdk.to_string_lossy())
    };
    for f in files(lang) {
        let path = dir.join(fill(&f.path));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, fill(f.text))
            .with_context(|| format!("cannot write {}", path.display()))?;
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
