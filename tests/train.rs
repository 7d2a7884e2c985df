//! Gradients and optimiser steps against PyTorch (fixtures from
//! `scripts/make_fixtures.py train`): the tiny_pool3 network with batch norm in training mode.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use common::{fixture, max_diff};
use vgg::train::loss::clip_grad_norm;
use vgg::train::optim::{AdamW, AdamWConfig, Gradients, Sgd, SgdConfig};
use vgg::train::plan::{StepGradients, TrainPlan, forward_backward};
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

/// The two ways a training step can run: candle's autograd, and the compiled plan.
const PATHS: [&str; 2] = ["autograd", "plan"];

/// A fresh fixture model and, on the "plan" path, its compiled training plan.
fn model_on(path: &str) -> (Vgg, Option<TrainPlan>) {
    let model = model();
    let plan = (path == "plan").then(|| {
        TrainPlan::new(&model)
            .unwrap()
            .expect("the plan covers this network")
    });
    (model, plan)
}

/// One training step's mean loss (as `F.cross_entropy(label_smoothing=smoothing)`) and
/// gradients on the fixture batch, through `plan` when given.
fn loss_and_grads<'a>(
    model: &Vgg,
    plan: Option<&'a mut TrainPlan>,
    smoothing: f64,
) -> (f64, StepGradients<'a>) {
    let x = Tensor::read_npy(fixture("train/input.npy")).unwrap();
    let targets: Vec<u32> = Tensor::read_npy(fixture("train/targets.npy"))
        .unwrap()
        .to_dtype(DType::U32)
        .unwrap()
        .to_vec1()
        .unwrap();
    let forward = |x: &Tensor| model.forward(x, Mode::Train);
    let (loss, _, grads) =
        forward_backward(plan, model, (&x, &targets), smoothing, forward).unwrap();
    (loss, grads)
}

fn reference_numbers() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("train/loss.json")).unwrap()).unwrap()
}

fn params(model: &Vgg) -> Vec<Var> {
    model.parameters().into_iter().map(|(_, v)| v).collect()
}

/// Every parameter's gradient against the fixture `file`, to 1e-4 of its scale.
fn assert_gradients(model: &Vgg, grads: &StepGradients, file: &str, path: &str) {
    let reference = candle_core::safetensors::load(fixture(file), &Device::Cpu).unwrap();
    for (key, var) in model.parameters() {
        let grad = grads
            .gradient(var.as_tensor())
            .unwrap_or_else(|| panic!("{path}: no gradient for {key}"));
        let (worst, scale) = max_diff(grad, &reference[&key], &key);
        assert!(
            worst <= 1e-4 * scale.max(1e-3),
            "{path} {key}: max diff {worst}, max |ref| {scale}"
        );
    }
}

#[test]
fn label_smoothing_and_clipping_match_pytorch() {
    let want = reference_numbers();
    for path in PATHS {
        let (model, mut plan) = model_on(path);
        let (smoothed, _) = loss_and_grads(&model, plan.as_mut(), 0.1);
        assert!(
            (smoothed - want["loss_smoothed_0.1"].as_f64().unwrap()).abs() < 1e-5,
            "{path}: smoothed loss {smoothed} vs {}",
            want["loss_smoothed_0.1"]
        );
        let (model, mut plan) = model_on(path);
        let (plain, mut grads) = loss_and_grads(&model, plan.as_mut(), 0.0);
        assert!(
            (plain - want["loss"].as_f64().unwrap()).abs() < 1e-5,
            "{path}: {plain}"
        );
        let max_norm = want["clip_max_norm"].as_f64().unwrap();
        let norm = clip_grad_norm(&mut grads, &params(&model), max_norm).unwrap();
        let want_norm = want["grad_norm"].as_f64().unwrap();
        assert!(
            (norm - want_norm).abs() < 1e-4 * want_norm,
            "{path}: norm {norm} vs {want_norm}"
        );
        assert_gradients(&model, &grads, "train/grads_clipped.safetensors", path);
    }
}

#[test]
fn gradients_match_pytorch() {
    for path in PATHS {
        let (model, mut plan) = model_on(path);
        let (loss, grads) = loss_and_grads(&model, plan.as_mut(), 0.0);
        let want = reference_numbers()["loss"].as_f64().unwrap();
        assert!((loss - want).abs() < 1e-5, "{path}: loss {loss} vs {want}");
        assert_gradients(&model, &grads, "train/grads.safetensors", path);
    }
}

/// 20 steps on one batch through each path, then every tensor (parameters and BN running
/// statistics) but those `skip` names.
fn assert_after_20_steps(
    mut optimiser: impl FnMut(&Vgg) -> Box<dyn FnMut(&StepGradients)>,
    file: &str,
    skip: impl Fn(&str) -> bool,
) {
    for path in PATHS {
        let (model, mut plan) = model_on(path);
        let mut step = optimiser(&model);
        for _ in 0..20 {
            step(&loss_and_grads(&model, plan.as_mut(), 0.0).1);
        }
        let reference = candle_core::safetensors::load(fixture(file), &Device::Cpu).unwrap();
        let state: HashMap<String, Tensor> = model.state_dict().unwrap().into_iter().collect();
        for (key, want) in &reference {
            if key.ends_with("num_batches_tracked") {
                assert_eq!(state[key].to_scalar::<i64>().unwrap(), 20, "{path} {key}");
                continue;
            }
            if skip(key) {
                continue;
            }
            let (worst, scale) = max_diff(&state[key], want, key);
            assert!(
                worst <= 1e-5 * scale.max(1.0),
                "{path} {file} {key}: max diff {worst}, max |ref| {scale}"
            );
        }
    }
}

