//! `vgg bench`: latency and throughput of one forward pass, on the fast engine or the
//! reference path (the module-by-module model on our CPU ops), or of one training step (`--train`). Compare with PyTorch via
//! `scripts/bench_compare.py`.

use std::time::Instant;

use candle_core::{Device, Tensor};
use clap::{Args, ValueEnum};

use crate::cli::args::parse_shape;
use crate::cli::model::ModelSource;
use vgg::engine::{ConvChoice, PlanOptions, WinogradVariant};
use vgg::error::{Error, Result};
use vgg::fast::FastVgg;
use vgg::model::{Mode, Vgg};
use vgg::summary::Summary;
use vgg::train::loss::cross_entropy;
use vgg::train::optim::{Sgd, SgdConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// Winograd convolutions, fused layers, folded batch norm and pooling
    Fast,
    /// The module-by-module model: our CPU ops (src/ops) on candle tensors, as training runs them
    Reference,
}

/// Convolution algorithms of the fast engine, for ablations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Conv {
    /// Winograd F(4×4,3×3), im2col for the 3-channel first layer
    Auto,
    /// Winograd F(4×4,3×3)
    F43,
    /// Winograd F(6×6,3×3)
    F63,
    /// im2col + GEMM everywhere (the direct-convolution baseline)
    Im2col,
}

impl BenchArgs {
    fn plan_options(&self) -> PlanOptions {
        PlanOptions {
            conv: match self.conv {
                Conv::Auto => ConvChoice::Auto,
                Conv::F43 => ConvChoice::Winograd(WinogradVariant::F43),
                Conv::F63 => ConvChoice::Winograd(WinogradVariant::F63),
                Conv::Im2col => ConvChoice::Im2col,
            },
            fuse_pool: !self.no_fuse,
            fold_pool: !self.no_fold,
        }
    }
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub source: ModelSource,
    /// Input shape NxCxHxW (CxHxW means batch 1)
    #[arg(long, default_value = "1x3x224x224", allow_hyphen_values = true)]
    pub input: String,
    /// Timed runs (after 2 untimed warm-up runs)
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    #[arg(long, value_enum, default_value_t = Engine::Fast)]
    pub engine: Engine,
    /// Print the per-layer plan of the fast engine
    #[arg(long)]
    pub describe: bool,
    /// Ablation: convolution algorithm of the fast engine
    #[arg(long, value_enum, default_value_t = Conv::Auto)]
    pub conv: Conv,
    /// Ablation: run 2×2 max-pools as a separate pass instead of fused into the convolution
    #[arg(long)]
    pub no_fuse: bool,
    /// Ablation: compute the adaptive pool instead of folding it into fc6
    #[arg(long)]
    pub no_fold: bool,
    /// Time one optimisation step instead (training-mode forward, cross-entropy, backward,
    /// SGD with momentum) on the autograd path, as `vgg train` runs it
    #[arg(long, conflicts_with_all = ["engine", "describe", "conv", "no_fuse", "no_fold"])]
    pub train: bool,
    /// End with one JSON line: median_ms, min_ms, images_per_s, gflops
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &BenchArgs) -> Result<String> {
    if args.iters == 0 {
        return Err(Error::BadArgument("--iters must be at least 1".into()));
    }
    let shape = match *parse_shape(&args.input)?.as_slice() {
        [c, h, w] => [1, c, h, w],
        [n, c, h, w] => [n, c, h, w],
        _ => unreachable!("parse_shape returns 3 or 4 sizes"),
    };
    let (model, _) = args.source.build(&Device::Cpu)?;
    let macs = Summary::new(
        model.config(),
        shape[0],
        [shape[1], shape[2], shape[3]],
        &[],
    )?
    .total_macs();
    let x = Tensor::randn(0f32, 1.0, shape.as_slice(), &Device::Cpu)?;
    let mut text = String::new();
    let (name, work) = if args.train {
        ("train", 3 * macs)
    } else {
        (engine_name(args.engine), macs)
    };
    let times = match args.engine {
        _ if args.train => time_training(&model, &x, args.iters)?,
        Engine::Reference => time(args.iters, || model.forward(&x, Mode::Eval).map(drop))?,
        Engine::Fast => {
            let mut fast = FastVgg::from_model(&model, shape, args.plan_options())?;
            drop(model);
            if args.describe {
                text += &fast.describe();
            }
            let input = x.flatten_all()?.to_vec1::<f32>()?;
            time(args.iters, || fast.forward_slice(&input).map(drop))?
        }
    };
    let median = percentile(&times, 0.5);
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);
    let images_per_s = shape[0] as f64 / median;
    let gflops = 2.0 * work as f64 / median / 1e9;
    text += &format!(
        "{name} {:?} threads {}: median {:.1} ms, min {:.1} ms, {images_per_s:.2} images/s, {gflops:.0} GFLOP/s\n",
        shape,
        rayon::current_num_threads(),
        median * 1e3,
        min * 1e3
    );
    if args.json {
        text += &serde_json::json!({
            "engine": name, "input": shape, "threads": rayon::current_num_threads(),
            "median_ms": median * 1e3, "min_ms": min * 1e3, "images_per_s": images_per_s, "gflops": gflops,
        })
        .to_string();
        text.push('\n');
    }
    Ok(text)
}

fn engine_name(engine: Engine) -> &'static str {
    match engine {
        Engine::Fast => "fast",
        Engine::Reference => "reference",
    }
}

/// Seconds per optimisation step on random labels (the backward pass costs about twice the
/// forward, hence 3× the forward's work in GFLOP/s).
fn time_training(model: &Vgg, x: &Tensor, iters: usize) -> Result<Vec<f64>> {
    vgg::train::memory::keep_freed_memory();
    let classes = model.config().num_classes as u32;
    let labels: Vec<u32> = (0..x.dim(0)? as u32).map(|i| i % classes).collect();
    let y = Tensor::from_vec(labels, x.dim(0)?, x.device())?;
    let params = model.parameters().into_iter().map(|(_, v)| v).collect();
    let config = SgdConfig {
        lr: 1e-3,
        momentum: 0.9,
        dampening: 0.0,
        weight_decay: 5e-4,
        nesterov: false,
    };
    let mut sgd = Sgd::new(params, config);
    time(iters, || {
        let loss = cross_entropy(&model.forward(x, Mode::Train)?, &y, 0.0)?;
        sgd.step(&loss.backward()?)
    })
}

/// Seconds per run over `iters` timed runs after two warm-up runs.
fn time(iters: usize, mut run: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    for _ in 0..2 {
        run()?;
    }
    (0..iters)
        .map(|_| {
            let start = Instant::now();
            run()?;
            Ok(start.elapsed().as_secs_f64())
        })
        .collect()
}

fn percentile(times: &[f64], q: f64) -> f64 {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
