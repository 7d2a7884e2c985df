//! int8: `vgg quantize` calibrates a checkpoint and writes it with its calibration, every
//! command then runs it with `--precision int8` (or calibrates at load with `--calib`),
//! close to f32 on images like the calibration's, f32 output unchanged; the combinations
//! that cannot work are one-line errors.

mod common;

use std::path::Path;
use std::process::Output;

use common::{BENCH_VGG11_32, Scratch, fixture, vgg};

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The tiny fixture calibrated on the ImageFolder fixture at 64×64.
fn quantize(dir: &Scratch) -> (std::path::PathBuf, String) {
    let out = dir.join("tiny_int8.safetensors");
    let weights = fixture("forward/tiny.safetensors");
    let data = fixture("imagefolder");
    let stdout = ok(&vgg(&[
        "quantize",
        arg(&weights),
        "--calib",
        arg(&data),
        "--resize",
        "64",
        "--crop",
        "64",
        "--images",
        "40",
        "--out",
        arg(&out),
    ]));
    (out, stdout)
}

/// `vgg forward --precision int8` of `input` with `weights` into `out`.
fn forward_int8<'a>(weights: &'a Path, input: &'a Path, out: &'a Path) -> Vec<&'a str> {
    let (weights, input, out) = (arg(weights), arg(input), arg(out));
    let args = [
        "forward",
        "--weights",
        weights,
        "--input",
        input,
        "--output",
        out,
    ];
    [&args[..], &["--precision", "int8"]].concat()
}

