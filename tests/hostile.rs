//! Hostile and careless input (issue "Hostile and careless input"), one case per class of
//! fault: special files are refused without blocking, folder walks terminate, thread counts
//! are capped, empty inputs are errors, non-finite inputs and weights are refused, a failed
//! check exits non-zero, sizes over the memory budget or past 64 bits are refused before
//! anything is allocated, outputs go through links and never replace special files,
//! interrupted writes leave no temporary files, and a run never overwrites files it did not
//! write. Each case asserts the exit code, a one-line message naming the path or flag, a
//! bounded run time and, where a request is huge, a bounded peak memory.

mod common;

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Scratch, fixture};

/// Peak memory a refused request may use: the process's own start-up, nothing more.
const REFUSAL_PEAK_MIB: u64 = 300;

/// What a run of `vgg` did: its output and its peak resident memory.
struct Run {
    output: Output,
    peak_mib: u64,
}

/// Address space every run here gets (RLIMIT_AS): an allocation of the size a hostile
/// request asks for then fails (and aborts the process) instead of being reserved lazily
/// and never touched, which a peak-RSS check alone would not see. It also fixes the default
/// memory budget (3/4 of it) whatever the machine.
const ADDRESS_SPACE: u64 = 4 << 30;

/// Runs `vgg args` with `envs` under [`ADDRESS_SPACE`], killing it after `limit` (a hang is
/// a failure, not a stuck test), and measures its peak RSS (wait4's ru_maxrss).
// The child is reaped by wait4 (which also reports its peak memory), not by std's wait.
#[allow(clippy::zombie_processes)]
fn run_within(args: &[&str], envs: &[(&str, &str)], limit: Duration) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vgg"));
    // SAFETY: the closure only calls setrlimit, which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: ADDRESS_SPACE,
                rlim_max: ADDRESS_SPACE,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = command
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the vgg binary runs");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).ok();
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let pid = child.id() as libc::pid_t;
    let start = Instant::now();
    let (status, peak_kib) = loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is valid; wait4 fills it and `status`.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waits for our own child without blocking.
        let done = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if done == pid {
            break (ExitStatus::from_raw(status), usage.ru_maxrss as u64);
        }
        if start.elapsed() > limit {
            child.kill().ok();
            panic!("`vgg {}` ran past {limit:?}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        output: Output {
            status,
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        },
        peak_mib: peak_kib / 1024,
    }
}

