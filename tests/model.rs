//! The candle network: state_dict names against torchvision's, forward shapes for every arch,
//! and outputs against PyTorch's for small networks (fixtures from `scripts/make_fixtures.py`).

mod common;

use std::collections::HashMap;

use common::{assert_close, fixture};

use candle_core::{Device, Tensor};
use vgg::model::layers::build_layers;
use vgg::{Arch, ConfigOverrides, Mode, Vgg, VggConfig};

/// `[key, shape, dtype]` of torchvision's state_dict, per arch.
fn torchvision_keys() -> HashMap<String, Vec<(String, Vec<usize>, String)>> {
    let text = std::fs::read_to_string(fixture("state_dict_keys.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn layer_list_names_every_state_dict_entry_like_torchvision() {
    let keys = torchvision_keys();
    for arch in Arch::ALL {
        let ours: Vec<(String, Vec<usize>)> = build_layers(&VggConfig::from_arch(arch))
            .iter()
            .flat_map(|l| l.named_tensors())
            .map(|(key, spec)| (key, spec.shape))
            .collect();
        let theirs: Vec<(String, Vec<usize>)> = keys[arch.name()]
            .iter()
            .map(|(k, s, _)| (k.clone(), s.clone()))
            .collect();
        assert_eq!(ours, theirs, "{arch}");
    }
}

/// Every arch at full size: `[N, num_classes]` for batch 1 and 3 at 32×32, 64×64, 100×150,
/// and a state_dict with torchvision's keys, shapes and dtypes.
#[test]
fn every_arch_forwards_any_batch_and_size() {
    let keys = torchvision_keys();
    for arch in Arch::ALL {
        let config = VggConfig::from_arch(arch).with_num_classes(10).unwrap();
        let model = Vgg::new(config, 0, &Device::Cpu).unwrap();
        for batch in [1, 3] {
            for (h, w) in [(32, 32), (64, 64), (100, 150)] {
                let x = Tensor::randn(0f32, 1.0, (batch, 3, h, w), &Device::Cpu).unwrap();
                let y = model.forward(&x, Mode::Eval).unwrap();
                assert_eq!(y.dims(), [batch, 10], "{arch} {batch}x3x{h}x{w}");
            }
        }
        let state: Vec<(String, Vec<usize>, String)> = model
            .state_dict()
            .unwrap()
            .into_iter()
            .map(|(k, t)| {
                (
                    k,
                    t.dims().to_vec(),
                    format!("{:?}", t.dtype()).to_lowercase(),
                )
            })
            .collect();
        let expected: Vec<(String, Vec<usize>, String)> = keys[arch.name()]
            .iter()
            .map(|(k, s, d)| {
                let s = if k.ends_with("classifier.6.weight") {
                    vec![10, 4096]
                } else if k.ends_with("classifier.6.bias") {
                    vec![10]
                } else {
                    s.clone()
                };
                (
                    k.clone(),
                    s,
                    d.replace("float32", "f32").replace("int64", "i64"),
                )
            })
            .collect();
        assert_eq!(state, expected, "{arch}");
    }
}

struct Case {
    model: Vgg,
    input: Tensor,
    dir: &'static str,
}

fn load_case(name: &'static str) -> Case {
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture(&format!("forward/{name}.json"))).unwrap(),
    )
    .unwrap();
    let size = |key: &str| Some(meta[key].as_u64().unwrap() as usize);
    let config = VggConfig::custom(
        meta["cfg"].as_str().unwrap(),
        meta["batch_norm"].as_bool().unwrap(),
    )
    .unwrap()
    .with_overrides(&ConfigOverrides {
        hidden: size("hidden"),
        pool: size("pool"),
        num_classes: size("num_classes"),
        dropout: Some(0.0),
        ..ConfigOverrides::default()
    })
    .unwrap();
    let tensors = candle_core::safetensors::load(
        fixture(&format!("forward/{name}.safetensors")),
        &Device::Cpu,
    )
    .unwrap();
    let model = Vgg::build(
        config,
        0,
        &Device::Cpu,
        |_, key, _| Ok(tensors[key].clone()),
    )
    .unwrap();
    let input = Tensor::read_npy(fixture(&format!("forward/{name}_input.npy"))).unwrap();
    Case {
        model,
        input,
        dir: name,
    }
}

