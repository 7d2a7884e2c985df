//! Gradients and optimiser steps against PyTorch (fixtures from
//! `scripts/make_fixtures.py train`): the tiny_pool3 network with batch norm in training mode.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use common::{fixture, max_diff};
use vgg::train::optim::{AdamW, AdamWConfig, Sgd, SgdConfig};
use vgg::weights::{self, load::load};
use vgg::{ConfigOverrides, Mode, Vgg, VggConfig};

fn model() -> Vgg {
    let config = (VggConfig::custom("8,8,M,16,M,24,M", true).unwrap())
        .with_overrides(&ConfigOverrides {
            hidden: Some(16),
            pool: Some(3),
            num_classes: Some(4),
            dropout: Some(0.0),
            ..ConfigOverrides::default()
        })
        .unwrap();
    let state = weights::read(&fixture("forward/tiny_pool3.safetensors")).unwrap();
    load(config, state, true, 0, &Device::Cpu).unwrap().0
}

/// Mean cross-entropy of the batch, as `F.cross_entropy(label_smoothing=smoothing)`.
fn smoothed_loss(model: &Vgg, smoothing: f64) -> Tensor {
    let x = Tensor::read_npy(fixture("train/input.npy")).unwrap();
    let y = Tensor::read_npy(fixture("train/targets.npy"))
        .unwrap()
        .to_dtype(DType::U32)
        .unwrap();
    let logits = model.forward(&x, Mode::Train).unwrap();
    vgg::train::loss::cross_entropy(&logits, &y, smoothing).unwrap()
}

fn reference_numbers() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("train/loss.json")).unwrap()).unwrap()
}

#[test]
fn label_smoothing_and_clipping_match_pytorch() {
    let want = reference_numbers();
    let model = model();
    let plain = smoothed_loss(&model, 0.0).to_scalar::<f32>().unwrap() as f64;
    assert!((plain - want["loss"].as_f64().unwrap()).abs() < 1e-5);
    let smoothed = smoothed_loss(&model, 0.1);
    let value = smoothed.to_scalar::<f32>().unwrap() as f64;
    assert!(
        (value - want["loss_smoothed_0.1"].as_f64().unwrap()).abs() < 1e-5,
        "smoothed loss {value} vs {}",
        want["loss_smoothed_0.1"]
    );

    let model = self::model();
    let mut grads = smoothed_loss(&model, 0.0).backward().unwrap();
    let max_norm = want["clip_max_norm"].as_f64().unwrap();
    let norm = vgg::train::loss::clip_grad_norm(&mut grads, &params(&model), max_norm).unwrap();
    let want_norm = want["grad_norm"].as_f64().unwrap();
    assert!(
        (norm - want_norm).abs() < 1e-4 * want_norm,
        "norm {norm} vs {want_norm}"
    );
    let reference =
        candle_core::safetensors::load(fixture("train/grads_clipped.safetensors"), &Device::Cpu)
            .unwrap();
    for (key, var) in model.parameters() {
        let (worst, scale) = max_diff(grads.get(var.as_tensor()).unwrap(), &reference[&key], &key);
        assert!(
            worst <= 1e-4 * scale.max(1e-3),
            "{key}: {worst} (max |ref| {scale})"
        );
    }
}

/// Mean cross-entropy of the batch, as `F.cross_entropy`.
fn loss(model: &Vgg) -> Tensor {
    smoothed_loss(model, 0.0)
}

fn params(model: &Vgg) -> Vec<Var> {
    model.parameters().into_iter().map(|(_, v)| v).collect()
}

#[test]
fn gradients_match_pytorch() {
    let model = model();
    let loss = loss(&model);
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("train/loss.json")).unwrap())
            .unwrap();
    let got = loss.to_scalar::<f32>().unwrap() as f64;
    assert!(
        (got - want["loss"].as_f64().unwrap()).abs() < 1e-5,
        "loss {got} vs {}",
        want["loss"]
    );
    let grads = loss.backward().unwrap();
    let reference =
        candle_core::safetensors::load(fixture("train/grads.safetensors"), &Device::Cpu).unwrap();
    for (key, var) in model.parameters() {
        let grad = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {key}"));
        let (worst, scale) = max_diff(grad, &reference[&key], &key);
        assert!(
            worst <= 1e-4 * scale.max(1e-3),
            "{key}: max diff {worst}, max |ref| {scale}"
        );
    }
}

