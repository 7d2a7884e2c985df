//! How far bf16 or int8 moves the fast engine's output from f32, on all eight torchvision
//! architectures with random (torchvision-initialised) weights and random N(0, 1) inputs:
//! top-1 agreement with f32 and the relative logit error (max |low − f32| over the
//! image's logits, divided by the largest |f32| logit), its median and maximum. int8 is
//! calibrated first on 32 other N(0, 1) images (`vgg quantize`'s defaults otherwise).
//!
//! `cargo run --release --example precision_agreement -- [images] [size] [arch|all]
//! [bf16|int8]` (default 256 images at 224×224, every arch, bf16), printing a Markdown table.

use candle_core::Device;
use vgg::engine::{PlanOptions, Precision};
use vgg::fast::{FastOptions, FastVgg};
use vgg::progress::Silent;
use vgg::quantize::{CalibrationOptions, calibrate};
use vgg::weights::recorded::Int8Calibration;
use vgg::{Arch, Vgg, VggConfig};

const BATCH: usize = 8;
/// Images int8 is calibrated on (not among those compared).
const CALIBRATION_IMAGES: usize = 32;

/// N(0, 1) samples from a fixed-seed generator (Box–Muller on a 64-bit LCG), so every run
/// sees the same images.
struct Normal(u64);

impl Normal {
    fn uniform(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }

    fn sample(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
}

/// Per image: whether the top-1 classes agree, and the relative logit error.
fn compare(f32_logits: &[f32], low_logits: &[f32], classes: usize) -> Vec<(bool, f32)> {
    let argmax = |v: &[f32]| {
        v.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
    };
    f32_logits
        .chunks_exact(classes)
        .zip(low_logits.chunks_exact(classes))
        .map(|(a, b)| {
            let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
            let err = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            (argmax(a) == argmax(b), err / scale)
        })
        .collect()
}

fn main() -> vgg::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let images: usize = args.get(1).map_or(256, |s| s.parse().expect("images"));
    let size: usize = args.get(2).map_or(224, |s| s.parse().expect("size"));
    let batches = images.div_ceil(BATCH);
    println!(
        "{} N(0,1) images at {size}x{size}, weights from seed 0\n",
        batches * BATCH
    );
    let only = args.get(3).filter(|a| *a != "all");
    let precision =
        Precision::parse(args.get(4).map_or("bf16", String::as_str)).expect("precision");
    println!("{precision} against f32\n");
    println!(
        "| arch | top-1 agreement | median rel. logit error | max rel. logit error | layers in {precision} |"
    );
    println!("|---|---|---|---|---|");
    for arch in Arch::ALL
        .into_iter()
        .filter(|a| only.is_none_or(|o| o == a.name()))
    {
        let model = Vgg::new(VggConfig::from_arch(arch), 0, &Device::Cpu)?;
        let int8 = match precision {
            Precision::Int8 => Some(calibrated(&model, size)?),
            _ => None,
        };
        let layers = match &int8 {
            Some(c) => format!(
                "{} of {}",
                c.layers.iter().filter(|l| l.int8).count(),
                c.layers.len()
            ),
            None => "all but the stem".to_string(),
        };
        let results = agreement(&model, (size, batches), precision, int8)?;
        let agree = results.iter().filter(|(same, _)| *same).count();
        let mut errors: Vec<f32> = results.iter().map(|(_, e)| *e).collect();
        errors.sort_by(f32::total_cmp);
        println!(
            "| {} | {:.2}% ({agree}/{}) | {:.2e} | {:.2e} | {layers} |",
            arch.name(),
            100.0 * agree as f64 / results.len() as f64,
            results.len(),
            errors[errors.len() / 2],
            errors[errors.len() - 1],
        );
    }
    Ok(())
}

/// An int8 calibration of `model` on [`CALIBRATION_IMAGES`] N(0,1) images.
fn calibrated(model: &Vgg, size: usize) -> vgg::Result<Int8Calibration> {
    let mut normal = Normal(2);
    let images: Vec<Vec<f32>> = (0..CALIBRATION_IMAGES)
        .map(|_| (0..3 * size * size).map(|_| normal.sample()).collect())
        .collect();
    calibrate(
        model,
        &images,
        [size, size],
        CalibrationOptions::default(),
        &Silent,
    )
}

/// Per image of `batches` batches of N(0,1) images at `size`: whether `precision` gives
/// f32's top-1 class, and its relative logit error.
fn agreement(
    model: &Vgg,
    (size, batches): (usize, usize),
    precision: Precision,
    int8: Option<Int8Calibration>,
) -> vgg::Result<Vec<(bool, f32)>> {
    let shape = [BATCH, 3, size, size];
    let compile = |precision| {
        let options = FastOptions {
            plan: PlanOptions {
                precision,
                ..PlanOptions::default()
            },
            int8: int8.clone(),
        };
        FastVgg::from_model(model, shape, options)
    };
    let (mut exact, mut low) = (compile(Precision::F32)?, compile(precision)?);
    let mut results = Vec::new();
    let mut normal = Normal(1);
    for b in 0..batches {
        let x: Vec<f32> = (0..BATCH * 3 * size * size)
            .map(|_| normal.sample())
            .collect();
        let (want, got) = (exact.forward_slice(&x)?, low.forward_slice(&x)?);
        results.extend(compare(&want, &got, model.config().num_classes()));
        eprint!("\r{} {}/{batches}", model.config().name(), b + 1);
    }
    eprintln!();
    Ok(results)
}
