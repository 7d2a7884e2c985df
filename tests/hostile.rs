//! Hostile and careless input (issue "Hostile and careless input"), one case per class of
//! fault fixed so far: special files are refused without blocking, folder walks terminate,
//! thread counts are capped, empty inputs are errors, non-finite inputs are refused, and a
//! failed check exits non-zero. Each case asserts the exit code, a one-line message naming
//! the path or flag, and a bounded run time.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Scratch, fixture};

/// Runs `vgg args`, killing it after `limit` (a hang is a failure, not a stuck test).
fn vgg_within(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vgg"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the vgg binary runs");
    let start = Instant::now();
    while child.try_wait().expect("waitable").is_none() {
        if start.elapsed() > limit {
            child.kill().ok();
            panic!("`vgg {}` ran past {limit:?}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn quick(args: &[&str]) -> Output {
    vgg_within(args, Duration::from_secs(5))
}

/// Exit code 2 and one line on stderr that contains each of `needles`.
fn refused(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "`{needle}` not in: {stderr}");
    }
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn special_files_are_refused_without_blocking() {
    let dir = Scratch::new("fifos");
    let fifo = |name: &str| {
        let path = dir.join(name);
        mkfifo(&path);
        path
    };
    let (pth, npy, jpg, map) = (fifo("w.pth"), fifo("x.npy"), fifo("i.jpg"), fifo("map.txt"));
    let out = dir.join("out.npy");
    let folder = fixture("imagefolder");
    let cases: Vec<(Vec<&str>, &Path)> = vec![
        (vec!["weights", s(&pth)], &pth),
        (
            vec![
                "forward",
                "--arch",
                "vgg11",
                "--input",
                s(&npy),
                "--output",
                s(&out),
            ],
            &npy,
        ),
        (vec!["classify", "--arch", "vgg11", s(&jpg)], &jpg),
        (vec!["preprocess", s(&jpg), "--output", s(&out)], &jpg),
        (
            vec![
                "evaluate",
                "--arch",
                "vgg11",
                "--data",
                s(&folder),
                "--class-map",
                s(&map),
            ],
            &map,
        ),
    ];
    for (args, path) in cases {
        refused(&quick(&args), &[s(path), "not a regular file (a FIFO)"]);
    }
    assert!(!out.exists(), "nothing written");
}

#[test]
fn folder_walks_pass_over_special_files_and_loops() {
    let dir = Scratch::new("walk");
    let images = dir.join("images");
    std::fs::create_dir_all(images.join("sub")).unwrap();
    std::fs::copy(fixture("images/landscape.jpg"), images.join("sub/a.jpg")).unwrap();
    mkfifo(&images.join("zz.jpg"));
    std::os::unix::fs::symlink(&images, images.join("sub/loop")).unwrap();
    std::os::unix::fs::symlink(images.join("missing.jpg"), images.join("broken.jpg")).unwrap();
    let weights = fixture("forward/tiny_bn.pth");
    let out = quick(&["classify", "--weights", s(&weights), "--json", s(&images)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "each image once: {stdout}");
    assert!(stdout.contains("a.jpg"), "{stdout}");
}

#[test]
fn empty_inputs_are_errors() {
    let dir = Scratch::new("empty");
    let empty = dir.join("nothing");
    std::fs::create_dir_all(&empty).unwrap();
    let weights = fixture("forward/tiny_bn.pth");
    let out = dir.join("f.npy");
    refused(
        &quick(&["classify", "--weights", s(&weights), s(&empty)]),
        &["no images found"],
    );
    refused(
        &quick(&[
            "features",
            "--weights",
            s(&weights),
            "--layer",
            "features.3",
            s(&empty),
            "--output",
            s(&out),
        ]),
        &["no images found"],
    );
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("cat")).unwrap();
    std::fs::create_dir_all(data.join("dog")).unwrap();
    std::fs::copy(fixture("images/landscape.jpg"), data.join("cat/a.jpg")).unwrap();
    refused(
        &quick(&["evaluate", "--weights", s(&weights), "--data", s(&data)]),
        &["dog", "holds no images"],
    );
}

#[test]
fn non_finite_inputs_are_refused() {
    let dir = Scratch::new("nan");
    let input = dir.join("nan.npy");
    let mut x = candle_core::Tensor::zeros(
        (1, 3, 64, 64),
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    )
    .unwrap()
    .flatten_all()
    .unwrap()
    .to_vec1::<f32>()
    .unwrap();
    x[100] = f32::NAN;
    candle_core::Tensor::from_vec(x, (1, 3, 64, 64), &candle_core::Device::Cpu)
        .unwrap()
        .write_npy(&input)
        .unwrap();
    let weights = fixture("forward/tiny_bn.pth");
    for engine in ["fast", "reference"] {
        let out = dir.join(format!("{engine}.npy"));
        refused(
            &quick(&[
                "forward",
                "--weights",
                s(&weights),
                "--input",
                s(&input),
                "--output",
                s(&out),
                "--engine",
                engine,
            ]),
            &["NaN at element 100"],
        );
        assert!(!out.exists());
    }
}

#[test]
fn thread_counts_are_capped() {
    let out = quick(&[
        "--threads",
        "100000",
        "summary",
        "vgg11",
        "--input",
        "3x32x32",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("capped at 256"));
    refused(
        &quick(&["--threads", "0", "summary", "vgg11"]),
        &["--threads", "1..=256"],
    );
}

/// A real JPEG whose frame header claims `side`×`side` pixels.
fn jpeg_claiming(side: u16, path: &Path) {
    let mut bytes = std::fs::read(fixture("images/landscape.jpg")).unwrap();
    let sof = (0..bytes.len() - 1)
        .find(|&i| bytes[i] == 0xFF && matches!(bytes[i + 1], 0xC0 | 0xC2))
        .expect("a frame header");
    // FFCx, length (2), precision (1), height (2), width (2).
    bytes[sof + 5..sof + 7].copy_from_slice(&side.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&side.to_be_bytes());
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn decompression_bombs_are_refused_before_decoding() {
    let dir = Scratch::new("bomb");
    let bomb = dir.join("bomb.jpg");
    jpeg_claiming(65500, &bomb);
    let weights = fixture("forward/tiny_bn.pth");
    let out = quick(&["classify", "--weights", s(&weights), "--json", s(&bomb)]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the image failed, the run did not"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("65500×65500 pixels is over the limit of 89478485"),
        "{stdout}"
    );
    let npy = dir.join("x.npy");
    refused(
        &quick(&["preprocess", s(&bomb), "--output", s(&npy)]),
        &["bomb.jpg", "over the limit"],
    );
}
