//! On-disk cache of compiled components, keyed by the component's content hash and the engine's
//! compatibility hash (wasmtime version, target, settings). Compiling a Python or JavaScript
//! component takes tens of seconds; loading it from here takes tens of milliseconds.
//!
//! Architecture invariant: precompiled code is only ever loaded from files this host wrote into
//! its own cache directory, never from a plugin folder.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled components are kept: `$SLUICE_CACHE_DIR`, else `$XDG_CACHE_HOME/sluice`, else
/// `$HOME/.cache/sluice`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SLUICE_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("sluice"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("sluice"))
}

/// SHA-256 of the component bytes, hex: the plugin's content hash shown to users.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn engine_hash(engine: &Engine) -> u64 {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    h.finish()
}

/// Compile `bytes` (the plugin at `plugin`) for `engine`, through the cache in `dir` when there is
/// one. Returns the component and whether it came from the cache. A compile is logged before it
/// starts and when it is done: a large one (Python, JavaScript) takes tens of seconds, which a
/// person watching the log should not mistake for a hang.
pub fn compile(
    engine: &Engine,
    bytes: &[u8],
    hash: &str,
    dir: Option<&Path>,
    plugin: &Path,
) -> anyhow::Result<(Component, bool)> {
    let Some(dir) = dir else {
        return Ok((
            logged_compile(plugin, bytes, || Component::new(engine, bytes))?,
            false,
        ));
    };
    private_dir(dir)?;
    let path = dir.join(format!("{hash}-{:016x}.cwasm", engine_hash(engine)));
    if let Some(component) = cached(engine, &path) {
        return Ok((component, true));
    }
    // One compile per plugin version across every process and thread sharing the cache (replicas
    // on one volume, a reload beside a start-up, tests side by side): the others wait for it,
    // then load what it stored instead of compiling the same thing again.
    let _lock = compile_lock(dir, &path, plugin);
    if let Some(component) = cached(engine, &path) {
        return Ok((component, true));
    }
    let compiled = logged_compile(plugin, bytes, || engine.precompile_component(bytes))?;
    if let Err(err) = store(dir, &path, &compiled) {
        tracing::warn!(dir = %dir.display(), error = %format!("{err:#}"), "cannot write the compile cache; continuing without it");
    }
    // SAFETY: `compiled` was just produced by `precompile_component` on this very engine.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize(engine, &compiled)? };
    Ok((component, false))
}

/// How long a load waits for another process compiling the same plugin before compiling it
/// itself: past it the other is taken to be stuck (a compile takes seconds to a minute).
const COMPILE_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// An exclusive lock on `<entry>.lock` while this process compiles the entry, waiting (up to
/// [`COMPILE_WAIT`]) for another holder. `None` when the lock cannot be had: the compile goes
/// on without it (at worst a second process compiles the same thing). The lock goes with the
/// file handle, and with the process if it dies.
fn compile_lock(dir: &Path, entry: &Path, plugin: &Path) -> Option<std::fs::File> {
    let lock_path = entry.with_extension("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|err| {
            tracing::debug!(dir = %dir.display(), error = %err, "no compile lock; compiling without it");
        })
        .ok()?;
    let started = std::time::Instant::now();
    let mut told = false;
    loop {
        match file.try_lock() {
            Ok(()) => return Some(file),
            Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < COMPILE_WAIT => {
                if !told {
                    tracing::info!(plugin = %plugin.display(), "waiting for another process compiling this plugin into the shared cache");
                    told = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                tracing::warn!(plugin = %plugin.display(), waited_s = COMPILE_WAIT.as_secs(), "another process has held the compile lock too long; compiling anyway");
                return None;
            }
            Err(std::fs::TryLockError::Error(err)) => {
                tracing::debug!(error = %err, "compile lock unavailable; compiling without it");
                return None;
            }
        }
    }
}

/// The entry at `path`, if it is there and loads. Read into memory rather than mapped: a cache
/// file truncated or rewritten while in use must not be able to fault the process (a mapped file
/// that shrinks raises SIGBUS).
fn cached(engine: &Engine, path: &Path) -> Option<Component> {
    let artifact = std::fs::read(path).ok()?;
    // SAFETY: the file was written by `store` into the host's private cache directory from the
    // output of `Engine::precompile_component` for an engine with the same compatibility hash;
    // wasmtime checks the header and the engine settings on load.
    #[allow(unsafe_code)]
    match unsafe { Component::deserialize(engine, &artifact) } {
        Ok(component) => Some(component),
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %format!("{err:#}"), "discarding unusable cache entry");
            let _ = std::fs::remove_file(path);
            None
        }
    }
}

fn logged_compile<T>(
    path: &Path,
    bytes: &[u8],
    compile: impl FnOnce() -> wasmtime::Result<T>,
) -> wasmtime::Result<T> {
    let started = std::time::Instant::now();
    tracing::info!(plugin = %path.display(), bytes = bytes.len(), "compiling plugin (first load of this version; cached afterwards)");
    let compiled = compile()?;
    tracing::info!(plugin = %path.display(), ms = started.elapsed().as_millis() as u64, "plugin compiled");
    Ok(compiled)
}

/// Make sure `dir` is the host's own: created `0700` when missing; refused when another user owns
/// it or others may write to it, since every file in it is loaded as native code.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("creating the compile cache {}", dir.display()))?;
        }
        let meta = std::fs::symlink_metadata(dir)
            .with_context(|| format!("reading the compile cache {}", dir.display()))?;
        if !meta.is_dir() {
            anyhow::bail!(
                "the compile cache {} is not a directory (a symbolic link is refused: its files would run as native code): choose another with --cache-dir or SLUICE_CACHE_DIR",
                dir.display()
            );
        }
        // SAFETY: `geteuid` has no preconditions and cannot fail.
        #[allow(unsafe_code)]
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            anyhow::bail!(
                "the compile cache {} belongs to user {}, not to this user ({me}); its files would run as native code, so it must be your own: choose another with --cache-dir or SLUICE_CACHE_DIR",
                dir.display(),
                meta.uid()
            );
        }
        if meta.mode() & 0o022 != 0 {
            anyhow::bail!(
                "the compile cache {} may be written by others (mode {:o}); its files would run as native code: `chmod 700 {}`, or choose another with --cache-dir or SLUICE_CACHE_DIR",
                dir.display(),
                meta.mode() & 0o777,
                dir.display()
            );
        }
    }
    Ok(())
}

/// Write atomically (temporary file, then rename) so a crash never leaves a torn artifact.
fn store(dir: &Path, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("cwasm"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn the_cache_is_created_private_and_refused_when_others_may_write() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a").join("cache");
        private_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = private_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("may be written by others (mode 777)"), "{err}");
        let engine = Engine::default();
        let refused = compile(
            &engine,
            b"\0asm\x0d\0\x01\0",
            "h",
            Some(&dir),
            Path::new("p.wasm"),
        )
        .unwrap_err();
        assert!(
            format!("{refused:#}").contains("may be written by others"),
            "nothing is loaded from a cache others may write: {refused:#}"
        );
    }
}
