//! The bounded-resource policy: one memory budget for the process, checked before every
//! large allocation that a file or an argument can cause, and checked arithmetic for every
//! size computed from one. A request over the budget is an error that says how much it
//! would need, never an abort in the allocator; a size that overflows 64 bits is an error,
//! never a wrapped number.
//!
//! The budget defaults to three quarters of the memory this process may use: the least of
//! the machine's physical memory, the memory limits of its cgroup and the cgroup's
//! ancestors (v1 and v2) and the `RLIMIT_AS` / `RLIMIT_DATA` limits. The rest is left for what the estimates below do not count (the
//! allocator's slack, the page cache, other processes). The CLI sets it with
//! `--memory-limit` or `VGG_MEMORY_LIMIT`; the library never reads the environment.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub use crate::error::human_bytes;
use crate::error::{Error, Result};

/// 0: not set, use the machine's default.
static BUDGET: AtomicU64 = AtomicU64::new(0);

/// Bytes that live compiled engines hold (see [`Held`]), which every new request must fit
/// beside: a notebook's third model is refused, not aborted, when the first two hold most
/// of the budget.
static HELD: AtomicU64 = AtomicU64::new(0);

/// Memory a long-lived object holds (a compiled engine's weights and buffers), counted
/// against the budget until it is dropped.
#[derive(Debug, Default)]
pub struct Held(u64);

impl Held {
    /// Holds `bytes` instead of what this holds now, when they fit beside the rest.
    pub fn replace(&mut self, bytes: Option<u64>, what: impl FnOnce() -> String) -> Result<()> {
        let others = HELD.load(Ordering::Relaxed).saturating_sub(self.0);
        let bytes = fits(bytes, others, what)?;
        HELD.fetch_add(bytes, Ordering::Relaxed);
        HELD.fetch_sub(std::mem::replace(&mut self.0, bytes), Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        HELD.fetch_sub(self.0, Ordering::Relaxed);
    }
}

/// Sets the memory budget in bytes; `None` restores the default sized from the machine.
pub fn set_memory_budget(bytes: Option<u64>) -> Result<()> {
    if bytes == Some(0) {
        return Err(Error::BadArgument(
            "the memory limit must be more than 0 bytes".into(),
        ));
    }
    BUDGET.store(bytes.unwrap_or(0), Ordering::Relaxed);
    Ok(())
}

/// The memory budget in bytes.
pub fn memory_budget() -> u64 {
    match BUDGET.load(Ordering::Relaxed) {
        0 => default_budget(),
        set => set,
    }
}

/// Three quarters of [`usable_memory`].
pub fn default_budget() -> u64 {
    usable_memory() / 4 * 3
}

/// The most memory this process may use: the least of physical memory, the cgroup limit and
/// the address-space and data rlimits.
pub fn usable_memory() -> u64 {
    [
        physical_memory(),
        cgroup_limit(),
        rlimit(libc::RLIMIT_AS),
        rlimit(libc::RLIMIT_DATA),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(8 << 30)
}

fn physical_memory() -> Option<u64> {
    // SAFETY: sysconf only reads system configuration values.
    let (pages, page_size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let pages = u64::try_from(pages).ok()?;
    pages.checked_mul(u64::try_from(page_size).ok()?)
}

/// The least memory limit of this process's cgroup and its ancestors (cgroup v2's
/// `memory.max`, v1's `memory.limit_in_bytes`): a container or a systemd/Slurm job limit.
fn cgroup_limit() -> Option<u64> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut candidates = vec![
        PathBuf::from("/sys/fs/cgroup/memory.max"),
        PathBuf::from("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
    ];
    for line in membership.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next(), fields.next(), fields.next());
        let (root, file) = match controllers {
            Some("") => ("/sys/fs/cgroup", "memory.max"),
            Some(c) if c.split(',').any(|c| c == "memory") => {
                ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")
            }
            _ => continue,
        };
        let mut dir = Path::new(root).join(path.unwrap_or("/").trim_start_matches('/'));
        while dir.starts_with(root) {
            candidates.push(dir.join(file));
            if !dir.pop() {
                break;
            }
        }
    }
    candidates
        .iter()
        .filter_map(|file| std::fs::read_to_string(file).ok()?.trim().parse().ok())
        .min()
}

#[cfg(target_os = "linux")]
fn rlimit(resource: libc::__rlimit_resource_t) -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct, which `limit` is.
    if unsafe { libc::getrlimit(resource, &mut limit) } != 0
        || limit.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    Some(limit.rlim_cur)
}

