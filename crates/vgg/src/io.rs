//! Files we write are written atomically: to a temporary file beside the target, then
//! renamed over it, so a crash or a full disk never leaves a half-written file behind. The
//! temporary files are registered while they exist: a SIGINT, SIGTERM or SIGHUP removes
//! them before the process dies ([`remove_temporaries_on_signals`]), and a later write
//! beside them removes those of processes that no longer exist (a SIGKILL leaves them).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, Result};

/// The temporary files this process is writing now.
static TEMPORARIES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Calls `write(tmp)` to produce the file at a temporary path in the same directory, flushes
/// it to disk, then renames it to `path`. On failure the temporary file is removed and
/// `path` is untouched; a process killed at any moment leaves either the old or the new file.
/// A link at `path` is written through (its target is replaced, the link stays); a
/// directory, device, FIFO or socket there is refused.
pub fn write_atomically(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let target = write_target(path)?;
    remove_stale_temporaries(&target);
    let tmp = temporary_path(&target);
    let registered = Registered::new(tmp.clone());
    let result = write(&tmp)
        .and_then(|()| {
            #[cfg(feature = "fault-injection")]
            fault_injection::at_write("VGG_FAULT_WRITE", &tmp);
            keep_permissions(&target, &tmp, path)?;
            sync(&tmp)
        })
        .and_then(|()| std::fs::rename(&tmp, &target).map_err(|e| Error::write(path, e)))
        .map_err(|e| for_requested_path(e, path, &tmp));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    drop(registered);
    result
}

/// Refuses a run that would replace files named `names` in the folder given as `--out dir`
/// (files the user may not know a command writes, unlike an `--output` they name):
/// unless `overwrite` (`--force`), any of them already there is an error listing them.
/// `hint` is put before the alternatives (e.g. how to continue a run instead).
pub fn refuse_to_replace(dir: &Path, names: &[&str], overwrite: bool, hint: &str) -> Result<()> {
    let present: Vec<String> = names
        .iter()
        .filter(|name| std::fs::symlink_metadata(dir.join(name)).is_ok())
        .map(|name| name.to_string())
        .collect();
    if present.is_empty() || overwrite {
        return Ok(());
    }
    Err(Error::BadArgument(format!(
        "--out {} already holds {}: {hint}choose another --out, or pass --force to replace them",
        dir.display(),
        crate::error::capped_list(&present, 8)
    )))
}

/// A replaced file keeps its permissions (a new one gets the umask's).
fn keep_permissions(target: &Path, tmp: &Path, path: &Path) -> Result<()> {
    match std::fs::metadata(target) {
        Ok(old) => {
            std::fs::set_permissions(tmp, old.permissions()).map_err(|e| Error::write(path, e))
        }
        Err(_) => Ok(()),
    }
}

/// A path's extension in lower case (`model.SAFETENSORS` is a safetensors file), the
/// way every format chosen by extension is read.
pub fn extension(path: &Path) -> Option<String> {
    Some(path.extension()?.to_str()?.to_ascii_lowercase())
}

/// Refuses an output path for an array (`what`) whose extension is not `.npy`, the one
/// format such outputs are written in: formats follow the extension everywhere.
pub fn check_npy_output(path: &Path, what: &str) -> Result<()> {
    match extension(path).as_deref() {
        Some("npy") => Ok(()),
        _ => Err(Error::BadArgument(format!(
            "{}: expected a .npy file for {what}",
            path.display()
        ))),
    }
}

/// Refuses an output path that a later [`write_atomically`] would refuse (a device, FIFO or
/// folder there, or a folder that does not exist), so that a command fails before its work,
/// not after it; and one that is the same file as any of the command's `inputs` (by any
/// path or link), which the write would replace with its own result.
pub fn check_output(path: &Path, inputs: &[&Path]) -> Result<()> {
    if let Some(input) = inputs.iter().find(|input| same_file(path, input)) {
        return Err(Error::BadArgument(format!(
            "the output {} is the input {}: writing it would replace what is read; \
             choose another output",
            path.display(),
            input.display()
        )));
    }
    let target = write_target(path)?;
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if dir.is_dir() {
        return Ok(());
    }
    Err(Error::write(
        path,
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("its folder {} does not exist", dir.display()),
        ),
    ))
}

