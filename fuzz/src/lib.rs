//! Shared by the fuzz targets whose code under test reads a path: each input is written to
//! one file per process in memory-backed /dev/shm (or the temp dir), overwritten each run.

use std::path::PathBuf;

pub fn scratch_file(kind: &str, data: &[u8]) -> PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!("vgg-fuzz-{kind}-{}", std::process::id()));
    std::fs::write(&path, data).expect("the scratch file is writable");
    path
}
