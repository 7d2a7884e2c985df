//! The paper's evaluation protocols (dense, multi-crop, both, over test scales) against
//! PyTorch (`scripts/make_protocol_fixtures.py`), on both engines, for a plain and a batch-norm
//! network at non-square images; and the dense form against the standard forward.

mod common;

use candle_core::{Device, Tensor};
use common::{Scratch, assert_close, fixture, random, vgg};
use serde_json::Value;
use vgg::data::image::load_rgb;
use vgg::data::preprocess::Preprocess;
use vgg::engine::{PlanOptions, Precision};
use vgg::fast::FastVgg;
use vgg::infer::protocol::{Protocol, View};
use vgg::infer::{Engine, Prepared};
use vgg::{Mode, ModelSource, Vgg};

const PROTOCOLS: [&str; 4] = ["center", "dense", "multi-crop", "dense+multi-crop"];

fn reference() -> Value {
    let text = std::fs::read_to_string(fixture("protocols/reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The fixture network with its last layer multiplied by the reference's `sharpen` (so the
/// posteriors are far from uniform), saved where a `ModelSource` can read it.
fn sharpened(name: &str, sharpen: f64, dir: &Scratch) -> ModelSource {
    let source = ModelSource::checkpoint(fixture(&format!("forward/{name}.safetensors")));
    let (model, _) = source.open(&Device::Cpu).unwrap();
    let tensors: Vec<(String, Tensor)> = (model.state_dict().unwrap().into_iter())
        .map(|(key, t)| {
            let last_layer = key.starts_with("classifier.6.");
            let t = if last_layer {
                (t * sharpen).unwrap()
            } else {
                t
            };
            (key, t)
        })
        .collect();
    let path = dir.join(format!("{name}.safetensors"));
    vgg::weights::write(&path, &tensors).unwrap();
    ModelSource::checkpoint(path)
}

fn scales(reference: &Value) -> Vec<usize> {
    (reference["scales"].as_array().unwrap().iter())
        .map(|q| q.as_u64().unwrap() as usize)
        .collect()
}

fn posteriors(
    source: &ModelSource,
    engine: Engine,
    protocol: Protocol,
    scales: &[usize],
) -> Vec<Vec<f32>> {
    let preprocess = Preprocess::imagenet();
    let mut classifier = source
        .classifier(engine, 8, &preprocess, protocol, scales, false)
        .unwrap();
    let preparation = classifier.preparation(&preprocess);
    let names = ["landscape.jpg", "portrait.jpg", "wide.bmp"];
    let prepared: Vec<Prepared> = (names.iter())
        .map(|n| {
            let image = load_rgb(&fixture(&format!("images/{n}"))).unwrap();
            preparation.prepare(&image).unwrap()
        })
        .collect();
    let refs: Vec<&Prepared> = prepared.iter().collect();
    classifier.posteriors(&refs, preprocess.crop).unwrap()
}

#[test]
fn protocols_match_pytorch_on_both_engines() {
    let reference = reference();
    let dir = Scratch::new("protocols");
    let sharpen = reference["sharpen"].as_f64().unwrap();
    for name in ["tiny", "tiny_bn"] {
        let source = sharpened(name, sharpen, &dir);
        for protocol in PROTOCOLS {
            let want = &reference["models"][name][protocol];
            for engine in [Engine::default(), Engine::Reference] {
                let got = posteriors(
                    &source,
                    engine,
                    protocol.parse().unwrap(),
                    &scales(&reference),
                );
                for (image, (got, want)) in got.iter().zip(want.as_array().unwrap()).enumerate() {
                    for (g, w) in got.iter().zip(want.as_array().unwrap()) {
                        let w = w.as_f64().unwrap() as f32;
                        assert!(
                            (g - w).abs() <= 1e-5,
                            "{name} {protocol} on {}, image {image}: {g} vs PyTorch {w}",
                            engine.name()
                        );
                    }
                }
            }
        }
    }
}

/// The protocols in bf16 (dense plans recompiled per image size, multi-crop batches): the
/// same classes as PyTorch's f32 posteriors, every probability within 0.05.
#[test]
fn protocols_in_bf16_stay_near_pytorch() {
    let reference = reference();
    let dir = Scratch::new("protocols-bf16");
    let source = sharpened("tiny_bn", reference["sharpen"].as_f64().unwrap(), &dir);
    for protocol in PROTOCOLS {
        let want = &reference["models"]["tiny_bn"][protocol];
        let engine = Engine::Fast(Precision::Bf16);
        let got = posteriors(
            &source,
            engine,
            protocol.parse().unwrap(),
            &scales(&reference),
        );
        for (image, (got, want)) in got.iter().zip(want.as_array().unwrap()).enumerate() {
            let want: Vec<f32> = (want.as_array().unwrap().iter())
                .map(|w| w.as_f64().unwrap() as f32)
                .collect();
            let worst = got
                .iter()
                .zip(&want)
                .fold(0f32, |m, (g, w)| m.max((g - w).abs()));
            println!("{protocol} image {image}: max |bf16 - PyTorch f32| {worst:.2e}");
            assert!(worst <= 0.05, "{protocol}, image {image}: {worst}");
            assert_eq!(argmax(got), argmax(&want), "{protocol}, image {image}");
        }
    }
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len())
        .max_by(|&a, &b| v[a].total_cmp(&v[b]))
        .unwrap_or(0)
}

#[test]
fn dense_score_map_matches_pytorch() {
    let reference = reference();
    let case = &reference["score_map"];
    let dir = Scratch::new("score-map");
    let source = sharpened("tiny_bn", reference["sharpen"].as_f64().unwrap(), &dir);
    let (model, _) = source.open(&Device::Cpu).unwrap();
    let image = load_rgb(&fixture("images/landscape.jpg")).unwrap();
    let view = View::of(&image, 256, &Preprocess::imagenet()).unwrap();
    let shape: Vec<usize> = (case["shape"].as_array().unwrap().iter())
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let values: Vec<f32> = (case["values"].as_array().unwrap().iter())
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let want = Tensor::from_vec(values, shape.as_slice(), &Device::Cpu).unwrap();
    let x = Tensor::from_vec(
        view.data.clone(),
        (1, 3, view.height, view.width),
        &Device::Cpu,
    )
    .unwrap();
    let reference_map = model.dense().unwrap().forward(&x, Mode::Eval).unwrap();
    assert_close(
        &reference_map,
        &want,
        1e-4,
        1e-5,
        "reference dense score map",
    );
    let options = PlanOptions {
        dense: true,
        ..PlanOptions::default()
    };
    let mut engine = FastVgg::from_model(&model, [1, 3, 224, 224], options).unwrap();
    let (map, h, w) = engine
        .score_map(&view.data, view.height, view.width)
        .unwrap();
    assert_eq!([1, 10, h, w], shape.as_slice());
    let fast_map = Tensor::from_vec(map, shape.as_slice(), &Device::Cpu).unwrap();
    assert_close(&fast_map, &want, 1e-4, 1e-5, "engine dense score map");
}

/// At exactly the native size the score map is 1×1 and equals the standard logits, on both
/// engines; and a dense plan keeps working as the input size changes back and forth.
#[test]
fn dense_at_native_size_equals_the_standard_forward() {
    for name in ["tiny", "tiny_bn", "tiny_pool3"] {
        let source = ModelSource::checkpoint(fixture(&format!("forward/{name}.safetensors")));
        let (model, _) = source.open(&Device::Cpu).unwrap();
        let native = model.config().native_input_size();
        let x = Tensor::from_vec(
            random(2 * 3 * native * native, 7, 1.0),
            (2, 3, native, native),
            &Device::Cpu,
        )
        .unwrap();
        let logits = model.forward(&x, Mode::Eval).unwrap();
        let dense = model.dense().unwrap().forward(&x, Mode::Eval).unwrap();
        assert_eq!(dense.dims()[2..], [1, 1], "{name}");
        assert_close(&dense.flatten_from(1).unwrap(), &logits, 1e-5, 1e-5, name);
        let options = PlanOptions {
            dense: true,
            ..PlanOptions::default()
        };
        let mut engine = FastVgg::from_model(&model, [2, 3, native, native], options).unwrap();
        let data = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let bigger = random(2 * 3 * (native + 40) * (native + 72), 8, 1.0);
        let (_, h, w) = engine.score_map(&bigger, native + 40, native + 72).unwrap();
        assert!(h > 1 && w > 1, "{name}: a larger input gives a larger map");
        let (map, h, w) = engine.score_map(&data, native, native).unwrap();
        assert_eq!((h, w), (1, 1));
        let map = Tensor::from_vec(map, logits.dims(), &Device::Cpu).unwrap();
        assert_close(&map, &logits, 1e-4, 1e-4, &format!("{name} engine"));
    }
}

#[test]
fn dense_form_refuses_inputs_below_the_native_size() {
    let model = Vgg::new(vgg::VggConfig::from_arch(vgg::Arch::Vgg11), 0, &Device::Cpu).unwrap();
    let x = Tensor::zeros((1, 3, 200, 320), candle_core::DType::F32, &Device::Cpu).unwrap();
    let err = model
        .dense()
        .unwrap()
        .forward(&x, Mode::Eval)
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs at least 224×224"), "{err}");
    let out = vgg(&["summary", "vgg16", "--dense", "--input", "3x200x384"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the dense form of vgg16 needs at least 224×224 input"),
        "{stderr}"
    );
}

#[test]
fn protocol_flags_are_checked() {
    let weights = fixture("forward/tiny.safetensors");
    let image = fixture("images/landscape.jpg");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "classify",
            "--weights",
            weights.to_str().unwrap(),
            image.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = vgg(&args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let cases: [(&[&str], &str); 5] = [
        (&["--scales", "256"], "--scales goes with --protocol dense"),
        (
            &["--protocol", "dense", "--scales", "200"],
            "every scale must be at least the dense network's native size 224",
        ),
        (
            &["--protocol", "multi-crop", "--crop", "96", "--scales", "80"],
            "every scale must be at least the multi-crop crop size 96",
        ),
        (
            &["--protocol", "dense", "--tta", "flip"],
            "already averages every view with its mirror image",
        ),
        (
            &["--protocol", "tencrop"],
            "valid: center, dense, multi-crop, dense+multi-crop",
        ),
    ];
    // Multi-crop takes crops of the size the model is evaluated at, not only 224.
    let (code, stderr) = run(&[
        "--protocol",
        "multi-crop",
        "--crop",
        "96",
        "--scales",
        "100",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    for (extra, message) in cases {
        let (code, stderr) = run(extra);
        assert_eq!(code, Some(2), "{extra:?}: {stderr}");
        assert!(
            stderr.contains(message) && stderr.lines().count() == 1,
            "{extra:?}: {stderr}"
        );
    }
}

/// `vgg convert --dense` writes the classifier as convolution weights under the same keys;
/// the file loads back anywhere a checkpoint does and gives the same network.
#[test]
fn dense_state_dict_round_trips() {
    let dir = Scratch::new("dense-convert");
    let weights = fixture("forward/tiny_bn.safetensors");
    let dense = dir.join("dense.safetensors");
    let out = vgg(&[
        "convert",
        "--dense",
        weights.to_str().unwrap(),
        dense.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&dense).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let shape = |key: &str| file.tensor(key).unwrap().shape().to_vec();
    assert_eq!(shape("classifier.0.weight"), [32, 32, 7, 7]);
    assert_eq!(shape("classifier.3.weight"), [32, 32, 1, 1]);
    assert_eq!(shape("classifier.6.weight"), [10, 32, 1, 1]);
    assert_eq!(shape("features.0.weight"), [8, 3, 3, 3]);
    let input = fixture("forward/tiny_bn_input.npy");
    let run = |w: &std::path::Path, name: &str, extra: &[&str]| {
        let output = dir.join(name);
        let mut args = vec![
            "forward",
            "--weights",
            w.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ];
        args.extend_from_slice(&["--output", output.to_str().unwrap()]);
        args.extend_from_slice(extra);
        let out = vgg(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tensor::read_npy(output).unwrap()
    };
    let original = run(&weights, "a.npy", &["--engine", "reference"]);
    let reloaded = run(&dense, "b.npy", &["--engine", "reference"]);
    assert_close(&reloaded, &original, 0.0, 0.0, "the dense file reloaded");
    let out = vgg(&[
        "forward",
        "--dense",
        "--weights",
        weights.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        dir.join("c.npy").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("needs at least 224×224"),
        "a 64×64 input is too small for the dense form: {stderr}"
    );
}
