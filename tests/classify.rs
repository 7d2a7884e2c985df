//! Images in, answers out: `classify`, `evaluate`, `features` and `preprocess` against
//! torchvision (fixtures from `scripts/make_fixtures.py images classify`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use candle_core::Tensor;
use common::{Scratch, fixture, vgg};

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const IMAGES: [&str; 8] = [
    "landscape.jpg",
    "portrait.jpg",
    "small.png",
    "grey.png",
    "rgba.png",
    "odd.webp",
    "wide.bmp",
    "anim.gif",
];

#[test]
fn classify_matches_torchvision_top5() {
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("images/tiny_bn_probs.json")).unwrap(),
    )
    .unwrap();
    let weights = fixture("forward/tiny_bn.pth");
    let paths: Vec<PathBuf> = IMAGES
        .iter()
        .map(|n| fixture(&format!("images/{n}")))
        .collect();
    for (tta, key) in [(None, "probs"), (Some("flip"), "flip_probs")] {
        let mut args = vec![
            "classify",
            "--weights",
            arg(&weights),
            "--json",
            "--batch-size",
            "3",
        ];
        if let Some(tta) = tta {
            args.extend(["--tta", tta]);
        }
        args.extend(paths.iter().map(|p| arg(p)));
        let out = vgg(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = json_lines(&out);
        assert_eq!(lines.len(), IMAGES.len());
        for (line, name) in lines.iter().zip(IMAGES) {
            assert!(line["path"].as_str().unwrap().ends_with(name));
            let want: Vec<f64> = reference[name][key]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let mut order: Vec<usize> = (0..want.len()).collect();
            order.sort_by(|&a, &b| want[b].total_cmp(&want[a]));
            let top = line["top"].as_array().unwrap();
            assert_eq!(top.len(), 5);
            for (rank, entry) in top.iter().enumerate() {
                let index = entry["index"].as_u64().unwrap() as usize;
                assert_eq!(index, order[rank], "{name} rank {rank} ({key})");
                let prob = entry["prob"].as_f64().unwrap();
                assert!(
                    (prob - want[index]).abs() < 1e-4,
                    "{name}: {prob} vs {}",
                    want[index]
                );
                assert_eq!(entry["label"], format!("class {index}"));
            }
        }
    }
}

