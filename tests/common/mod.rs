//! Helpers shared by the integration tests: fixtures, the `vgg` binary, tolerance checks and
//! scratch folders that clean up after themselves; [`reference`] holds naive kernels and
//! random networks.
#![allow(dead_code)]

pub mod reference;

use std::ffi::OsStr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::Tensor;

pub use reference::*;

/// `vgg bench` of vgg11 at 1×3×32×32 for one iteration: the quickest benchmark of a real
/// arch, which tests extend with the flags they are about.
pub const BENCH_VGG11_32: [&str; 7] = [
    "bench",
    "--arch",
    "vgg11",
    "--input",
    "1x3x32x32",
    "--iters",
    "1",
];

/// `tests/fixtures/<relative>`.
pub fn fixture(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(relative)
}

/// Runs the `vgg` binary with `args`.
pub fn vgg(args: &[&str]) -> Output {
    vgg_with_env(args, &[])
}

/// Runs the `vgg` binary with `args` and extra environment variables.
pub fn vgg_with_env(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vgg"))
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("the vgg binary runs")
}

/// Every element of `got` within `atol + rtol · max|want|` of `want`.
pub fn assert_close(got: &Tensor, want: &Tensor, atol: f32, rtol: f32, what: &str) {
    let (worst, scale) = max_diff(got, want, what);
    assert!(
        worst <= atol + rtol * scale,
        "{what}: max diff {worst} (max |ref| {scale}, allowed {atol} + {rtol}·max|ref|)"
    );
}

/// A fresh folder under the system's temporary directory, removed with everything in it
/// when dropped (also when the test fails).
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("vgg-test-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        Scratch(dir)
    }
}

impl Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<OsStr> for Scratch {
    fn as_ref(&self) -> &OsStr {
        self.0.as_os_str()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
