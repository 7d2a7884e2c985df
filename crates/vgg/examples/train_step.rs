//! Times one optimisation step (forward in training mode, cross-entropy, backward, SGD) of a
//! VGG on random data, then each layer's forward and backward on its own:
//!
//! `cargo run --release --example train_step -- vgg11_bn 64 32 [steps]`
//!
//! `small` instead of an arch name is a small custom net (`32,M,64,M,128,128,M,256,256,M`
//! with batch norm, pool 1, hidden 256).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor, Var};
use vgg::train::optim::{Sgd, SgdConfig};
use vgg::{ConfigOverrides, Mode, Vgg, VggConfig};

fn config(arch: &str) -> vgg::Result<VggConfig> {
    let (base, hidden, pool) = if arch == "small" {
        let cfg = "32,M,64,M,128,128,M,256,256,M";
        (VggConfig::custom(cfg, true)?, Some(256), Some(1))
    } else {
        (VggConfig::from_arch(arch.parse()?), None, None)
    };
    base.with_overrides(&ConfigOverrides {
        hidden,
        pool,
        num_classes: Some(10),
        dropout: Some(0.5),
        ..ConfigOverrides::default()
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() -> vgg::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arch = args.get(1).map_or("vgg11_bn", String::as_str);
    let batch: usize = args.get(2).map_or(64, |s| s.parse().unwrap());
    let hw: usize = args.get(3).map_or(32, |s| s.parse().unwrap());
    let steps: usize = args.get(4).map_or(5, |s| s.parse().unwrap());
    let device = Device::Cpu;
    let model = Vgg::new(config(arch)?, 0, &device)?;
    let params = model.parameters().into_iter().map(|(_, v)| v).collect();
    let sgd_config = SgdConfig {
        lr: 0.01,
        momentum: 0.9,
        dampening: 0.0,
        weight_decay: 5e-4,
        nesterov: false,
    };
    let mut sgd = Sgd::new(params, sgd_config);
    let x = Tensor::randn(0f32, 1.0, (batch, 3, hw, hw), &device)?;
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % 10).collect();
    let y = Tensor::from_vec(labels, batch, &device)?;
    for step in 0..=steps {
        let t = Instant::now();
        let logits = model.forward(&x, Mode::Train)?;
        let t_fwd = t.elapsed();
        let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
        let grads = loss.backward()?;
        let t_bwd = t.elapsed();
        sgd.step(&grads)?;
        let total = t.elapsed();
        if step > 0 {
            println!(
                "fwd {:.0} ms, +bwd {:.0} ms, total {:.0} ms, {:.1} img/s",
                ms(t_fwd),
                ms(t_bwd),
                ms(total),
                batch as f64 / total.as_secs_f64()
            );
        }
    }
    per_layer(&model, &x)
}

/// Forward and backward time of each layer alone (its input a fresh variable, the
/// backward seeded with ones), then the totals per layer kind.
fn per_layer(model: &Vgg, x: &Tensor) -> vgg::Result<()> {
    let mut by_kind: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    let mut x = x.clone();
    println!(
        "{:<14} {:>16} {:>9} {:>9}",
        "layer", "input", "fwd ms", "bwd ms"
    );
    for (i, layer) in model.layers().iter().enumerate() {
        let input = Var::from_tensor(&x)?;
        let t = Instant::now();
        let out = model.forward_range(&input, Mode::Train, i..i + 1)?;
        let fwd = ms(t.elapsed());
        let t = Instant::now();
        out.backward()?;
        let bwd = ms(t.elapsed());
        println!(
            "{:<14} {:>16} {fwd:>9.1} {bwd:>9.1}",
            layer.path(),
            format!("{:?}", x.dims())
        );
        let kind = by_kind.entry(layer.kind.class_name()).or_default();
        kind.0 += fwd;
        kind.1 += bwd;
        x = out.detach();
    }
    for (kind, (fwd, bwd)) in by_kind {
        println!("{kind:<18} fwd {fwd:>7.1} ms  bwd {bwd:>7.1} ms");
    }
    Ok(())
}
