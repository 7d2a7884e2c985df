//! `--precision`: f32 stays the engine's exact output, bf16 stays close to PyTorch's f32
//! output, and the combinations that cannot work are one-line errors.

mod common;

use common::{BENCH_VGG11_32, Scratch, fixture, vgg};

fn forward(out: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let weights = fixture("forward/tiny.safetensors");
    let input = fixture("forward/tiny_input.npy");
    let mut args = vec![
        "forward",
        "--weights",
        weights.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    vgg(&args)
}

fn read(path: &std::path::Path) -> Vec<f32> {
    let t = vgg::data::npy::read_f32(path).unwrap();
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn f32_is_unchanged_and_bf16_is_close() {
    let dir = Scratch::new("precision");
    let [default, f32, bf16] = ["default", "f32", "bf16"].map(|n| dir.join(format!("{n}.npy")));
    assert!(forward(&default, &[]).status.success());
    assert!(forward(&f32, &["--precision", "f32"]).status.success());
    assert!(forward(&bf16, &["--precision", "bf16"]).status.success());
    assert_eq!(
        std::fs::read(&default).unwrap(),
        std::fs::read(&f32).unwrap()
    );
    let want = read(&fixture("forward/tiny_eval.npy"));
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let got = read(&bf16);
    let worst = got
        .iter()
        .zip(&want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        worst > 0.0 && worst < 2e-2 * scale,
        "{worst} vs max |ref| {scale}"
    );
}

#[test]
fn impossible_combinations_are_one_line_errors() {
    let dir = Scratch::new("precision-errors");
    let out = dir.join("out.npy");
    let cases: [(&[&str], &str); 4] = [
        (
            &["--precision", "bf16", "--engine", "reference"],
            "--engine reference computes in f32",
        ),
        (
            &["--precision", "bf16", "--layer", "features.3"],
            "--layer and --train",
        ),
        (&["--precision", "bf16", "--train"], "--layer and --train"),
        (
            &["--precision", "int4"],
            "unknown precision 'int4' (expected one of: f32, bf16, int8)",
        ),
    ];
    for (extra, needle) in cases {
        let result = forward(&out, extra);
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(2), "{extra:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(needle), "`{needle}` not in: {stderr}");
        assert!(!out.exists(), "{extra:?} wrote its output");
    }
}

#[test]
fn bench_describes_the_bf16_plan() {
    let out = vgg(&[&BENCH_VGG11_32[..], &["--precision", "bf16", "--describe"]].concat());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("precision: bf16"), "{stdout}");
    assert!(
        stdout.contains("winograd F(2x2,3x3) bf16×bf16→f32"),
        "{stdout}"
    );
    assert!(stdout.contains("fast bf16 [1, 3, 32, 32]"), "{stdout}");
}

/// `--json` prints the one object scripts parse (the plan `--describe` asks for goes to
/// stderr); plan flags the reference engine has no plan for are refused.
#[test]
fn bench_json_is_one_object() {
    let args = BENCH_VGG11_32;
    let out = vgg(&[&args[..], &["--json", "--describe"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let object: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert!(object["median_ms"].as_f64().unwrap() > 0.0, "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("precision: f32"));
    let out = vgg(&[&args[..], &["--engine", "reference", "--conv", "f63"]].concat());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--engine reference has none"));
}