#[test]
fn eval_and_train_outputs_match_pytorch() {
    for name in ["tiny_bn", "tiny", "tiny_pool3"] {
        let case = load_case(name);
        let eval = Tensor::read_npy(fixture(&format!("forward/{name}_eval.npy"))).unwrap();
        let train = Tensor::read_npy(fixture(&format!("forward/{name}_train.npy"))).unwrap();
        assert_close(
            &case.model.forward(&case.input, Mode::Eval).unwrap(),
            &eval,
            1e-5,
            1e-5,
            &format!("{} eval", case.dir),
        );
        assert_close(
            &case.model.forward(&case.input, Mode::Train).unwrap(),
            &train,
            1e-5,
            1e-5,
            &format!("{} train", case.dir),
        );
    }
}

#[test]
fn train_mode_updates_running_statistics_like_pytorch() {
    let case = load_case("tiny_bn");
    case.model.forward(&case.input, Mode::Train).unwrap();
    let after = candle_core::safetensors::load(
        fixture("forward/tiny_bn_running_after_train.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let state: HashMap<String, Tensor> = case.model.state_dict().unwrap().into_iter().collect();
    assert!(!after.is_empty());
    for (key, want) in &after {
        if key.ends_with("num_batches_tracked") {
            assert_eq!(
                state[key].to_scalar::<i64>().unwrap(),
                want.to_scalar::<i64>().unwrap(),
                "{key}"
            );
        } else {
            assert_close(&state[key], want, 1e-5, 1e-5, key);
        }
    }
}

/// Without batch norm and with dropout 0, training mode computes exactly what eval does;
/// with dropout it does not, and the same seed gives the same dropout masks.
#[test]
fn train_differs_from_eval_only_through_dropout_and_batch_norm() {
    let config = |dropout| {
        (VggConfig::custom("8,M,16,M", false).unwrap())
            .with_overrides(&ConfigOverrides {
                dropout: Some(dropout),
                ..ConfigOverrides::default()
            })
            .unwrap()
    };
    let x = Tensor::randn(0f32, 1.0, (2, 3, 32, 32), &Device::Cpu).unwrap();
    let plain = Vgg::new(config(0.0), 5, &Device::Cpu).unwrap();
    let eval = plain.forward(&x, Mode::Eval).unwrap();
    let train = plain.forward(&x, Mode::Train).unwrap();
    assert_eq!(
        eval.to_vec2::<f32>().unwrap(),
        train.to_vec2::<f32>().unwrap()
    );

    let dropped = Vgg::new(config(0.5), 5, &Device::Cpu).unwrap();
    let twin = Vgg::new(config(0.5), 5, &Device::Cpu).unwrap();
    let a = dropped
        .forward(&x, Mode::Train)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert_ne!(a, eval.to_vec2::<f32>().unwrap());
    assert_eq!(
        dropped
            .forward(&x, Mode::Eval)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap(),
        eval.to_vec2::<f32>().unwrap()
    );
    assert_eq!(
        a,
        twin.forward(&x, Mode::Train)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
    );
}

#[test]
fn forward_rejects_bad_inputs_with_clear_errors() {
    let model = Vgg::new(
        VggConfig::custom("8,M,16,M,16", true).unwrap(),
        0,
        &Device::Cpu,
    )
    .unwrap();
    let too_small = Tensor::zeros((1, 3, 3, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    let err = model
        .forward(&too_small, Mode::Eval)
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs at least 4×4"), "{err}");
    let grey = Tensor::zeros((1, 1, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    let err = model.forward(&grey, Mode::Eval).unwrap_err().to_string();
    assert!(err.contains("expects 3 input channels, got 1"), "{err}");
    let single = Tensor::zeros((1, 3, 4, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
    let err = model
        .forward_to(&single, Mode::Train, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("more than 1 value per channel"), "{err}");
    let err = model
        .forward_to(&single, Mode::Eval, Some("features.99"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no module `features.99`"), "{err}");
}

/// `forward_taps` gives, from one pass, what `forward_to` gives for each module, in the order
/// asked.
#[test]
fn taps_equal_separate_passes() {
    let config = VggConfig::custom("8,M,16,M", true).unwrap();
    let model = Vgg::new(config, 3, &Device::Cpu).unwrap();
    let x = Tensor::randn(0f32, 1.0, (2, 3, 32, 32), &Device::Cpu).unwrap();
    let names = ["classifier.3", "features.0", "avgpool", "features.0"];
    let taps = model.forward_taps(&x, Mode::Eval, &names).unwrap();
    assert_eq!(taps.len(), names.len());
    for (name, tap) in names.iter().zip(&taps) {
        let want = model.forward_to(&x, Mode::Eval, Some(name)).unwrap();
        assert_close(tap, &want, 0.0, 0.0, name);
    }
    assert!(
        model
            .forward_taps(&x, Mode::Eval, &["features.99"])
            .is_err()
    );
}
