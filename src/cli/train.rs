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
use vgg::model::init::Init;
use vgg::open::ModelSource;
use vgg::train::init_from::{PAPER_CONV_LAYERS, init_from};
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

/// What a resumed run takes from its checkpoint and so cannot be changed: every option of
/// a run but `--epochs` (a flag given with `--resume` is refused, never ignored).
const RUN_FLAGS: [&str; 44] = [
    // The model and its weights.
    "arch",
    "weights",
    "non_strict",
    "seed",
    "cfg",
    "batch_norm",
    "hidden",
    "pool",
    "num_classes",
    "dropout",
    "head",
    "init",
    "init_from",
    "freeze",
    // The data and its preprocessing.
    "data",
    "val_split",
    "preset",
    "resize",
    "crop",
    "mean",
    "std",
    "exif_orientation",
    "augment",
    "no_flip",
    "scale",
    "scale_jitter",
    "color_shift",
    // The optimiser and its schedule.
    "batch_size",
    "optimizer",
    "lr",
    "momentum",
    "dampening",
    "nesterov",
    "weight_decay",
    "schedule",
    "gamma",
    "step_size",
    "milestones",
    "patience",
    "min_lr",
    "warmup_epochs",
    "label_smoothing",
    "clip_grad_norm",
    // Where it writes.
    "out",
];

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub source: ModelFlags,
    /// CIFAR-10/100 binary folder, ImageFolder with train/ and val/, or ImageFolder + --val-split
    #[arg(long, value_name = "DIR", required_unless_present = "resume")]
    pub data: Option<PathBuf>,
    /// Hold out this fraction of each class of an ImageFolder for validation
    #[arg(long, allow_negative_numbers = true, value_name = "F")]
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
    #[arg(long, allow_negative_numbers = true, default_value_t = defaults::LR)]
    pub lr: f64,
    /// SGD momentum
    #[arg(long, allow_negative_numbers = true, default_value_t = defaults::MOMENTUM)]
    pub momentum: f64,
    /// SGD dampening
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
    pub dampening: f64,
    /// Nesterov momentum (SGD)
    #[arg(long)]
    pub nesterov: bool,
    /// Weight decay [default: 5e-4 for SGD (the paper), 1e-2 for AdamW (PyTorch's)]
    #[arg(long, allow_negative_numbers = true, value_name = "WD")]
    pub weight_decay: Option<f64>,
    #[arg(long, value_enum, default_value_t = ScheduleKind::Plateau)]
    pub schedule: ScheduleKind,
    /// Rate multiplier of the step, multistep and plateau schedules
    #[arg(long, allow_negative_numbers = true, default_value_t = defaults::GAMMA)]
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
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
    pub min_lr: f64,
    /// Linear warm-up from lr/10 over this many epochs, before the schedule
    #[arg(long, default_value_t = 0)]
    pub warmup_epochs: usize,
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
    pub label_smoothing: f64,
    /// Clip the gradients' joint L2 norm to this value
    #[arg(long, allow_negative_numbers = true, value_name = "NORM")]
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
    /// The paper's scale jittering: each image's shorter side resized to a random S in
    /// [MIN, MAX], then a random --crop crop (e.g. 256,512 with 224 crops)
    #[arg(long, value_name = "MIN,MAX", value_parser = scale_range, conflicts_with_all = ["resume", "scale"])]
    pub scale_jitter: Option<(usize, usize)>,
    /// The paper's fixed-scale training: shorter side resized to S, then a random crop
    #[arg(long, value_name = "S", conflicts_with = "resume")]
    pub scale: Option<usize>,
    /// AlexNet's RGB colour shift along the training set's principal components, with σ
    /// of the per-image coefficients (the paper's: 0.1)
    #[arg(long, allow_negative_numbers = true, value_name = "SIGMA", num_args = 0..=1, default_missing_value = "0.1", conflicts_with = "resume")]
    pub color_shift: Option<f64>,
    /// Initialise from a trained shallower net, as the paper trains its deeper ones: its
    /// first four convolutions (matched by stage) and its linear layers are copied, the
    /// rest initialised fresh
    #[arg(long, value_name = "FILE", conflicts_with_all = ["resume", "weights"])]
    pub init_from: Option<PathBuf>,
    /// How a network trained from scratch starts: torchvision (Kaiming-normal convolutions,
    /// N(0, 0.01²) linear layers), pytorch (the modules' defaults, U(±1/√fan_in)) or glorot
    /// [default: pytorch, chosen by measurement; see the README]
    #[arg(long, value_name = "INIT", value_parser = parse_init, conflicts_with_all = ["resume", "weights"])]
    pub init: Option<Init>,
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
            let mut source = args.source.source()?;
            source.init = args.init.unwrap_or(defaults::FROM_SCRATCH_INIT);
            let mut model = model(&source, &device)?;
            if let Some(path) = &args.init_from {
                model = init_from_shallower(&model, path, args.source.seed, &device)?;
            }
            Trainer::new(model, options, out, args.force)?
        }
    };
    let (done, planned) = (
        trainer.run_state().epoch,
        trainer.run_state().options.epochs,
    );
    if done >= planned {
        let trained = match done > planned {
            true => format!("{done} epochs, more than --epochs {planned}"),
            false => format!("{done} of {planned} epochs"),
        };
        return Ok(format!(
            "nothing to do: the run has trained {trained}; give --epochs N (more than {done}) \
             to continue it\n"
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
        scale: args.scale_jitter.or(args.scale.map(|s| (s, s))),
        color_shift: args.color_shift,
        seed: args.source.seed,
        ..TrainRequest::new(data)
    })
}

/// A fresh model, or one initialised from `--weights` for fine-tuning (the library says
/// which head tensors it re-initialised).
fn model(source: &ModelSource, device: &Device) -> Result<Vgg> {
    let start = source.open_for_fine_tuning(device)?;
    if !start.reinitialised.is_empty() {
        eprintln!(
            "fine-tuning: {} re-initialised for {} classes",
            start.reinitialised.join(", "),
            start.model.config().num_classes()
        );
    }
    Ok(start.model)
}

/// `--init-from`: the paper's initialisation of a deeper net from net A; says what it copied.
fn init_from_shallower(model: &Vgg, path: &Path, seed: u64, device: &Device) -> Result<Vgg> {
    let (model, copied) = init_from(model, path, PAPER_CONV_LAYERS, seed, device)?;
    let pairs: Vec<String> = copied.iter().map(|(a, b)| format!("{a}→{b}")).collect();
    eprintln!(
        "initialised from {}: {} (the rest fresh)",
        path.display(),
        pairs.join(", ")
    );
    Ok(model)
}

fn parse_init(text: &str) -> std::result::Result<Init, String> {
    text.parse().map_err(|e: Error| e.to_string())
}

/// `--scale-jitter MIN,MAX`.
fn scale_range(text: &str) -> std::result::Result<(usize, usize), String> {
    let sizes: Vec<usize> = text
        .split(',')
        .map(|s| s.trim().parse().ok().filter(|&s: &usize| s > 0))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("expected two sizes like 256,512, got `{text}`"))?;
    match sizes[..] {
        [min, max] if min <= max => Ok((min, max)),
        [min, max] => Err(format!("the smaller size comes first: {max},{min}")),
        _ => Err(format!("expected two sizes like 256,512, got `{text}`")),
    }
}
