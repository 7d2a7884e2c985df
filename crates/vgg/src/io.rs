//! Files we write are written atomically: to a temporary file beside the target, then
//! renamed over it, so a crash or a full disk never leaves a half-written file behind.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, Result};

/// Calls `write(tmp)` to produce the file at a temporary path in the same directory, flushes
/// it to disk, then renames it to `path`. On failure the temporary file is removed and
/// `path` is untouched; a process killed at any moment leaves either the old or the new file.
pub fn write_atomically(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temporary_path(path);
    let result = write(&tmp)
        .and_then(|()| sync(&tmp))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::write(path, e)))
        .map_err(|e| for_requested_path(e, path, &tmp));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// An error of the write to `tmp` as the user sees it: a failure to write `path`.
fn for_requested_path(error: Error, path: &Path, tmp: &Path) -> Error {
    let tmp = tmp.display().to_string();
    match error {
        Error::Io {
            path: p, source, ..
        }
        | Error::Write { path: p, source }
            if p == tmp =>
        {
            Error::write(path, source)
        }
        Error::Candle(candle_core::Error::Io(source)) => Error::write(path, source),
        other => other,
    }
}

/// Opens `path` for reading if it is a regular file (following links). A FIFO, socket,
/// device or directory is refused without blocking: opening a FIFO for reading would wait
/// for a writer forever, and reading a device need never end.
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path)?;
    let kind = file.metadata()?.file_type();
    if kind.is_file() {
        return Ok(file);
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!(
            "not a regular file (a {}); only regular files are read",
            kind_name(kind)
        ),
    ))
}

/// [`open_regular`]'s check alone, for readers that open the path themselves.
pub fn check_regular(path: &Path, what: &'static str) -> Result<()> {
    open_regular(path)
        .map(drop)
        .map_err(|e| Error::io(path, what, e))
}

fn kind_name(kind: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "FIFO";
        }
        if kind.is_socket() {
            return "socket";
        }
        if kind.is_block_device() || kind.is_char_device() {
            return "device";
        }
    }
    if kind.is_dir() {
        "directory"
    } else {
        "special file"
    }
}

/// Flushes the file's data, so that after the rename the new name never points at a file
/// whose contents are still only in the page cache of a crashed machine.
fn sync(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(|e| Error::io(path, "cannot flush", e))
}

/// `.NAME.PID-N.tmp` beside `path`: unique per process and per write, so threads writing the
/// same file at once never share a temporary file.
fn temporary_path(path: &Path) -> PathBuf {
    static WRITES: AtomicUsize = AtomicUsize::new(0);
    let name = path
        .file_name()
        .map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}-{n}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_previous_file() {
        let dir = std::env::temp_dir().join(format!("vgg-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.bin");
        std::fs::write(&path, b"old").unwrap();
        let err = write_atomically(&path, |tmp| {
            std::fs::write(tmp, b"partial").unwrap();
            Err(Error::BadArgument("injected".into()))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary file left"
        );
        write_atomically(&path, |tmp| {
            std::fs::write(tmp, b"new").unwrap();
            Ok(())
        })
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