fn vgg_within(args: &[&str], limit: Duration) -> Output {
    run_within(args, &[], limit).output
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
    std::fs::copy(fixture("images/landscape.jpg"), data.join("dog/b.jpg")).unwrap();
    refused(
        &quick(&[
            "evaluate",
            "--weights",
            s(&weights),
            "--data",
            s(&data),
            "--limit",
            "0",
        ]),
        &["--limit 0", "no images"],
    );
    let batch = dir.join("batch.npy");
    npy_claiming(&batch, "(0, 3, 32, 32)", "<f4", 0);
    for extra in [&[][..], &["--engine", "reference"], &["--train"]] {
        refused(
            &quick(&forward_args(
                &["--weights", s(&weights)],
                &batch,
                &out,
                extra,
            )),
            &["batch.npy", "the batch is empty (shape [0, 3, 32, 32])"],
        );
    }
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
            &quick(&forward_args(
                &["--weights", s(&weights)],
                &input,
                &out,
                &["--engine", engine],
            )),
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
    let summary = ["summary", "vgg11", "--input", "3x32x32"];
    let run = run_within(
        &summary,
        &[("RAYON_NUM_THREADS", "100000")],
        Duration::from_secs(10),
    );
    let stderr = String::from_utf8_lossy(&run.output.stderr);
    assert!(run.output.status.success(), "{stderr}");
    assert!(
        stderr.contains("RAYON_NUM_THREADS 100000 is capped at 256"),
        "{stderr}"
    );
    refused(
        &run_within(
            &summary,
            &[("RAYON_NUM_THREADS", "many")],
            Duration::from_secs(10),
        )
        .output,
        &["RAYON_NUM_THREADS", "`many`"],
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

/// A refused request: exit 2, one line naming each of `needles`, within 5 s, and no more
/// memory than start-up takes.
fn refused_cheaply(args: &[&str], needles: &[&str]) {
    let run = run_within(args, &[], Duration::from_secs(5));
    refused(&run.output, needles);
    assert!(
        run.peak_mib <= REFUSAL_PEAK_MIB,
        "`vgg {}` peaked at {} MiB",
        args.join(" "),
        run.peak_mib
    );
}

/// A budget raised past what the process can have lets a plan through its estimate; the
/// engine's buffers then fail to allocate, which is an error, not an abort.
#[test]
fn memory_the_system_refuses_is_an_error_not_an_abort() {
    let out = vgg_within(
        &[
            "--threads",
            "1",
            "--memory-limit",
            "100G",
            "bench",
            "--arch",
            "custom",
            "--cfg",
            "64,M",
            "--hidden",
            "8",
            "--pool",
            "1",
            "--input",
            "1x3x4000x4000",
            "--iters",
            "1",
        ],
        Duration::from_secs(30),
    );
    refused(&out, &["the system refused", "lower --memory-limit"]);
}

#[test]
fn huge_test_scales_are_refused_before_allocating() {
    let weights = fixture("forward/tiny.safetensors");
    let image = fixture("images/small.png");
    for (protocol, scale, needle) in [
        ("dense", "8000", "a forward pass"),
        ("multi-crop", "12000", "the views"),
        (
            "multi-crop",
            "8000,10000",
            "--scales 10000 on a 150x100 image: the views",
        ),
    ] {
        let args = [
            "classify",
            "--weights",
            s(&weights),
            "--protocol",
            protocol,
            "--scales",
            scale,
            s(&image),
        ];
        let run = run_within(&args, &[], Duration::from_secs(20));
        let stdout = String::from_utf8_lossy(&run.output.stdout);
        assert_eq!(run.output.status.code(), Some(1), "{stdout}");
        assert!(stdout.contains(needle), "`{needle}` not in: {stdout}");
        assert!(stdout.contains("over the memory budget"), "{stdout}");
        assert!(
            run.peak_mib <= REFUSAL_PEAK_MIB,
            "{args:?}: {} MiB",
            run.peak_mib
        );
    }
}

/// An NCHW float32 `.npy` whose header claims `shape` over `data_bytes` zero bytes.
fn npy_claiming(path: &Path, shape: &str, descr: &str, data_bytes: usize) {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(vec![0u8; data_bytes]);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn huge_requests_are_refused_before_allocating() {
    let dir = Scratch::new("huge");
    let (claims, overflow, ok) = (
        dir.join("claims.npy"),
        dir.join("overflow.npy"),
        dir.join("ok.npy"),
    );
    npy_claiming(&claims, "(100000, 3, 224, 224)", "<f4", 12288);
    npy_claiming(&overflow, "(4611686018427387904, 3, 32, 32)", "<f4", 12288);
    npy_claiming(&ok, "(1, 3, 32, 32)", "<f4", 12288);
    let out = dir.join("out.npy");
    let forward = |input: &Path, extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = [
            "forward",
            "--arch",
            "vgg11",
            "--input",
            s(input),
            "--output",
            s(&out),
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    let image = fixture("images/landscape.jpg");
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            forward(&claims, &[]),
            vec!["claims.npy", "but the file holds 12288 bytes"],
        ),
        (
            forward(&claims, &["--engine", "reference"]),
            vec!["claims.npy", "file holds"],
        ),
        (forward(&overflow, &[]), vec!["overflow.npy", "overflows"]),
        (
            forward(&ok, &["--pool", "100000"]),
            vec!["--pool 100000", "would need"],
        ),
        (
            forward(&ok, &["--pool", "100000", "--engine", "reference"]),
            vec!["--pool 100000", "would need"],
        ),
        (
            args(&[
                "bench",
                "--arch",
                "vgg11",
                "--input",
                "1x3x4294967296x4294967296",
            ]),
            vec!["--input 1x3x4294967296x4294967296", "overflows"],
        ),
        (
            args(&["bench", "--arch", "vgg11", "--input", "1x3x100000x100000"]),
            vec!["--input 1x3x100000x100000", "would need"],
        ),
        (
            args(&[
                "bench",
                "--arch",
                "vgg11",
                "--train",
                "--input",
                "100000x3x32x32",
            ]),
            vec!["--input 100000x3x32x32", "training", "would need"],
        ),
        (
            args(&[
                "classify",
                "--arch",
                "vgg11",
                "--resize",
                "100000",
                "--crop",
                "100000",
                s(&image),
            ]),
            vec!["--crop 100000", "would need"],
        ),
        (
            args(&["summary", "vgg16", "--input", "3x4294967296x4294967296"]),
            vec!["3x4294967296x4294967296", "overflows"],
        ),
        (
            args(&[
                "summary",
                "vgg16",
                "--input",
                "3x32x32",
                "--batch-size",
                "18446744073709551615",
            ]),
            vec!["18446744073709551615", "overflows"],
        ),
        (
            args(&[
                "--memory-limit",
                "64M",
                "bench",
                "--arch",
                "vgg11",
                "--input",
                "1x3x32x32",
            ]),
            vec!["64.0 MiB", "--memory-limit"],
        ),
        (
            args(&["--memory-limit", "lots", "summary", "vgg11"]),
            vec!["--memory-limit", "`lots`"],
        ),
    ];
    let data = fixture("imagefolder");
    let run = dir.join("run");
    let train = [
        "train",
        "--arch",
        "vgg11",
        "--data",
        s(&data),
        "--out",
        s(&run),
        "--batch-size",
        "1000000000",
    ];
    for (args, needles) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused_cheaply(&args, &needles);
    }
    refused_cheaply(
        &train,
        &["--batch-size 1000000000 with --crop 36", "would need"],
    );
    assert!(!out.exists() && !run.exists(), "nothing written");
}

/// Head sizes that ask for petabytes of weights are refused before any are initialised, on
/// every command that builds a model (the check is in the model's constructor).
#[test]
fn huge_models_are_refused_before_initialising() {
    let dir = Scratch::new("huge-models");
    let image = fixture("images/landscape.jpg");
    let data = fixture("imagefolder");
    let (out, report) = (dir.join("f.npy"), dir.join("report"));
    let run = dir.join("run");
    let big = ["--arch", "vgg11", "--pool", "100000"];
    let with = |command: &str, rest: &[&str]| -> Vec<String> {
        let mut all = vec![command.to_string()];
        all.extend(big.iter().chain(rest).map(|a| a.to_string()));
        all
    };
    let cases = [
        with("classify", &["--engine", "reference", s(&image)]),
        with(
            "features",
            &["--layer", "features.3", s(&image), "--output", s(&out)],
        ),
        with("dissect", &[s(&image), "--out", s(&report)]),
        with(
            "train",
            &["--data", s(&data), "--out", s(&run), "--epochs", "1"],
        ),
    ];
    // Refused by the weights' size, or (train) the training step's, which counts them.
    for args in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused_cheaply(&args, &["vgg11 --pool 100000", "would need"]);
    }
    assert!(!out.exists() && !report.exists() && !run.exists());
    refused_cheaply(
        &[
            "summary", "vgg11", "--pool", "1048576", "--hidden", "1048576",
        ],
        &["more parameters than 64-bit sizes can count"],
    );
    // An image resized past the budget fails alone; the run goes on and says so.
    let resized = run_within(
        &[
            "classify",
            "--arch",
            "vgg11",
            "--resize",
            "100000",
            s(&image),
        ],
        &[],
        Duration::from_secs(20),
    );
    assert_eq!(resized.output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&resized.output.stdout);
    assert!(
        stdout.contains("--resize 100000") && stdout.contains("would need"),
        "{stdout}"
    );
}

