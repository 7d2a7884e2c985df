//! `vgg train`: train from scratch, fine-tune a checkpoint, or resume a run.

use std::path::{Path, PathBuf};

use candle_core::Device;
use clap::{Args, ValueEnum};

use crate::cli::args::Part;
use crate::cli::images::PreprocessArgs;
use crate::cli::model::ModelSource;
use crate::cli::progress::TrainingBar;
use vgg::data::cifar;
use vgg::error::{Error, Result};
use vgg::model::Vgg;
use vgg::model::layers::{LayerKind, LayerSpec};
use vgg::train::schedule::{LrSchedule, Schedule};
use vgg::train::trainer::{BEST, LAST, OptimizerOptions, TrainOptions, Trainer};
use vgg::weights::{self, load::load};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OptimizerKind {
    Sgd,
    Adamw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScheduleKind {
    /// Divide by --gamma⁻¹ when validation top-1 stalls for --patience epochs (the paper)
    Plateau,
    Cosine,
    Step,
    Multistep,
    Constant,
}

/// What a resumed run takes from its checkpoint and so cannot be changed.
const RUN_FLAGS: [&str; 11] = [
    "data",
    "weights",
    "arch",
    "cfg",
    "num_classes",
    "seed",
    "batch_size",
    "lr",
    "optimizer",
    "schedule",
    "freeze",
];

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub source: ModelSource,
    /// CIFAR-10/100 binary folder, ImageFolder with train/ and val/, or ImageFolder + --val-split
    #[arg(long, value_name = "DIR", required_unless_present = "resume")]
    pub data: Option<PathBuf>,
    /// Hold out this fraction of each class of an ImageFolder for validation
    #[arg(long, value_name = "F")]
    pub val_split: Option<f64>,
    /// Run directory: checkpoints, metrics and curves
    #[arg(long, value_name = "DIR", required_unless_present = "resume")]
    pub out: Option<PathBuf>,
    /// Continue the run in DIR from its last checkpoint, with its own options (and --epochs)
    #[arg(long, value_name = "DIR", conflicts_with_all = RUN_FLAGS)]
    pub resume: Option<PathBuf>,
    /// Epochs in all [default: 30; a resumed run keeps its own unless given]
    #[arg(long, value_name = "E")]
    pub epochs: Option<usize>,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[arg(long, value_enum, default_value_t = OptimizerKind::Sgd)]
    pub optimizer: OptimizerKind,
    /// Base learning rate
    #[arg(long, default_value_t = 0.01)]
    pub lr: f64,
    /// SGD momentum
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// SGD dampening
    #[arg(long, default_value_t = 0.0)]
    pub dampening: f64,
    /// Nesterov momentum (SGD)
    #[arg(long)]
    pub nesterov: bool,
    /// Weight decay [default: 5e-4 for SGD (the paper), 1e-2 for AdamW (PyTorch's)]
    #[arg(long, value_name = "WD")]
    pub weight_decay: Option<f64>,
    #[arg(long, value_enum, default_value_t = ScheduleKind::Plateau)]
    pub schedule: ScheduleKind,
    /// Rate multiplier of the step, multistep and plateau schedules
    #[arg(long, default_value_t = 0.1)]
    pub gamma: f64,
    /// Epochs between steps (step schedule)
    #[arg(long, default_value_t = 30)]
    pub step_size: usize,
    /// Epochs at which to multiply by --gamma (multistep), e.g. 30,60
    #[arg(long, value_name = "E,E", value_delimiter = ',')]
    pub milestones: Vec<usize>,
    /// Epochs without improvement before the plateau schedule lowers the rate
    #[arg(long, default_value_t = 3)]
    pub patience: usize,
    /// Lowest rate of the cosine schedule
    #[arg(long, default_value_t = 0.0)]
    pub min_lr: f64,
    /// Linear warm-up from lr/10 over this many epochs, before the schedule
    #[arg(long, default_value_t = 0)]
    pub warmup_epochs: usize,
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f64,
    /// Clip the gradients' joint L2 norm to this value
    #[arg(long, value_name = "NORM")]
    pub clip_grad_norm: Option<f64>,
    /// Train only the other part (features: fine-tune the classifier alone)
    #[arg(long, value_enum)]
    pub freeze: Option<Part>,
    /// auto (pad-crop for crops ≤ 64 pixels, else resized-crop), resized-crop, pad-crop, none
    #[arg(long, default_value = "auto")]
    pub augment: String,
    /// No random horizontal flips (for digits, text, anything mirroring changes)
    #[arg(long)]
    pub no_flip: bool,
    #[command(flatten)]
    pub preprocess: PreprocessArgs,
}

const DEFAULT_EPOCHS: usize = 30;