#[cfg(not(target_os = "linux"))]
fn rlimit(_resource: libc::c_int) -> Option<u64> {
    None
}

/// Refuses `bytes` (None: a size that overflowed) of memory for `what` when they exceed the
/// budget left beside what live engines hold. `what` is built only on refusal and names the request as the user made it: a
/// file, a flag and its value.
pub fn reserve(bytes: Option<u64>, what: impl FnOnce() -> String) -> Result<()> {
    fits(bytes, HELD.load(Ordering::Relaxed), what).map(|_| ())
}

/// `bytes`, when they fit the budget beside `held`.
fn fits(bytes: Option<u64>, held: u64, what: impl FnOnce() -> String) -> Result<u64> {
    let budget = memory_budget();
    match bytes {
        Some(bytes) if bytes.saturating_add(held) <= budget => Ok(bytes),
        need => Err(Error::OverBudget {
            what: what(),
            need,
            budget,
            held,
        }),
    }
}

/// The error for a request whose size overflowed 64 bits.
pub fn too_large(what: String) -> Error {
    Error::OverBudget {
        what,
        need: None,
        budget: memory_budget(),
        held: 0,
    }
}

/// Bytes of an array of `dims` with `element_size`-byte elements; None on overflow.
pub fn array_bytes(dims: &[usize], element_size: usize) -> Option<u64> {
    dims.iter()
        .try_fold(element_size as u64, |acc, &d| acc.checked_mul(d as u64))
}

/// Elements of an array of `dims`; None when the count overflows `usize`.
pub fn element_count(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Parses a memory size: a byte count with an optional K, M, G or T suffix (powers of 1024,
/// `B`/`iB` accepted), e.g. `512M`, `2GiB`, `1073741824`.
pub fn parse_size(text: &str) -> Result<u64> {
    let bad = |why: &str| {
        Error::BadArgument(format!(
            "bad memory size `{text}`: {why} (expected a number with an optional K, M, G or T \
             suffix, e.g. 512M or 4G)"
        ))
    };
    let trimmed = text.trim();
    let upper = trimmed.to_ascii_uppercase();
    let without_b = upper
        .strip_suffix("IB")
        .or_else(|| upper.strip_suffix('B'))
        .unwrap_or(&upper);
    let (number, shift) = match without_b.chars().last() {
        Some('K') => (&without_b[..without_b.len() - 1], 10),
        Some('M') => (&without_b[..without_b.len() - 1], 20),
        Some('G') => (&without_b[..without_b.len() - 1], 30),
        Some('T') => (&without_b[..without_b.len() - 1], 40),
        _ => (without_b, 0),
    };
    let value: f64 = number.trim().parse().map_err(|_| bad("not a number"))?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(bad("out of range"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("-1G").is_err());
    }

    #[test]
    fn array_sizes_are_checked() {
        assert_eq!(array_bytes(&[2, 3, 4], 4), Some(96));
        assert_eq!(array_bytes(&[1 << 62, 3, 32, 32], 4), None);
        assert_eq!(element_count(&[1, 3, 1 << 32, 1 << 32]), None);
    }

    #[test]
    fn the_default_budget_is_below_the_machine() {
        let usable = usable_memory();
        assert!(default_budget() < usable && default_budget() > 0);
        let err = reserve(Some(u64::MAX), || "a test".into()).unwrap_err();
        assert!(err.to_string().contains("a test"), "{err}");
        assert!(reserve(None, || "overflow".into()).is_err());
        assert!(reserve(Some(1), String::new).is_ok());
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
    }
}