#[test]
fn class_maps_with_huge_indices_are_refused() {
    let dir = Scratch::new("class-map");
    let map = dir.join("map.txt");
    std::fs::write(&map, "cat 18446744073709551615\ndog 1000000000000\n").unwrap();
    let weights = fixture("forward/tiny_bn.pth");
    let data = fixture("imagefolder");
    refused_cheaply(
        &[
            "evaluate",
            "--weights",
            s(&weights),
            "--data",
            s(&data),
            "--class-map",
            s(&map),
        ],
        &["map.txt", "class index 18446744073709551615", "too large"],
    );
}

/// `vgg forward MODEL --input INPUT --output OUTPUT EXTRA…`.
fn forward_args<'a>(
    model: &[&'a str],
    input: &'a Path,
    output: &'a Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec!["forward"];
    args.extend(model);
    args.extend(["--input", s(input), "--output", s(output)]);
    args.extend(extra);
    args
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

#[test]
fn checkpoints_that_amplify_are_refused() {
    let dir = Scratch::new("amplify");
    refused_cheaply(
        &["weights", s(&fixture("pth/shared_views_bomb_zip.pth"))],
        &["shared_views_bomb_zip.pth", "at most twice what is stored"],
    );
    // A safetensors header of 5 MiB (the format allows 100 MB: millions of tiny tensors).
    let header = format!("{{\"__metadata__\":{{}}{}}}", " ".repeat(5 << 20));
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    let big = dir.join("big_header.safetensors");
    std::fs::write(&big, bytes).unwrap();
    refused_cheaply(
        &["weights", s(&big)],
        &["big_header.safetensors", "at most 4194304"],
    );
}

#[test]
fn bad_arrays_say_why() {
    let dir = Scratch::new("arrays");
    let out = dir.join("out.npy");
    for (descr, needle) in [
        (">f4", "big-endian"),
        ("|b1", "bool"),
        ("<i8", "unsupported dtype"),
    ] {
        let input = dir.join("x.npy");
        npy_claiming(&input, "(1, 3, 32, 32)", descr, 3072 * 8);
        refused_cheaply(
            &forward_args(&["--arch", "vgg11"], &input, &out, &[]),
            &["x.npy", needle],
        );
    }
}

#[test]
fn non_finite_weights_and_negative_variances_are_refused() {
    let dir = Scratch::new("nan-weights");
    let state = vgg::weights::read(&fixture("forward/tiny_bn.pth")).unwrap();
    let damages = [
        (".weight", f32::INFINITY, "inf at element 3", "finite"),
        (
            ".running_var",
            -0.5,
            "-0.5 at element 3",
            "a variance is at least 0",
        ),
    ];
    for (suffix, value, found, rule) in damages {
        let mut tensors = state.tensors.clone();
        let (key, tensor) = tensors
            .iter_mut()
            .find(|(k, _)| k.ends_with(suffix))
            .unwrap();
        let mut values = tensor.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        values[3] = value;
        *tensor = candle_core::Tensor::from_vec(values, tensor.dims(), &candle_core::Device::Cpu)
            .unwrap();
        let key = key.clone();
        let (st, pth) = (dir.join("w.safetensors"), dir.join("w.pth"));
        vgg::weights::safetensors::write(&st, &tensors, &Default::default()).unwrap();
        vgg::weights::pth::write::write(&pth, &tensors).unwrap();
        let input = fixture("forward/tiny_bn_input.npy");
        let out = dir.join("out.npy");
        for weights in [&st, &pth] {
            for engine in ["fast", "reference"] {
                refused_cheaply(
                    &forward_args(
                        &["--weights", s(weights)],
                        &input,
                        &out,
                        &["--engine", engine],
                    ),
                    &[s(weights), &key, found, rule],
                );
            }
        }
        assert!(!out.exists());
    }
}

#[test]
fn weights_that_overflow_are_an_error_not_a_ranking() {
    let dir = Scratch::new("overflow");
    let state = vgg::weights::read(&fixture("forward/tiny.safetensors")).unwrap();
    let scaled: Vec<(String, candle_core::Tensor)> = (state.tensors.iter())
        .map(|(k, t)| match k.ends_with(".weight") {
            true => (k.clone(), (t * 1e12).unwrap()),
            false => (k.clone(), t.clone()),
        })
        .collect();
    let weights = dir.join("w.safetensors");
    vgg::weights::safetensors::write(&weights, &scaled, &Default::default()).unwrap();
    let image = fixture("images/small.png");
    refused(
        &quick(&["classify", "--weights", s(&weights), s(&image)]),
        &["Winograd convolution features.8 overflowed float32"],
    );
    refused(
        &quick(&[
            "classify",
            "--weights",
            s(&weights),
            s(&image),
            "--engine",
            "reference",
        ]),
        &["the network's outputs hold", "overflow"],
    );
    // `forward` writes no file of NaN, on either engine.
    let (input, output) = (fixture("forward/tiny_input.npy"), dir.join("out.npy"));
    for engine in ["fast", "reference"] {
        let model = ["--weights", s(&weights), "--engine", engine];
        refused(
            &quick(&forward_args(&model, &input, &output, &[])),
            &["overflow"],
        );
        assert!(!output.exists(), "{engine}");
    }
}

#[test]
fn outputs_go_through_links_and_never_replace_special_files() {
    let dir = Scratch::new("outputs");
    let input = fixture("forward/tiny_bn_input.npy");
    let weights = fixture("forward/tiny_bn.pth");
    let forward = |output: &Path| {
        quick(&forward_args(
            &["--weights", s(&weights)],
            &input,
            output,
            &[],
        ))
    };
    let (target, link) = (dir.join("target.npy"), dir.join("link.npy"));
    std::fs::write(&target, "old").unwrap();
    std::os::unix::fs::symlink("target.npy", &link).unwrap();
    assert!(forward(&link).status.success());
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link stays"
    );
    assert!(
        std::fs::read(&target).unwrap().starts_with(b"\x93NUMPY"),
        "its target is replaced"
    );
    let fifo = dir.join("fifo.npy");
    mkfifo(&fifo);
    refused(
        &forward(&fifo),
        &["fifo.npy", "FIFO; only regular files are replaced"],
    );
    // Refused before any work: a full-size model is not even built.
    let ok = dir.join("ok.npy");
    npy_claiming(&ok, "(1, 3, 32, 32)", "<f4", 12288);
    let vgg11 = ["--arch", "vgg11"];
    let dev_null = Path::new("/dev/null");
    refused_cheaply(
        &forward_args(&vgg11, &ok, dev_null, &[]),
        &["/dev/null", "device"],
    );
    refused_cheaply(
        &forward_args(&vgg11, &ok, &dir.join("nodir/x.npy"), &[]),
        &["nodir/x.npy", "does not exist"],
    );
    // New files get the umask's mode, whatever their format.
    let (fresh_npy, fresh_safetensors) = (dir.join("fresh.npy"), dir.join("fresh.safetensors"));
    let commands = [
        format!(
            "forward --weights '{}' --input '{}' --output '{}'",
            s(&weights),
            s(&input),
            s(&fresh_npy)
        ),
        format!("convert '{}' '{}'", s(&weights), s(&fresh_safetensors)),
    ];
    for (command, fresh) in commands.iter().zip([&fresh_npy, &fresh_safetensors]) {
        let command = format!(
            "umask 027 && exec '{}' {command}",
            env!("CARGO_BIN_EXE_vgg")
        );
        assert!(
            Command::new("sh")
                .args(["-c", &command])
                .status()
                .unwrap()
                .success()
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(fresh).unwrap().permissions().mode() & 0o777,
            0o640,
            "{command}"
        );
    }
}