/// 20 steps on one batch, then every tensor (parameters and BN running statistics) but
/// those `skip` names.
fn assert_after_20_steps(
    model: &Vgg,
    mut step: impl FnMut(&candle_core::backprop::GradStore),
    file: &str,
    skip: impl Fn(&str) -> bool,
) {
    for _ in 0..20 {
        step(&loss(model).backward().unwrap());
    }
    let reference = candle_core::safetensors::load(fixture(file), &Device::Cpu).unwrap();
    let state: HashMap<String, Tensor> = model.state_dict().unwrap().into_iter().collect();
    for (key, want) in &reference {
        if key.ends_with("num_batches_tracked") {
            assert_eq!(state[key].to_scalar::<i64>().unwrap(), 20, "{key}");
            continue;
        }
        if skip(key) {
            continue;
        }
        let (worst, scale) = max_diff(&state[key], want, key);
        assert!(
            worst <= 1e-5 * scale.max(1.0),
            "{file} {key}: max diff {worst}, max |ref| {scale}"
        );
    }
}

#[test]
fn twenty_sgd_nesterov_steps_match_pytorch() {
    let model = model();
    let config = SgdConfig {
        lr: 0.01,
        momentum: 0.9,
        dampening: 0.0,
        weight_decay: 5e-4,
        nesterov: true,
    };
    let mut sgd = Sgd::new(params(&model), config);
    assert_after_20_steps(
        &model,
        |g| sgd.step(g).unwrap(),
        "train/sgd20.safetensors",
        |_| false,
    );
}

#[test]
fn twenty_adamw_steps_match_pytorch() {
    let model = model();
    let config = AdamWConfig {
        lr: 1e-3,
        weight_decay: 1e-2,
        ..AdamWConfig::default()
    };
    let mut adamw = AdamW::new(params(&model), config);
    // A convolution's bias just before batch norm has an exactly zero gradient (BN subtracts
    // the mean): both frameworks see only rounding noise there, which Adam normalises into
    // full-size steps in arbitrary directions. Those biases, and the running means that track
    // them, are not comparable; every other tensor is.
    let before_bn = [
        "features.0.bias",
        "features.3.bias",
        "features.7.bias",
        "features.11.bias",
    ];
    assert_after_20_steps(
        &model,
        |g| adamw.step(g).unwrap(),
        "train/adamw20.safetensors",
        |key| before_bn.contains(&key) || key.ends_with("running_mean"),
    );
}

#[test]
fn schedules_match_torch_lr_scheduler() {
    use vgg::train::schedule::{LrSchedule, Plateau, Schedule};
    let text = std::fs::read_to_string(fixture("schedules.json")).unwrap();
    let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
    let expected = |name: &str| -> Vec<f64> {
        reference["lr"][name]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let schedule = |schedule, warmup| LrSchedule {
        base: 0.1,
        schedule,
        warmup,
    };
    let cases = [
        (
            "step",
            schedule(
                Schedule::Step {
                    step_size: 7,
                    gamma: 0.1,
                },
                None,
            ),
        ),
        (
            "multistep",
            schedule(
                Schedule::MultiStep {
                    milestones: vec![5, 12, 20],
                    gamma: 0.2,
                },
                None,
            ),
        ),
        (
            "cosine",
            schedule(
                Schedule::Cosine {
                    t_max: 30,
                    eta_min: 0.001,
                },
                None,
            ),
        ),
        (
            "warmup_cosine",
            schedule(
                Schedule::Cosine {
                    t_max: 25,
                    eta_min: 0.0,
                },
                Some((5, 0.1)),
            ),
        ),
    ];
    for (name, schedule) in cases {
        for (epoch, want) in expected(name).into_iter().enumerate() {
            let got = schedule.lr(epoch);
            assert!(
                (got - want).abs() <= 1e-12 + 1e-9 * want,
                "{name} epoch {epoch}: {got} vs {want}"
            );
        }
    }
    let accuracy = reference["accuracy"].as_array().unwrap();
    let mut plateau = Plateau::new(0.1, 0.1, 2);
    let mut lr = 0.1;
    for (epoch, want) in expected("plateau").into_iter().enumerate() {
        assert!(
            (lr - want).abs() <= 1e-12,
            "plateau epoch {epoch}: {lr} vs {want}"
        );
        lr = plateau.step(accuracy[epoch].as_f64().unwrap());
    }
}