#[test]
fn twenty_sgd_nesterov_steps_match_pytorch() {
    let config = SgdConfig {
        lr: 0.01,
        momentum: 0.9,
        dampening: 0.0,
        weight_decay: 5e-4,
        nesterov: true,
    };
    assert_after_20_steps(
        |model| {
            let mut sgd = Sgd::new(params(model), config);
            Box::new(move |g| sgd.step(g).unwrap())
        },
        "train/sgd20.safetensors",
        |_| false,
    );
}

#[test]
fn twenty_adamw_steps_match_pytorch() {
    let config = AdamWConfig {
        lr: 1e-3,
        weight_decay: 1e-2,
        ..AdamWConfig::default()
    };
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
        |model| {
            let mut adamw = AdamW::new(params(model), config);
            Box::new(move |g| adamw.step(g).unwrap())
        },
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

/// A custom network and a batch for it: `cfg` (with batch norm when `bn`), torchvision's
/// head of width 12 with `dropout`, an adaptive pool to `pool`, 5 classes.
fn custom_case(cfg: &str, bn: bool, dropout: f64, pool: usize, input: [usize; 4]) -> (Vgg, Tensor) {
    let config = VggConfig::custom(cfg, bn)
        .unwrap()
        .with_overrides(&ConfigOverrides {
            hidden: Some(12),
            pool: Some(pool),
            num_classes: Some(5),
            dropout: Some(dropout),
            ..ConfigOverrides::default()
        })
        .unwrap();
    let model = Vgg::new(config, 7, &Device::Cpu).unwrap();
    let mut state = 1u64;
    let values: Vec<f32> = (0..input.iter().product::<usize>())
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    (
        model,
        Tensor::from_vec(values, input.as_slice(), &Device::Cpu).unwrap(),
    )
}

/// The plan computes what autograd computes: the loss, logits, every gradient and the
/// running statistics, with dropout (the same masks), without batch norm, on odd map sizes
/// (floored max-pools, overlapping adaptive-pool bins), and on layers it runs by Winograd.
#[test]
fn the_training_plan_equals_autograd() {
    let cases = [
        ("16,16,M,32", false, 0.5, 2, [3, 3, 20, 18]),
        ("16,16,M,32,M", true, 0.0, 3, [4, 3, 21, 19]),
        ("8,M,24,M,24", true, 0.3, 1, [2, 3, 13, 11]),
    ];
    for (cfg, bn, dropout, pool, input) in cases {
        let targets: Vec<u32> = (0..input[0] as u32).map(|i| (i * 3) % 5).collect();
        let run = |use_plan: bool| {
            let (model, x) = custom_case(cfg, bn, dropout, pool, input);
            let mut plan = use_plan.then(|| TrainPlan::new(&model).unwrap().unwrap());
            let forward = |x: &Tensor| model.forward(x, Mode::Train);
            let (loss, logits, grads) =
                forward_backward(plan.as_mut(), &model, (&x, &targets), 0.1, forward).unwrap();
            let grads: HashMap<String, Tensor> = model
                .parameters()
                .into_iter()
                .map(|(key, var)| {
                    (
                        key,
                        grads.gradient(var.as_tensor()).unwrap().copy().unwrap(),
                    )
                })
                .collect();
            let state: HashMap<String, Tensor> = model.state_dict().unwrap().into_iter().collect();
            (loss, logits, grads, state)
        };
        let (loss_a, logits_a, grads_a, state_a) = run(false);
        let (loss_p, logits_p, grads_p, state_p) = run(true);
        let case = format!("{cfg} bn={bn} dropout={dropout} pool={pool} {input:?}");
        assert!(
            (loss_a - loss_p).abs() < 1e-5 * loss_a.abs().max(1.0),
            "{case}: loss"
        );
        let (worst, scale) = max_diff(&logits_p, &logits_a, "logits");
        assert!(
            worst <= 1e-5 * scale.max(1.0),
            "{case}: logits {worst} ({scale})"
        );
        for (key, want) in &grads_a {
            let (worst, scale) = max_diff(&grads_p[key], want, key);
            assert!(
                worst <= 1e-4 * scale.max(1e-3),
                "{case} {key}: {worst} ({scale})"
            );
        }
        for (key, want) in state_a.iter().filter(|(k, _)| k.contains("running")) {
            let (worst, scale) = max_diff(&state_p[key], want, key);
            assert!(
                worst <= 1e-5 * scale.max(1.0),
                "{case} {key}: {worst} ({scale})"
            );
        }
    }
}

/// A plan step gives the same bits on 1 and 3 threads (sums run in fixed pieces).
#[test]
fn the_training_plan_does_not_depend_on_the_thread_count() {
    let step = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let (model, x) = custom_case("16,16,M,32,M", true, 0.5, 2, [6, 3, 24, 20]);
            let mut plan = TrainPlan::new(&model).unwrap().unwrap();
            let out = plan.step(&model, &x, &[0, 1, 2, 3, 4, 0], 0.0).unwrap();
            let grads = plan.gradients();
            let values: Vec<Vec<f32>> = model
                .parameters()
                .iter()
                .map(|(_, v)| {
                    let g = grads.gradient(v.as_tensor()).unwrap();
                    g.flatten_all().unwrap().to_vec1().unwrap()
                })
                .collect();
            (out.loss, values)
        })
    };
    assert_eq!(step(1), step(3));
}