#[test]
fn flags_that_cannot_work_are_refused_before_the_work() {
    refused_cheaply(
        &[
            "bench",
            "--arch",
            "vgg11",
            "--conv",
            "f63",
            "--precision",
            "int8",
        ],
        &["--conv", "F(2x2,3x3) only"],
    );
    refused_cheaply(&["bench", "--arch", "vgg11", "--iters", "0"], &["--iters"]);
    let dir = Scratch::new("dissect-out");
    let file = dir.join("report");
    std::fs::write(&file, "not a folder").unwrap();
    let image = fixture("images/small.png");
    refused_cheaply(
        &["dissect", "--arch", "vgg11", s(&image), "--out", s(&file)],
        &["--out", "is a file"],
    );
    refused_cheaply(
        &[
            "classify",
            "--arch",
            "vgg11",
            "--precision",
            "int8",
            "--calib",
        ]
        .into_iter()
        .chain([s(&dir), "--calib-images", "0", s(&image)])
        .collect::<Vec<_>>(),
        &["--calib-images must be at least 1"],
    );
    // Flags that would be ignored are refused.
    let calib_images = [
        "classify",
        "--arch",
        "vgg11",
        "--calib-images",
        "3",
        s(&image),
    ];
    refused_cheaply(&calib_images, &["--calib"]);
    refused_cheaply(
        &["summary", "vgg11", "--depth", "1"],
        &["--depth applies to the torchinfo format"],
    );
    let svg = dir.join("all.svg");
    refused_cheaply(
        &["diagram", "--all", "--head", "10", "--out", s(&svg)],
        &["--head changes one model"],
    );
}