/// Whether `a` and `b` are the same existing regular file.
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let (Ok(a), Ok(b)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
            return false;
        };
        a.is_file() && (a.dev(), a.ino()) == (b.dev(), b.ino())
    }
    #[cfg(not(unix))]
    {
        a.is_file() && std::fs::canonicalize(a).ok() == std::fs::canonicalize(b).ok()
    }
}

/// The file a write of `path` replaces: `path` itself, or where a link there points (to any
/// depth). Refuses anything but a regular file or nothing at all.
fn write_target(path: &Path) -> Result<PathBuf> {
    let mut target = path.to_path_buf();
    for _ in 0..40 {
        let Ok(meta) = std::fs::symlink_metadata(&target) else {
            return Ok(target);
        };
        if meta.file_type().is_symlink() {
            let link = std::fs::read_link(&target).map_err(|e| Error::write(path, e))?;
            target = match target.parent() {
                Some(dir) => dir.join(link),
                None => link,
            };
            continue;
        }
        if meta.is_file() {
            return Ok(target);
        }
        return Err(Error::write(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "it is a {}; only regular files are replaced",
                    kind_name(meta.file_type())
                ),
            ),
        ));
    }
    Err(Error::write(
        path,
        std::io::Error::other("too many levels of symbolic links"),
    ))
}

/// A temporary file registered for removal on a signal while it is being written.
struct Registered(PathBuf);

impl Registered {
    fn new(path: PathBuf) -> Self {
        lock_temporaries().push(path.clone());
        Registered(path)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock_temporaries().retain(|p| p != &self.0);
    }
}

fn lock_temporaries() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    TEMPORARIES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes SIGINT, SIGTERM and SIGHUP remove this process's temporary files, then end the
/// process as the signal would have (exit status 128 + the signal's number). For programs
/// (the CLI), called once before any work; a library embedded elsewhere leaves signals to
/// its host. Signals ignored when the process started (`nohup`) stay ignored. A watcher
/// thread does the work: a signal handler itself may only write to a pipe. A signal that
/// lands between a write's registration and its file's creation can still leave the file;
/// the next write beside it removes it.
#[cfg(unix)]
pub fn remove_temporaries_on_signals() -> Result<()> {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe writes two descriptors into the two-element array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(Error::BadArgument(format!(
            "cannot install signal handlers: {}",
            std::io::Error::last_os_error()
        )));
    }
    SIGNAL_PIPE.store(fds[1] as usize, Ordering::SeqCst);
    // SAFETY: fds[0] is a fresh descriptor that nothing else owns.
    let mut reader = unsafe { std::fs::File::from_raw_fd(fds[0]) };
    std::thread::Builder::new()
        .name("vgg-signals".into())
        .spawn(move || {
            let mut signal = [0u8; 1];
            if reader.read_exact(&mut signal).is_ok() {
                // Held until the process ends: no write registers a new file meanwhile.
                let temporaries = lock_temporaries();
                for path in temporaries.iter() {
                    let _ = std::fs::remove_file(path);
                }
                let signal = libc::c_int::from(signal[0]);
                // SAFETY: restoring the default action and re-raising ends the process as
                // the signal would have.
                unsafe {
                    libc::signal(signal, libc::SIG_DFL);
                    libc::raise(signal);
                }
                drop(temporaries);
            }
        })
        .map_err(|e| Error::BadArgument(format!("cannot start the signal watcher: {e}")))?;
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: `on_signal` only calls write(2), which is async-signal-safe.
        let previous =
            unsafe { libc::signal(signal, on_signal as *const () as libc::sighandler_t) };
        if previous == libc::SIG_IGN {
            // Ignored by whoever started us (`nohup`, a background job): keep it so.
            // SAFETY: restores the inherited disposition.
            unsafe { libc::signal(signal, libc::SIG_IGN) };
        }
    }
    Ok(())
}

/// The write end of the signal pipe (0: none).
#[cfg(unix)]
static SIGNAL_PIPE: AtomicUsize = AtomicUsize::new(0);

#[cfg(unix)]
extern "C" fn on_signal(signal: libc::c_int) {
    let fd = SIGNAL_PIPE.load(Ordering::SeqCst) as libc::c_int;
    let byte = signal as u8;
    // SAFETY: write(2) of one byte from a live stack variable; async-signal-safe.
    unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
}

