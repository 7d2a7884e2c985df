//! `vgg bench`: latency and throughput of one forward pass, on the fast engine or the
//! reference path (the module-by-module model on our CPU ops), or of one training step
//! (`--train`). Compare with PyTorch via `scripts/bench_compare.py`.

use candle_core::Device;
use clap::{Args, ValueEnum};

use crate::cli::args::parse_shape;
use crate::cli::model::{self, EngineFlag, ModelFlags};
use vgg::bench::{Workload, bench};
use vgg::engine::{ConvChoice, EngineError, PlanOptions, Precision, WinogradVariant};
use vgg::error::{Error, Result};
use vgg::model::footprint::Work;

/// Convolution algorithms of the fast engine, for ablations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Conv {
    /// Winograd F(4×4,3×3) (F(2×2,3×3) in bf16 and int8), im2col for the 3-channel first layer
    Auto,
    /// Winograd F(2×2,3×3)
    F23,
    /// Winograd F(4×4,3×3) (refused with --precision int8)
    F43,
    /// Winograd F(6×6,3×3) (refused with --precision int8)
    F63,
    /// im2col + GEMM everywhere (the direct-convolution baseline; in int8 the direct int8
    /// convolution)
    Im2col,
}

impl BenchArgs {
    fn plan_options(&self) -> PlanOptions {
        PlanOptions {
            conv: match self.conv {
                Conv::Auto => ConvChoice::Auto,
                Conv::F23 => ConvChoice::Winograd(WinogradVariant::F23),
                Conv::F43 => ConvChoice::Winograd(WinogradVariant::F43),
                Conv::F63 => ConvChoice::Winograd(WinogradVariant::F63),
                Conv::Im2col => ConvChoice::Im2col,
            },
            fuse_pool: !self.no_fuse,
            fold_pool: !self.no_fold,
            ..PlanOptions::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub source: ModelFlags,
    /// Input shape NxCxHxW (CxHxW means batch 1)
    #[arg(long, default_value = "1x3x224x224", allow_hyphen_values = true)]
    pub input: String,
    /// Timed runs (after 2 untimed warm-up runs)
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    #[arg(long, value_enum, default_value_t = EngineFlag::Fast)]
    pub engine: EngineFlag,
    /// Number format of the fast engine's products: f32, bf16 (bf16 operands, f32
    /// accumulation; AVX512_BF16 where the CPU has it, a slower exact emulation elsewhere),
    /// or int8 (calibrated on the benchmark's random input: the real work, for timing only)
    #[arg(long, default_value = "f32", value_parser = model::parse_precision)]
    pub precision: Precision,
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
    /// SGD with momentum) as `vgg train` runs it: on the compiled training plan where it
    /// covers the network, through autograd otherwise
    #[arg(long, conflicts_with_all = ["engine", "precision", "describe", "conv", "no_fuse", "no_fold"])]
    pub train: bool,
    /// Print one JSON object instead of the line: engine, input, threads, median_ms, min_ms,
    /// images_per_s, gflops (a plan asked for with --describe goes to stderr)
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &BenchArgs) -> Result<String> {
    let shape = match *parse_shape(&args.input)?.as_slice() {
        [c, h, w] => [1, c, h, w],
        [n, c, h, w] => [n, c, h, w],
        _ => unreachable!("parse_shape returns 3 or 4 sizes"),
    };
    if args.iters == 0 {
        return Err(Error::BadArgument("--iters must be at least 1".into()));
    }
    let shapes_plan = args.conv != Conv::Auto || args.no_fuse || args.no_fold;
    if args.engine == EngineFlag::Reference && shapes_plan {
        return Err(Error::BadArgument(
            "--conv, --no-fuse and --no-fold shape the fast engine's plan; --engine reference \
             has none"
                .into(),
        ));
    }
    let options = PlanOptions {
        precision: args.precision,
        ..args.plan_options()
    };
    if let Err(EngineError::InvalidSpec(why)) = options.check() {
        return Err(Error::BadArgument(format!("--conv: {why}")));
    }
    let source = args.source.source()?;
    let work = if args.train {
        Work::Training
    } else {
        Work::Inference
    };
    source.check_work(shape, work, || format!("--input {}: ", args.input))?;
    let (model, _) = source.open(&Device::Cpu)?;
    let (name, workload) = if args.train {
        ("train", Workload::TrainingStep)
    } else {
        let engine = model::engine(args.engine, args.precision)?;
        (
            engine.name(),
            Workload::Forward(engine, args.plan_options()),
        )
    };
    let mut text = String::new();
    let timing = bench(model, shape, workload, args.iters, &mut |plan| {
        if args.describe {
            text += &plan;
        }
    })?;
    let (median, min) = (timing.median(), timing.min());
    let threads = rayon::current_num_threads();
    if args.json {
        // Only the object on stdout, for scripts; a plan asked for goes to stderr.
        eprint!("{text}");
        let json = serde_json::json!({
            "engine": name, "input": shape, "threads": threads,
            "median_ms": median * 1e3, "min_ms": min * 1e3,
            "images_per_s": timing.images_per_s(), "gflops": timing.gflops(),
        });
        return Ok(format!("{json}\n"));
    }
    text += &format!(
        "{name} {shape:?} threads {threads}: median {:.1} ms, min {:.1} ms, {:.2} images/s, {:.0} GFLOP/s\n",
        median * 1e3,
        min * 1e3,
        timing.images_per_s(),
        timing.gflops(),
    );
    Ok(text)
}
