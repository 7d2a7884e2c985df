//! The engine as a whole on the emulated CPU: a small VGG compiled in bf16 and in int8 (both
//! int8 convolutions) must stay as close to the f32 plan as the test suite's bounds allow
//! (`tests/engine.rs`: 1.5e-2 for bf16, 8e-2 and 5e-2 for int8 on VGG16's logits). On a CPU
//! with AVX512_BF16 and AVX512_VNNI these plans run `vdpbf16ps` and `vpdpbusd`, and int8 gets
//! 8-bit convolution weights (7-bit on the AVX2 machines the test suite usually runs on).

use std::fmt::Write;

use vgg::engine::quant::Calibrator;
use vgg::engine::simd::Isa;
use vgg::engine::{ConvChoice, FeatureOp, Linear, NetworkSpec, Plan, PlanOptions, Precision};

use crate::Report;

const BATCH: usize = 2;
const SIDE: usize = 32;
const CLASSES: usize = 10;

/// Uniform values with standard deviation `scale`, from a 64-bit LCG.
fn random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale * 3f32.sqrt()
        })
        .collect()
}

/// conv 16, conv 32, pool, conv 64, conv 64, pool, conv 128, pool; then 512 → 64 → 64 → 10,
/// He-scaled weights.
fn network() -> NetworkSpec {
    let mut features = Vec::new();
    let mut c = 3;
    for (i, item) in [16, 32, 0, 64, 64, 0, 128, 0].into_iter().enumerate() {
        if item == 0 {
            features.push(FeatureOp::MaxPool2x2);
            continue;
        }
        features.push(FeatureOp::Conv3x3 {
            in_channels: c,
            out_channels: item,
            weight: random(item * c * 9, i as u64, (2.0 / (9.0 * c as f32)).sqrt()),
            bias: random(item, 100 + i as u64, 0.05),
            relu: true,
        });
        c = item;
    }
    let sizes = [c * 2 * 2, 64, 64, CLASSES];
    let classifier = sizes
        .windows(2)
        .enumerate()
        .map(|(i, io)| Linear {
            in_features: io[0],
            out_features: io[1],
            weight: random(io[0] * io[1], 200 + i as u64, (2.0 / io[0] as f32).sqrt()),
            bias: random(io[1], 300 + i as u64, 0.05),
            relu: i + 2 < sizes.len(),
        })
        .collect();
    NetworkSpec {
        features,
        pool: 2,
        int8: None,
        classifier,
    }
}

fn logits(spec: &NetworkSpec, options: PlanOptions, input: &[f32]) -> (Vec<f32>, String) {
    let mut plan = Plan::with_options(spec.clone(), BATCH, 3, SIDE, SIDE, options).unwrap();
    let mut out = vec![0.0; BATCH * CLASSES];
    plan.run(input, &mut out).unwrap();
    (out, plan.describe())
}

/// The first line of a plan's description after its instruction set: which products it runs.
fn products(description: &str) -> &str {
    let first = description.lines().next().unwrap_or_default();
    first.split("precision: ").nth(1).unwrap_or(first)
}

/// max |a − b| / max |b|.
fn relative_error(a: &[f32], b: &[f32]) -> f32 {
    let top = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / top
}

/// Reports how far `got` is from `want`, and holds it within `(1e-5, bound)` (not near 0:
/// the plan must have run in the lower precision) and to the products this CPU has.
fn compare(label: &str, got: &[f32], want: &[f32], bound: f32, description: &str, hardware: bool) {
    let e = relative_error(got, want);
    let products = products(description);
    let _ = writeln!(
        Report,
        "  {label} logits: relative error {e:.2e} ({products})"
    );
    assert!(e > 1e-5 && e < bound, "{label}: {e}\n{description}");
    assert_eq!(!products.contains("emulated"), hardware, "{description}");
}

/// Runs the check; panics (with the plan's description) on a result out of bounds.
pub fn precisions_stay_close_to_f32() {
    let spec = network();
    let batches: Vec<Vec<f32>> = (0..3)
        .map(|s| random(BATCH * 3 * SIDE * SIDE, 40 + s, 1.0))
        .collect();
    let (want, f32_plan) = logits(&spec, PlanOptions::default(), &batches[1]);
    let _ = writeln!(Report, "{}", f32_plan.lines().next().unwrap_or_default());
    let isa = Isa::detect();
    let bf16 = PlanOptions {
        precision: Precision::Bf16,
        ..PlanOptions::default()
    };
    let (got, description) = logits(&spec, bf16, &batches[1]);
    compare("bf16", &got, &want, 1.5e-2, &description, isa.has_bf16());

    let mut calibrator = Calibrator::new(spec.clone(), BATCH, 3, SIDE, SIDE).unwrap();
    for x in &batches {
        calibrator.observe(x).unwrap();
    }
    for x in &batches {
        calibrator.measure(x).unwrap();
    }
    let mut int8 = spec;
    int8.int8 = Some(calibrator.ranges());
    for (conv, bound) in [(ConvChoice::Auto, 8e-2), (ConvChoice::Im2col, 5e-2)] {
        let options = PlanOptions {
            precision: Precision::Int8,
            conv,
            ..PlanOptions::default()
        };
        let (got, description) = logits(&int8, options, &batches[1]);
        let label = format!("int8 ({conv:?} convolutions)");
        compare(&label, &got, &want, bound, &description, isa.has_vnni());
    }
}
