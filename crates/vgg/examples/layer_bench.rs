//! Per-layer algorithm comparison on the vgg16 conv shapes (224×224 input, or `--input-hw`):
//! Winograd F(4,3) vs F(6,3) vs im2col in f32 vs the two int8 convolutions (direct im2col
//! with u8 inputs over the input's range, and Winograd F(2,3) with per-tile scales), measured round-robin so machine load affects all alike. `cargo run --release --example layer_bench -- --threads 2 --rounds 5 --batch 1`
//!
//! Each plan is one conv (+ fused pool where vgg16 has one) and a 1-output
//! classifier; the shared pool/classifier overhead is included in all columns.

use std::time::Instant;

use vgg::engine::quant::Int8Ranges;
use vgg::engine::{
    ConvChoice, FeatureOp, Linear, NetworkSpec, Plan, PlanOptions, Precision, WinogradVariant,
};

/// The largest input value `main` feeds the layers.
const INPUT_MAX: f32 = 0.6;

fn plan(
    c: usize,
    k: usize,
    hw: usize,
    pool: bool,
    batch: usize,
    (conv, precision): (ConvChoice, Precision),
) -> Plan {
    let mut features = vec![FeatureOp::Conv3x3 {
        in_channels: c,
        out_channels: k,
        weight: (0..k * c * 9)
            .map(|i| ((i % 17) as f32 - 8.0) * 0.01)
            .collect(),
        bias: vec![0.01; k],
        relu: true,
    }];
    if pool {
        features.push(FeatureOp::MaxPool2x2);
    }
    let lin = Linear {
        in_features: k,
        out_features: 1,
        weight: vec![0.1; k],
        bias: vec![0.0],
        relu: false,
    };
    let spec = NetworkSpec {
        features,
        pool: 1,
        int8: Some(Int8Ranges {
            convs: vec![Some(INPUT_MAX)],
            linears: vec![None],
        }),
        classifier: vec![lin],
    };
    Plan::with_options(
        spec,
        batch,
        c,
        hw,
        hw,
        PlanOptions {
            conv,
            precision,
            ..PlanOptions::default()
        },
    )
    .unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |k: &str, d: usize| {
        args.iter()
            .position(|a| a == k)
            .map_or(d, |i| args[i + 1].parse().unwrap())
    };
    let (threads, rounds, batch) = (get("--threads", 2), get("--rounds", 5), get("--batch", 1));
    let input_hw = get("--input-hw", 224);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .unwrap();
    let layers = [
        (3, 64, 224, false),
        (64, 64, 224, true),
        (64, 128, 112, false),
        (128, 128, 112, true),
        (128, 256, 56, false),
        (256, 256, 56, true),
        (256, 512, 28, false),
        (512, 512, 28, true),
        (512, 512, 14, false),
        (512, 512, 14, true),
    ];
    let f32 = |conv| (conv, Precision::F32);
    let algos = [
        ("F43", f32(ConvChoice::Winograd(WinogradVariant::F43))),
        ("F63", f32(ConvChoice::Winograd(WinogradVariant::F63))),
        ("im2col", f32(ConvChoice::Im2col)),
        ("int8 im2col", (ConvChoice::Im2col, Precision::Int8)),
        ("int8 F23", (ConvChoice::Auto, Precision::Int8)),
    ];
    println!(
        "layer (c->k @hw, pool)      F43 ms   F63 ms  im2col ms  int8 im2col ms  int8 F23 ms   (median of {rounds}, batch {batch}, {threads} threads)"
    );
    for (c, k, hw, pool) in layers {
        let hw = hw * input_hw / 224;
        let mut plans: Vec<Plan> = algos
            .iter()
            .map(|a| plan(c, k, hw, pool, batch, a.1))
            .collect();
        let x: Vec<f32> = (0..batch * c * hw * hw)
            .map(|i| ((i % 13) as f32 - 6.0) * 0.1)
            .collect();
        let mut y = vec![0.0; batch];
        let mut times = vec![Vec::new(); algos.len()];
        for _ in 0..=rounds {
            for (p, t) in plans.iter_mut().zip(&mut times) {
                let s = Instant::now();
                p.run(&x, &mut y).unwrap();
                t.push(s.elapsed().as_secs_f64() * 1e3);
            }
        }
        let med = |t: &mut Vec<f64>| {
            t.remove(0); // warm-up
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        };
        let m: Vec<f64> = times.iter_mut().map(med).collect();
        println!(
            "{c:>3}->{k:<3} @{hw:<3} pool={pool:<5}       {:7.2}  {:7.2}  {:8.2}  {:13.2}  {:10.2}",
            m[0], m[1], m[2], m[3], m[4]
        );
    }
}
