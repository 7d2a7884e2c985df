//! `vgg summary` against the real torchsummary 1.5.1 and torchinfo 1.8.0 (fixtures made by
//! `scripts/make_fixtures.py`), and the command's errors.

mod common;

use std::path::Path;

use common::{fixture, vgg};

#[test]
fn byte_identical_to_the_real_tools() {
    let manifest = std::fs::read_to_string(fixture("summary").join("manifest.json")).unwrap();
    let cases: Vec<serde_json::Value> = serde_json::from_str(&manifest).unwrap();
    assert!(cases.len() >= 60, "the manifest lists every case");
    let mut failures = Vec::new();
    for case in &cases {
        let file = case["file"].as_str().unwrap();
        let args: Vec<&str> = case["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let expected = std::fs::read_to_string(fixture("summary").join(file)).unwrap();
        let out = vgg(&args);
        if !out.status.success() || out.stdout != expected.as_bytes() {
            failures.push(format!(
                "{file}: `vgg {}`\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn notebook_table_from_shared_reference() {
    let reference = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference/torchsummary_vgg11_3x64x64.txt");
    let committed = fixture("summary").join("torchsummary_vgg11_input_3x64x64.txt");
    let expected = std::fs::read_to_string(&reference)
        .or_else(|_| std::fs::read_to_string(committed))
        .unwrap();
    let out = vgg(&["summary", "vgg11", "--input", "3x64x64"]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);
}

/// Each bad input gets one line on stderr and exit code 2.
#[test]
fn errors_are_one_line_with_exit_code_2() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["summary", "vgg11", "--input", "3x16x64"],
            "needs at least 32×32 input: five 2×2 max-pools",
        ),
        (
            &["summary", "vgg11", "--input", "3x64"],
            "expected 3 numbers",
        ),
        (
            &["summary", "vgg11", "--input", "3xax64"],
            "`a` is not a number",
        ),
        (
            &["summary", "vgg11", "--input", "0x64x64"],
            "sizes must be positive",
        ),
        (
            &["summary", "vgg11", "--input", "-3x64x64"],
            "sizes must be positive",
        ),
        (&["summary", "vgg16bn"], "did you mean `vgg16_bn`"),
        (
            &[
                "summary",
                "vgg16",
                "--format",
                "torchinfo",
                "--columns",
                "output_size,flops",
            ],
            "unknown column `flops`",
        ),
        (
            &["summary", "vgg16", "--num-classes", "0"],
            "num_classes must be at least 1",
        ),
        (&["summary", "custom"], "needs --cfg"),
        (&["summary", "custom", "--cfg", "32,Q"], "bad --cfg"),
        (
            &["summary", "custom", "--cfg", "8,M,8,M", "--input", "3x3x3"],
            "needs at least 4×4 input: two 2×2 max-pools",
        ),
        (
            &[
                "summary",
                "vgg11",
                "--input",
                "2x3x64x64",
                "--batch-size",
                "3",
            ],
            "--input gives batch 2",
        ),
        (
            &["summary", "vgg11", "--dropout", "1.5"],
            "dropout must be in [0, 1)",
        ),
    ];
    for (args, message) in cases {
        let out = vgg(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn json_rows_and_totals() {
    let out = vgg(&[
        "summary",
        "vgg16_bn",
        "--format",
        "json",
        "--input",
        "2x3x64x64",
        "--freeze",
        "features",
    ]);
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["input_shape"], serde_json::json!([2, 3, 64, 64]));
    let totals = &doc["totals"];
    assert_eq!(totals["params"], 138_365_992);
    assert_eq!(
        totals["trainable_params"],
        102_764_544 + 16_781_312 + 4_097_000
    );
    let rows = doc["rows"].as_array().unwrap();
    let conv = rows
        .iter()
        .find(|r| r["key_prefix"] == "features.1")
        .unwrap();
    assert_eq!(conv["type"], "BatchNorm2d");
    assert_eq!(conv["output_shape"], serde_json::json!([2, 64, 64, 64]));
    assert_eq!(conv["output_bytes"], 2 * 64 * 64 * 64 * 4);
    assert_eq!(conv["trainable"], false);
    let fc8 = rows
        .iter()
        .find(|r| r["key_prefix"] == "classifier.6")
        .unwrap();
    assert_eq!(fc8["mult_adds"], 2 * 4_097_000);
    assert_eq!(fc8["input_shape"], serde_json::json!([2, 4096]));
}

#[test]
fn a_checkpoint_keeps_its_input_channels() {
    let scratch = common::Scratch::new("gray_summary");
    let path = scratch.join("gray.safetensors");
    let zeros = |shape: &[usize]| {
        candle_core::Tensor::zeros(shape, candle_core::DType::F32, &candle_core::Device::Cpu)
            .unwrap()
    };
    let tensors: std::collections::HashMap<String, candle_core::Tensor> = [
        ("features.0.weight", zeros(&[8, 1, 3, 3])),
        ("features.0.bias", zeros(&[8])),
        ("classifier.0.weight", zeros(&[16, 8])),
        ("classifier.0.bias", zeros(&[16])),
        ("classifier.3.weight", zeros(&[16, 16])),
        ("classifier.3.bias", zeros(&[16])),
        ("classifier.6.weight", zeros(&[10, 16])),
        ("classifier.6.bias", zeros(&[10])),
    ]
    .into_iter()
    .map(|(k, t)| (k.to_string(), t))
    .collect();
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let weights = path.to_str().unwrap();
    let out = vgg(&["summary", "auto", "--weights", weights]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        table.contains("Conv2d-1          [-1, 8, 224, 224]              80"),
        "the checkpoint's one channel at the default size:\n{table}"
    );
    let out = vgg(&[
        "summary",
        "auto",
        "--weights",
        weights,
        "--input",
        "3x32x32",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expects 1 input channels, got 3"), "{err}");
}