#[test]
fn bad_images_are_reported_and_the_rest_classified() {
    let weights = fixture("forward/tiny_bn.pth");
    let broken = fixture("images/broken");
    let good = fixture("images/small.png");
    let out = vgg(&[
        "classify",
        "--weights",
        arg(&weights),
        "--json",
        arg(&broken),
        arg(&good),
    ]);
    assert_eq!(out.status.code(), Some(1), "some images failed");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 4);
    let errors: Vec<(&str, &str)> = lines
        .iter()
        .filter_map(|l| Some((l["path"].as_str()?, l.get("error")?.as_str()?)))
        .collect();
    assert_eq!(errors.len(), 3, "{lines:?}");
    for (path, reason) in [
        ("notes.png", "Invalid PNG signature"),
        ("tiny.png", "too small"),
        ("truncated.jpg", "truncated JPEG"),
    ] {
        assert!(
            errors
                .iter()
                .any(|(p, e)| p.ends_with(path) && e.contains(reason)),
            "{path}: {errors:?}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l["path"].as_str().unwrap().ends_with("small.png") && l["top"].is_array())
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

#[test]
fn evaluate_matches_pytorch_reference_loop() {
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("imagefolder_reference.json")).unwrap(),
    )
    .unwrap();
    let weights = fixture("forward/tiny_bn_legacy.pth");
    let data = fixture("imagefolder");
    let out = vgg(&[
        "evaluate",
        "--weights",
        arg(&weights),
        "--data",
        arg(&data),
        "--resize",
        "32",
        "--crop",
        "32",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["images"], reference["images"]);
    assert!(
        (report["top1"].as_f64().unwrap() - reference["top1"].as_f64().unwrap()).abs() < 1e-9,
        "{report}"
    );
    assert!(
        (report["top5"].as_f64().unwrap() - reference["top5"].as_f64().unwrap()).abs() < 1e-9,
        "{report}"
    );
    assert_eq!(report["per_class"].as_array().unwrap().len(), 10);
    assert!(report["images_per_s"].as_f64().unwrap() > 0.0);

    let out = vgg(&[
        "evaluate",
        "--weights",
        arg(&weights),
        "--data",
        arg(&data),
        "--resize",
        "32",
        "--crop",
        "32",
        "--limit",
        "7",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("images: 7 "), "{text}");
}

#[test]
fn preprocess_writes_torchvisions_tensor() {
    let scratch = Scratch::new("x.npy");
    let output = scratch.join("x.npy");
    let out = vgg(&[
        "preprocess",
        arg(&fixture("images/rgba.png")),
        "--output",
        arg(&output),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = Tensor::read_npy(&output).unwrap();
    let want = Tensor::read_npy(fixture("images/imagenet_batch.npy")).unwrap();
    assert_eq!(got.dims(), want.dims());
    let worst = (got - want)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap();
    assert!(worst.to_scalar::<f32>().unwrap() < 1e-6);
}

#[test]
fn features_as_npy_and_safetensors() {
    let weights = fixture("forward/tiny_bn.pth");
    let images = [fixture("images/small.png"), fixture("images/grey.png")];
    let scratch = Scratch::new("f.npy");
    let npy = scratch.join("f.npy");
    let out = vgg(&[
        "features",
        "--weights",
        arg(&weights),
        "--layer",
        "features.10",
        arg(&images[0]),
        arg(&images[1]),
        "--output",
        arg(&npy),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(Tensor::read_npy(&npy).unwrap().dims(), [2, 16, 56, 56]);
    let scratch = Scratch::new("f.safetensors");
    let st = scratch.join("f.safetensors");
    let features = |layer: &str, images: &[&Path]| {
        let mut args = vec!["features", "--weights", arg(&weights), "--layer", layer];
        args.extend(images.iter().map(|p| arg(p)));
        args.extend(["--output", arg(&st)]);
        vgg(&args)
    };
    let out = features("avgpool", &[&images[0], &images[1]]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let map = candle_core::safetensors::load(&st, &candle_core::Device::Cpu).unwrap();
    assert_eq!(map[arg(&images[1])].dims(), [32, 7, 7]);
    let out = features("features.99", &[&images[0]]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no module `features.99`"));
    let out = features("avgpool", &[&images[0], &images[0]]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is given twice"), "{err}");
}

/// Images decode to RGB: a network of another channel count is refused by every command
/// that feeds it images, saying so (not with an engine's shape error).
#[test]
fn images_into_a_network_without_three_channels_are_refused() {
    let dir = Scratch::new("grey-net");
    let config = vgg::VggConfig::custom("8,M,16,M", false)
        .unwrap()
        .with_overrides(&vgg::ConfigOverrides {
            in_channels: Some(1),
            hidden: Some(8),
            num_classes: Some(3),
            ..Default::default()
        })
        .unwrap();
    let model = vgg::model::Vgg::new(config, 0, &candle_core::Device::Cpu).unwrap();
    let weights = dir.join("grey.safetensors");
    let recorded = vgg::weights::recorded::Recorded {
        config: Some(model.config().clone()),
        ..Default::default()
    };
    vgg::weights::write_recording(&weights, &model.state_dict().unwrap(), &recorded).unwrap();
    let image = fixture("images/small.png");
    let data = fixture("imagefolder");
    let (weights, image, data) = (arg(&weights), arg(&image), arg(&data));
    let (out, quantized) = (dir.join("f.npy"), dir.join("q.safetensors"));
    for args in [
        &["classify", "--weights", weights, image][..],
        &[
            "classify",
            "--weights",
            weights,
            "--protocol",
            "dense",
            image,
        ],
        &["evaluate", "--weights", weights, "--data", data],
        &[
            "features",
            "--weights",
            weights,
            "--layer",
            "avgpool",
            image,
            "--output",
            arg(&out),
        ],
        &[
            "quantize",
            weights,
            "--calib",
            data,
            "--out",
            arg(&quantized),
        ],
    ] {
        let result = vgg(args);
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("images decode to 3 channels (RGB), and this custom network takes 1"),
            "{args:?}: {stderr}"
        );
    }
}