/// Top-1 class and probability per image, from `evaluate`'s sibling `classify --json`.
fn top1(weights: &Path, precision: &str, extra: &[&str]) -> Vec<(u64, f64)> {
    let data = fixture("imagefolder/class_03");
    let mut args = vec![
        "classify",
        "--weights",
        arg(weights),
        "--json",
        "--top",
        "1",
        "--precision",
        precision,
    ];
    args.extend(extra);
    args.push(arg(&data));
    ok(&vgg(&args))
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let top = &v["top"][0];
            (
                top["index"].as_u64().unwrap(),
                top["prob"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn quantize_reports_every_layer_and_int8_stays_close_to_f32() {
    let dir = Scratch::new("quantize");
    let (weights, report) = quantize(&dir);
    // Every conv and linear layer, with what it computes in and why.
    for layer in [
        "features.0",
        "features.3",
        "features.6",
        "features.14",
        "classifier.6",
    ] {
        assert!(report.contains(layer), "{layer} missing from:\n{report}");
    }
    let line = |path: &str| {
        report
            .lines()
            .find(|l| l.starts_with(path))
            .unwrap()
            .to_string()
    };
    assert!(
        line("features.0 ").contains("f32 (under 16 input channels"),
        "{report}"
    );
    assert!(line("features.6 ").trim_end().ends_with("int8"), "{report}");
    assert!(
        line("classifier.0").trim_end().ends_with("int8"),
        "{report}"
    );
    assert!(
        report.contains("calibrated on 40 images at 64x64"),
        "{report}"
    );
    assert!(report.contains("same top-1 class on"), "{report}");
    // The calibration's preprocessing (64/64) is not recorded as the model's (the source
    // recorded none, and a recorded one would change how f32 evaluates the file): classify
    // is given it; int8 agrees with f32.
    assert_eq!(vgg::weights::recorded_preprocess(&weights).unwrap(), None);
    let at_64 = ["--resize", "64", "--crop", "64"];
    let f32 = top1(&weights, "f32", &at_64);
    let int8 = top1(&weights, "int8", &at_64);
    assert_eq!(f32.len(), 30);
    for ((fc, fp), (qc, qp)) in f32.iter().zip(&int8) {
        assert_eq!(fc, qc);
        assert!((fp - qp).abs() < 0.02, "{fp} vs {qp}");
    }
    // Calibrating at load gives the same calibration, hence the same answers.
    let data = fixture("imagefolder");
    let at_load = ["--calib", arg(&data), "--calib-images", "40"];
    let original = fixture("forward/tiny.safetensors");
    let loaded = top1(&original, "int8", &[&at_load[..], &at_64].concat());
    assert_eq!(loaded, int8);
}

#[test]
fn the_quantized_file_is_the_same_model_in_f32() {
    let dir = Scratch::new("quantize-f32");
    let (weights, _) = quantize(&dir);
    let input = fixture("forward/tiny_input.npy");
    let [original, quantized, int8] =
        ["original", "quantized", "int8"].map(|n| dir.join(format!("{n}.npy")));
    let forward = |weights: &Path, out: &Path, extra: &[&str]| {
        let mut args = vec![
            "forward",
            "--weights",
            arg(weights),
            "--input",
            arg(&input),
            "--output",
            arg(out),
        ];
        args.extend(extra);
        ok(&vgg(&args));
    };
    forward(&fixture("forward/tiny.safetensors"), &original, &[]);
    forward(&weights, &quantized, &[]);
    forward(&weights, &int8, &["--precision", "int8"]);
    assert_eq!(
        std::fs::read(&original).unwrap(),
        std::fs::read(&quantized).unwrap()
    );
    assert_ne!(
        std::fs::read(&original).unwrap(),
        std::fs::read(&int8).unwrap()
    );
    let described = ok(&vgg(&["weights", arg(&weights)]));
    assert!(described.contains("int8"), "{described}");
}

#[test]
fn impossible_int8_requests_are_one_line_errors() {
    let dir = Scratch::new("quantize-errors");
    let weights = fixture("forward/tiny.safetensors");
    let input = fixture("forward/tiny_input.npy");
    let data = fixture("imagefolder");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = dir.join("out.npy");
    let q_pth = dir.join("q.pth");
    let q = dir.join("q.safetensors");
    let cases: Vec<(Vec<&str>, &str, &Path)> = vec![
        (
            forward_int8(&weights, &input, &out),
            "records no int8 calibration",
            &out,
        ),
        (
            vec![
                "bench",
                "--arch",
                "vgg11",
                "--input",
                "1x3x32x32",
                "--precision",
                "int4",
            ],
            "unknown precision 'int4' (expected one of: f32, bf16, int8)",
            &out,
        ),
        (
            vec![
                "quantize",
                arg(&weights),
                "--calib",
                arg(&data),
                "--out",
                arg(&q_pth),
            ],
            "give a .safetensors path",
            &q_pth,
        ),
        (
            vec![
                "quantize",
                arg(&weights),
                "--calib",
                arg(&empty),
                "--out",
                arg(&q),
            ],
            "no images found",
            &q,
        ),
        (
            vec![
                "quantize",
                arg(&weights),
                "--calib",
                arg(&data),
                "--max-error",
                "0",
                "--out",
                arg(&q),
            ],
            "--max-error 0",
            &q,
        ),
        (
            vec![
                "classify",
                "--weights",
                arg(&weights),
                "--calib",
                arg(&data),
                arg(&data),
            ],
            "--calib calibrates int8: add --precision int8",
            &out,
        ),
        (
            vec![
                "evaluate",
                "--weights",
                arg(&weights),
                "--data",
                arg(&data),
                "--precision",
                "int8",
                "--protocol",
                "dense",
            ],
            "int8 evaluates with the center protocol only",
            &out,
        ),
        (
            vec![
                "classify",
                "--arch",
                "vgg11",
                "--precision",
                "int8",
                arg(&data),
            ],
            "random weights have none",
            &out,
        ),
    ];
    for (args, needle, output) in cases {
        let result = vgg(&args);
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(needle), "`{needle}` not in: {stderr}");
        assert!(!output.exists(), "{args:?} wrote its output");
    }
}

#[test]
fn bench_describes_the_int8_plan() {
    let args = [&BENCH_VGG11_32[..], &["--precision", "int8"]].concat();
    let out = ok(&vgg(&[&args[..], &["--describe"]].concat()));
    assert!(out.contains("precision: int8"), "{out}");
    assert!(
        out.contains("winograd F(2x2,3x3) u8×s8→i32 (tiles scaled per tile and position"),
        "{out}"
    );
    assert!(out.contains("fused bias+relu+maxpool2x2"), "{out}");
    assert!(
        out.contains("linear 512→4096 (row-streaming gemv, u8×s8→i32"),
        "{out}"
    );
    assert!(out.contains("fast int8 [1, 3, 32, 32]"), "{out}");
    let direct = ok(&vgg(
        &[&args[..], &["--conv", "im2col", "--describe"]].concat()
    ));
    assert!(direct.contains("int8 im2col+gemm"), "{direct}");
}

/// Integer sums are exact and each output is one thread's: int8 output does not depend on
/// the thread count.
#[test]
fn int8_output_is_independent_of_threads() {
    let dir = Scratch::new("quantize-threads");
    let (weights, _) = quantize(&dir);
    let input = fixture("forward/tiny_input.npy");
    let outputs: Vec<Vec<u8>> = ["1", "3"]
        .iter()
        .map(|threads| {
            let out = dir.join(format!("int8_{threads}.npy"));
            ok(&vgg(&[
                &["--threads", threads][..],
                &forward_int8(&weights, &input, &out),
            ]
            .concat()));
            std::fs::read(&out).unwrap()
        })
        .collect();
    assert_eq!(outputs[0], outputs[1]);
}

/// A calibration whose ranges cannot be used, or that describes another network, is named
/// as such, not taken for a missing one, and never leaves layers in f32 silently.
#[test]
fn a_damaged_calibration_is_a_one_line_error() {
    let dir = Scratch::new("quantize-damaged");
    let (weights, _) = quantize(&dir);
    type Damage = fn(&mut vgg::weights::recorded::Int8Calibration);
    let damages: [(&str, Damage, &str); 5] = [
        (
            "negative",
            |c| first_int8(c).input_max = -1.0,
            "int8 calibration (metadata `vgg.int8`) is not usable",
        ),
        (
            "subnormal",
            |c| first_int8(c).input_max = 1e-38,
            "int8 calibration (metadata `vgg.int8`) is not usable",
        ),
        (
            "renamed",
            |c| first_int8(c).path = "features.99".into(),
            "records layer features.99, which the model does not have",
        ),
        (
            "dropped",
            |c| {
                c.layers.pop();
            },
            "records no range for layer classifier.",
        ),
        (
            "repeated",
            |c| c.layers.push(c.layers[0].clone()),
            "records layer features.0 twice",
        ),
    ];
    for (name, damage, expected) in damages {
        let mut calibration = vgg::weights::recorded_int8(&weights).unwrap().unwrap();
        damage(&mut calibration);
        let damaged = dir.join(format!("{name}.safetensors"));
        let state = vgg::weights::read(&weights).unwrap();
        let recorded = vgg::weights::recorded::Recorded {
            int8: Some(calibration),
            ..Default::default()
        };
        vgg::weights::write_recording(&damaged, &state.tensors, &recorded).unwrap();
        let input = fixture("forward/tiny_input.npy");
        let out = dir.join("out.npy");
        let result = vgg(&forward_int8(&damaged, &input, &out));
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(2), "{name}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{name}: {stderr}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(!out.exists(), "{name}");
    }
    let described = ok(&vgg(&["weights", arg(&dir.join("negative.safetensors"))]));
    assert!(
        described.contains("int8 calibration: unusable"),
        "{described}"
    );
}

fn first_int8(
    calibration: &mut vgg::weights::recorded::Int8Calibration,
) -> &mut vgg::weights::recorded::CalibratedLayer {
    calibration.layers.iter_mut().find(|l| l.int8).unwrap()
}

/// An image named twice is calibrated on once, and a count of one reads as one.
#[test]
fn an_image_named_twice_is_calibrated_on_once() {
    let dir = Scratch::new("quantize-twice");
    let image = fixture("images/small.png");
    let out = dir.join("q.safetensors");
    let weights = fixture("forward/tiny.safetensors");
    let args = ["quantize", arg(&weights), "--calib", arg(&image), "--calib"];
    let report = ok(&vgg(
        &[&args[..], &[arg(&image), "--out", arg(&out)]].concat()
    ));
    assert!(
        report.starts_with("calibrated on 1 image at 224x224"),
        "{report}"
    );
}
