//! Configured classifier heads on the fast engine: every batch norm folds into a Linear (the
//! one before it, or after a ReLU the next one, two in a row composed) and gives the
//! reference model's outputs; a batch norm the engine cannot fold is an error naming it.

mod common;

use candle_core::{Device, Tensor};
use common::{assert_close, random};
use vgg::engine::PlanOptions;
use vgg::fast::FastVgg;
use vgg::model::head::parse_head;
use vgg::weights::StateDict;
use vgg::weights::load::load;
use vgg::{ConfigOverrides, Mode, Vgg, VggConfig};

/// A small network with `head`, every tensor random (batch norm statistics included).
fn network(head: &str) -> Vgg {
    let config = VggConfig::custom("8,M,16,M", true)
        .unwrap()
        .with_overrides(&ConfigOverrides {
            head: Some(parse_head(head).unwrap()),
            pool: Some(2),
            ..ConfigOverrides::default()
        })
        .unwrap();
    let fresh = Vgg::new(config.clone(), 0, &Device::Cpu).unwrap();
    let tensors = (fresh.state_dict().unwrap().into_iter().enumerate())
        .map(|(i, (key, t))| {
            if !t.dtype().is_float() {
                return (key, t);
            }
            let values = random(t.elem_count(), i as u64 + 1, 0.5);
            let values: Vec<f32> =
                match key.ends_with("running_var") || key.ends_with(".weight") && t.rank() == 1 {
                    true => values.into_iter().map(|v| 1.0 + v).collect(),
                    false => values,
                };
            (
                key,
                Tensor::from_vec(values, t.dims(), &Device::Cpu).unwrap(),
            )
        })
        .collect();
    load(
        config,
        StateDict::from_tensors(tensors),
        true,
        0,
        &Device::Cpu,
    )
    .unwrap()
    .0
}

#[test]
fn batch_norms_in_the_head_fold_into_the_engine() {
    for head in [
        "32,bn,relu,5",
        "32,relu,bn,5",
        "32,relu,dropout,bn,16,relu,bn,5,softmax",
        "32,relu,bn,bn,5",
        "32,bn,bn,relu,dropout=0.2,5",
        "32,relu,bn,dropout,5,bn",
    ] {
        let model = network(head);
        let x = Tensor::from_vec(
            random(2 * 3 * 32 * 40, 7, 1.0),
            (2, 3, 32, 40),
            &Device::Cpu,
        )
        .unwrap();
        let want = model.forward(&x, Mode::Eval).unwrap();
        let mut engine = FastVgg::from_model(&model, [2, 3, 32, 40], PlanOptions::default())
            .unwrap_or_else(|e| panic!("{head}: {e}"));
        let got = engine.forward(&x).unwrap();
        assert_close(&got, &want, 1e-4, 1e-4, head);
    }
}

#[test]
fn a_batch_norm_the_engine_cannot_fold_is_named() {
    for (head, layer) in [
        ("32,relu,bn,relu,5", "classifier.2"),
        ("32,relu,5,relu,bn", "classifier.4"),
    ] {
        let model = network(head);
        let err = match FastVgg::from_model(&model, [1, 3, 32, 32], PlanOptions::default()) {
            Ok(_) => panic!("{head} compiled"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(layer) && err.contains("--engine reference"),
            "{head}: {err}"
        );
    }
}
