//! Reading files a user names (pipeline files, plugins) with a size limit, so that a path such
//! as `/dev/zero` or a runaway file is an error at once instead of a host that reads until it is
//! killed.

use std::io::Read as _;
use std::path::Path;

/// Largest pipeline file read, in bytes.
pub const MAX_PIPELINE_FILE: u64 = 4 * 1024 * 1024;
/// Largest plugin read, in bytes (a Python component with its interpreter is about 40 MiB).
pub const MAX_PLUGIN_FILE: u64 = 256 * 1024 * 1024;

/// The bytes of the regular file at `path`, refused when larger than `max` bytes or not a
/// regular file (a device, a FIFO, a directory).
pub fn read_bounded(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    // Judged before it is opened: opening a FIFO waits for a writer.
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::other(
            "not a regular file (a device, a pipe or a directory)",
        ));
    }
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other(
            "not a regular file (a device, a pipe or a directory)",
        ));
    }
    if meta.len() > max {
        return Err(too_large(meta.len(), max));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow while it is read: never read past the limit.
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large(bytes.len() as u64, max));
    }
    Ok(bytes)
}

/// [`read_bounded`] as UTF-8 text.
pub fn read_text_bounded(path: &Path, max: u64) -> std::io::Result<String> {
    String::from_utf8(read_bounded(path, max)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

fn too_large(len: u64, max: u64) -> std::io::Error {
    std::io::Error::other(format!(
        "{len} bytes or more, over the limit of {max} bytes"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_oversized_files_are_refused_at_once() {
        let err = read_bounded(Path::new("/dev/zero"), 1024).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 2048]).unwrap();
        let err = read_bounded(&big, 1024).unwrap_err();
        assert!(
            err.to_string().contains("over the limit of 1024 bytes"),
            "{err}"
        );
        assert_eq!(read_bounded(&big, 4096).unwrap().len(), 2048);
    }
}
