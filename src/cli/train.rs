//! `vgg train`: train from scratch, fine-tune a checkpoint, or resume a run.

use std::path::{Path, PathBuf};

use candle_core::Device;
use clap::{Args, ValueEnum};

use crate::cli::args::Part;
use crate::cli::images::PreprocessArgs;
use crate::cli::model::ModelFlags;
use crate::cli::progress::Bar;
use vgg::error::{Error, Result};
use vgg::model::Vgg;
use vgg::train::request::{
    OptimizerKind as Optimizer, ScheduleKind as Schedule, TrainRequest, defaults,
};
use vgg::train::trainer::{BEST, LAST, Trainer};

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
    pub source: ModelFlags,
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
    /// Replace the files a run writes (checkpoints, metrics, curves) when --out already holds
    /// some: without it, a new run refuses to touch them
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    /// Epochs in all [default: 30; a resumed run keeps its own unless given]
    #[arg(long, value_name = "E")]
    pub epochs: Option<usize>,
    #[arg(long, default_value_t = defaults::BATCH_SIZE)]
    pub batch_size: usize,
    #[arg(long, value_enum, default_value_t = OptimizerKind::Sgd)]
    pub optimizer: OptimizerKind,
    /// Base learning rate
    #[arg(long, default_value_t = defaults::LR)]
    pub lr: f64,
    /// SGD momentum
    #[arg(long, default_value_t = defaults::MOMENTUM)]
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
    #[arg(long, default_value_t = defaults::GAMMA)]
    pub gamma: f64,
    /// Epochs between steps (step schedule)
    #[arg(long, default_value_t = defaults::STEP_SIZE)]
    pub step_size: usize,
    /// Epochs at which to multiply by --gamma (multistep), e.g. 30,60
    #[arg(long, value_name = "E,E", value_delimiter = ',')]
    pub milestones: Vec<usize>,
    /// Epochs without improvement before the plateau schedule lowers the rate
    #[arg(long, default_value_t = defaults::PATIENCE)]
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
            let options = request(args, data)?.options()?;
            // Known without reading weights: refused before the model is initialised.
            if let Ok(config) = args.source.source()?.config(None) {
                vgg::train::trainer::check_run(&options, &config)?;
            }
            Trainer::new(model(&args.source, &device)?, options, out, args.force)?
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
    trainer.run(&Bar::default())?;
    let out = args
        .resume
        .as_deref()
        .or(args.out.as_deref())
        .unwrap_or(Path::new("."));
    let best = (trainer.run_state().best_epoch())
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

/// The run the flags ask for.
fn request(args: &TrainArgs, data: &Path) -> Result<TrainRequest> {
    Ok(TrainRequest {
        val_split: args.val_split,
        epochs: args.epochs.unwrap_or(defaults::EPOCHS),
        batch_size: args.batch_size,
        optimizer: match args.optimizer {
            OptimizerKind::Sgd => Optimizer::Sgd,
            OptimizerKind::Adamw => Optimizer::AdamW,
        },
        lr: args.lr,
        momentum: args.momentum,
        dampening: args.dampening,
        nesterov: args.nesterov,
        weight_decay: args.weight_decay,
        schedule: match args.schedule {
            ScheduleKind::Plateau => Schedule::Plateau,
            ScheduleKind::Cosine => Schedule::Cosine,
            ScheduleKind::Step => Schedule::Step,
            ScheduleKind::Multistep => Schedule::MultiStep,
            ScheduleKind::Constant => Schedule::Constant,
        },
        gamma: args.gamma,
        step_size: args.step_size,
        milestones: args.milestones.clone(),
        patience: args.patience,
        min_lr: args.min_lr,
        warmup_epochs: args.warmup_epochs,
        label_smoothing: args.label_smoothing,
        clip_grad_norm: args.clip_grad_norm,
        freeze: args.freeze.map(Into::into),
        augment: args.augment.clone(),
        flip: !args.no_flip,
        // Resize and crop left unset are the library's to choose from the data.
        preprocess: args.preprocess.preprocess()?,
        resize: args.preprocess.resize,
        crop: args.preprocess.crop,
        seed: args.source.seed,
        ..TrainRequest::new(data)
    })
}

/// A fresh model, or one initialised from `--weights` for fine-tuning (the library says
/// which head tensors it re-initialised).
fn model(flags: &ModelFlags, device: &Device) -> Result<Vgg> {
    let start = flags.source()?.open_for_fine_tuning(device)?;
    if !start.reinitialised.is_empty() {
        eprintln!(
            "fine-tuning: {} re-initialised for {} classes",
            start.reinitialised.join(", "),
            start.model.config().num_classes()
        );
    }
    Ok(start.model)
}