#[test]
fn an_output_that_is_an_input_is_refused() {
    let dir = Scratch::new("clobber");
    let input = dir.join("input.npy");
    std::fs::copy(fixture("forward/tiny_bn_input.npy"), &input).unwrap();
    let link = dir.join("link.npy");
    std::os::unix::fs::symlink(&input, &link).unwrap();
    let weights = dir.join("w.pth");
    std::fs::copy(fixture("forward/tiny_bn.pth"), &weights).unwrap();
    let before = std::fs::read(&input).unwrap();
    for output in [&input, &link] {
        refused_cheaply(
            &forward_args(&["--weights", s(&weights)], &input, output, &[]),
            &["is the input", "input.npy"],
        );
    }
    refused_cheaply(
        &forward_args(&["--weights", s(&weights)], &input, &weights, &[]),
        &["is the input", "w.pth"],
    );
    refused_cheaply(&["convert", s(&weights), s(&weights)], &["is the input"]);
    assert_eq!(std::fs::read(&input).unwrap(), before);
    // A report's files that are links to its inputs, even with --force: refused before any
    // file is written.
    let image = dir.join("image.png");
    std::fs::copy(fixture("images/small.png"), &image).unwrap();
    let image_before = std::fs::read(&image).unwrap();
    for (name, target) in [("input.png", &image), ("index.html", &weights)] {
        let report = dir.join(format!("report-{name}"));
        std::fs::create_dir_all(&report).unwrap();
        std::os::unix::fs::symlink(target, report.join(name)).unwrap();
        let dissect = [
            "dissect",
            "--weights",
            s(&weights),
            s(&image),
            "--out",
            s(&report),
        ];
        let out = quick(&[&dissect[..], &["--force"]].concat());
        refused(&out, &["is the input"]);
        assert_eq!(std::fs::read_dir(&report).unwrap().count(), 1, "{name}");
    }
    assert_eq!(std::fs::read(&image).unwrap(), image_before);
}

fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect()
}

#[test]
fn interrupted_writes_leave_no_temporary_files() {
    let dir = Scratch::new("signals");
    let input = fixture("forward/tiny_bn_input.npy");
    let weights = fixture("forward/tiny_bn.pth");
    let out = dir.join("out.npy");
    std::fs::write(&out, "the previous output").unwrap();
    let args = forward_args(&["--weights", s(&weights)], &input, &out, &[]);
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // The write pauses once its temporary file exists; the signal comes then.
        let mut command = Command::new(env!("CARGO_BIN_EXE_vgg"));
        command
            .args(&args)
            .env("VGG_FAULT_WRITE", "1:pause")
            .stderr(Stdio::null())
            .stdout(Stdio::null());
        // A runner that starts the tests in the background (`nohup … &`) passes SIGINT on as
        // ignored, which `vgg` rightly keeps; the child starts with the default action.
        // SAFETY: `signal` is async-signal-safe, as code between fork and exec must be.
        unsafe {
            command.pre_exec(move || {
                libc::signal(signal, libc::SIG_DFL);
                Ok(())
            });
        }
        let mut child = command.spawn().unwrap();
        let start = Instant::now();
        while temporaries(&dir).is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no temporary file appeared"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(signal), "ends as the signal would");
        assert!(temporaries(&dir).is_empty(), "removed on {signal}");
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "the previous output"
        );
    }
    // A kill that cannot be caught (here: an abort) leaves it; the next write removes it.
    let aborted = run_within(&args, &[("VGG_FAULT_WRITE", "1")], Duration::from_secs(20));
    assert!(!aborted.output.status.success());
    assert_eq!(temporaries(&dir).len(), 1);
    assert!(quick(&args).status.success());
    assert!(temporaries(&dir).is_empty(), "cleaned by the next run");
    assert!(std::fs::read(&out).unwrap().starts_with(b"\x93NUMPY"));
}

#[test]
fn argument_errors_are_one_line() {
    refused(
        &quick(&["forward", "--arch", "vgg11", "--outpt", "x.npy"]),
        &[
            "--outpt",
            "tip: a similar argument exists: '--output'",
            "--help",
        ],
    );
    refused(
        &quick(&["forward", "--arch", "vgg11"]),
        &[
            "required arguments were not provided",
            "--input <FILE>",
            "--output <FILE>",
        ],
    );
    refused(&quick(&["summary", "vgg11", "--batch-size", "-3"]), &["-3"]);
    refused(
        &quick(&[
            "preprocess",
            "x.png",
            "--mean",
            "1e40,0,0",
            "--output",
            "x.npy",
        ]),
        &["--mean `1e40,0,0`: values must be finite float32 numbers"],
    );
    // The default the help states is one the parser accepts.
    let default = quick(&["summary", "vgg11", "--input", "3x32x32"]);
    let explicit = quick(&[
        "summary",
        "vgg11",
        "--input",
        "3x32x32",
        "--batch-size",
        "-1",
    ]);
    assert!(explicit.status.success());
    assert_eq!(default.stdout, explicit.stdout);
    refused(
        &quick(&["summary", "vgg11", "--batch-size", "0"]),
        &["--batch-size", "`0`"],
    );
    let help = quick(&["forward", "--help"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage:"));
}