/// Removes `.NAME.vgg-PID-N.tmp` files beside `target` left by processes that no longer exist
/// (killed with SIGKILL, or by a power cut): the next write of the same file cleans up.
fn remove_stale_temporaries(target: &Path) {
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return;
    };
    let prefix = temporary_prefix(&name.to_string_lossy());
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file_name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_prefix("vgg-"))
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, n)| n.parse::<usize>().ok().and(pid.parse::<u32>().ok()))
        else {
            continue;
        };
        if !process_exists(pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn process_exists(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: signal 0 only checks that the process exists and may be signalled.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        alive || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    true
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

/// The whole of the regular file at `path`, after checking its length against the memory
/// budget: `times` buffers of its size will be held while it is used. Reads at most the
/// length checked, however the file grows meanwhile.
pub fn read_regular(path: &Path, times: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let file = open_regular(path).map_err(|e| Error::io(path, "cannot read", e))?;
    let length = file
        .metadata()
        .map_err(|e| Error::io(path, "cannot read", e))?
        .len();
    reserve_read(path, length, times)?;
    let mut bytes = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
    file.take(length)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, "cannot read", e))?;
    Ok(bytes)
}

/// Refuses reading `path` (`length` bytes) when `times` buffers of its size would not fit
/// the memory budget.
pub fn reserve_read(path: &Path, length: u64, times: u64) -> Result<()> {
    crate::limits::reserve(length.checked_mul(times), || {
        format!("reading {}", path.display())
    })
}

/// [`read_regular`] for text files.
pub fn read_text(path: &Path) -> Result<String> {
    String::from_utf8(read_regular(path, 1)?).map_err(|_| {
        Error::io(
            path,
            "cannot read",
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
        )
    })
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

/// `.NAME.vgg-PID-N.tmp` beside `path`: unique per process and per write, so threads writing
/// the same file at once never share a temporary file, and marked as ours.
fn temporary_path(path: &Path) -> PathBuf {
    static WRITES: AtomicUsize = AtomicUsize::new(0);
    let name = path
        .file_name()
        .map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let prefix = temporary_prefix(&name);
    path.with_file_name(format!("{prefix}vgg-{}-{n}.tmp", std::process::id()))
}

/// `.NAME.` of a temporary file for the file `name`, its name cut to 200 bytes so that the
/// temporary's fits the 255 bytes a file name may have wherever the target's does.
fn temporary_prefix(name: &str) -> String {
    let mut end = name.len().min(200);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!(".{}.", &name[..end])
}

/// A test hook: with `VAR=N` set, the N-th write counted under `VAR` aborts right after
/// writing its temporary file, as a kill at the worst moment would; with `VAR=N:pause` it
/// waits there a minute instead, for a test to send a signal. Variables: `VGG_FAULT_WRITE`
/// (every atomic write) and `VGG_FAULT_CHECKPOINT_WRITE` (training checkpoints). Compiled
/// only with the `fault-injection` feature, which the workspace's tests turn on and the
/// `vgg` binary does not.
#[cfg(feature = "fault-injection")]
pub mod fault_injection {
    use std::collections::HashMap;
    use std::path::Path;
    use std::sync::Mutex;

    static WRITES: Mutex<Option<HashMap<&'static str, usize>>> = Mutex::new(None);

    pub fn at_write(var: &'static str, tmp: &Path) {
        let write = {
            let mut counts = WRITES.lock().unwrap_or_else(|e| e.into_inner());
            let count = counts
                .get_or_insert_with(HashMap::new)
                .entry(var)
                .or_insert(0);
            *count += 1;
            *count
        };
        let Ok(value) = std::env::var(var) else {
            return;
        };
        let (n, pause) = match value.split_once(':') {
            Some((n, "pause")) => (n, true),
            _ => (value.as_str(), false),
        };
        if n.parse() != Ok(write) {
            return;
        }
        eprintln!("injected fault: {var} write {write} ({})", tmp.display());
        if pause {
            std::thread::sleep(std::time::Duration::from_secs(60));
        } else {
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name as long as a file name may be (255 bytes) is written: the temporary file's
    /// name beside it is cut to fit.
    #[test]
    fn the_longest_file_names_are_written() {
        let dir = std::env::temp_dir().join(format!("vgg-io-long-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}.svg", "é".repeat(125)));
        assert_eq!(path.file_name().unwrap().len(), 254);
        write_atomically(&path, |tmp| {
            std::fs::write(tmp, b"x").map_err(|e| Error::io(tmp, "cannot write", e))
        })
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"x");
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