pub fn run(args: &TrainArgs) -> Result<String> {
    vgg::train::memory::keep_freed_memory();
    let device = Device::Cpu;
    let mut trainer = match &args.resume {
        Some(dir) => Trainer::resume(dir, args.epochs, &device)?,
        None => {
            let (data, out) = (
                args.data.as_deref().expect("clap requires --data"),
                args.out.as_deref().expect("clap requires --out"),
            );
            let options = options(args, data)?;
            Trainer::new(model(&args.source, &device)?, options, out)?
        }
    };
    let (done, planned) = (
        trainer.run_state().epoch,
        trainer.run_state().options.epochs,
    );
    if done >= planned {
        return Ok(format!(
            "nothing to do: the run has trained {done} of {planned} epochs; give --epochs N (more \
             than {done}) to continue it\n"
        ));
    }
    trainer.run(&TrainingBar::default())?;
    let run = trainer.run_state();
    let out = args
        .resume
        .as_deref()
        .or(args.out.as_deref())
        .unwrap_or(Path::new("."));
    // The epoch best.safetensors holds: the first to reach the highest validation top-1.
    let best = run
        .history
        .iter()
        .reduce(|best, m| if m.val_top1 > best.val_top1 { m } else { best })
        .ok_or_else(|| Error::BadArgument("no epoch was trained".into()))?;
    Ok(format!(
        "best validation top-1 {:.2}% (top-5 {:.2}%) at epoch {}: {}\nlast: {}\nmetrics: {}\n",
        best.val_top1,
        best.val_top5,
        best.epoch,
        out.join(BEST).display(),
        out.join(LAST).display(),
        out.join("metrics.jsonl").display()
    ))
}

fn options(args: &TrainArgs, data: &Path) -> Result<TrainOptions> {
    let epochs = args.epochs.unwrap_or(DEFAULT_EPOCHS);
    let mut preprocess = args.preprocess.preprocess()?;
    let small = cifar::locate(data).is_some() && args.preprocess.crop.is_none();
    if small {
        preprocess.crop = 32;
    }
    if args.preprocess.resize.is_none() && preprocess.crop <= 64 {
        preprocess.resize = preprocess.crop; // small images: no resize margin, as for CIFAR
    }
    let weight_decay = args.weight_decay.unwrap_or(match args.optimizer {
        OptimizerKind::Sgd => 5e-4,
        OptimizerKind::Adamw => 1e-2,
    });
    let optimizer = match args.optimizer {
        OptimizerKind::Sgd => OptimizerOptions::Sgd {
            momentum: args.momentum,
            dampening: args.dampening,
            weight_decay,
            nesterov: args.nesterov,
        },
        OptimizerKind::Adamw => OptimizerOptions::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        },
    };
    let schedule = match args.schedule {
        ScheduleKind::Plateau | ScheduleKind::Constant => Schedule::Constant,
        ScheduleKind::Cosine => Schedule::Cosine {
            t_max: epochs.saturating_sub(args.warmup_epochs).max(1),
            eta_min: args.min_lr,
        },
        ScheduleKind::Step => Schedule::Step {
            step_size: args.step_size,
            gamma: args.gamma,
        },
        ScheduleKind::Multistep => Schedule::MultiStep {
            milestones: args.milestones.clone(),
            gamma: args.gamma,
        },
    };
    Ok(TrainOptions {
        data: data.to_path_buf(),
        val_split: args.val_split,
        epochs,
        batch_size: args.batch_size,
        optimizer,
        schedule: LrSchedule {
            base: args.lr,
            schedule,
            warmup: (args.warmup_epochs > 0).then_some((args.warmup_epochs, 0.1)),
        },
        plateau: (args.schedule == ScheduleKind::Plateau).then_some((args.gamma, args.patience)),
        label_smoothing: args.label_smoothing,
        clip_grad_norm: args.clip_grad_norm,
        seed: args.source.seed,
        freeze: args.freeze.map(Into::into),
        augment: args.augment.clone(),
        flip: !args.no_flip,
        preprocess,
    })
}

/// A fresh model, or one initialised from `--weights` for fine-tuning: when the class count
/// differs, the last linear layer keeps its fresh initialisation; anything else that does
/// not fit is an error (or skipped with --non-strict).
fn model(source: &ModelSource, device: &Device) -> Result<Vgg> {
    let Some(path) = &source.weights else {
        return Ok(source.build(device)?.0);
    };
    let mut state = weights::read(path)?;
    let config = source.config_for(&state.shapes())?;
    let layers = vgg::model::layers::build_layers(&config);
    let last = layers
        .iter()
        .rev()
        .find(|l| matches!(l.kind, LayerKind::Linear { .. }))
        .map(LayerSpec::path);
    let replaced: Vec<String> = match last {
        Some(last) => state
            .tensors
            .iter()
            .filter(|(key, t)| {
                key.starts_with(&format!("{last}.")) && t.dim(0).ok() != Some(config.num_classes)
            })
            .map(|(key, _)| key.clone())
            .collect(),
        None => Vec::new(),
    };
    state.tensors.retain(|(key, _)| !replaced.contains(key));
    let (model, report) = load(config, state, false, source.seed, device)?;
    let unexplained = report.missing.iter().any(|k| !replaced.contains(k))
        || !report.unexpected.is_empty()
        || !report.mismatched.is_empty();
    if unexplained && !source.non_strict {
        return Err(Error::mismatch(report));
    }
    if !replaced.is_empty() {
        eprintln!(
            "fine-tuning: {} re-initialised for {} classes",
            replaced.join(", "),
            model.config().num_classes
        );
    }
    Ok(model)
}
