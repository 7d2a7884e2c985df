//! From what a user asks for (CLI flags, Python keyword arguments) to a run's
//! [`TrainOptions`]: the defaults, and the choices that depend on the optimiser or the data,
//! made once here for every front end.

use std::path::PathBuf;

use crate::data::cifar;
use crate::data::imagefolder::ImageFolder;
use crate::data::preprocess::Preprocess;
use crate::error::{Error, Result};
use crate::model::layers::Container;
use crate::train::schedule::{LrSchedule, Schedule};
use crate::train::trainer::{OptimizerOptions, TrainOptions};

/// The defaults of a run, for front ends to show and use.
pub mod defaults {
    pub const EPOCHS: usize = 30;
    pub const BATCH_SIZE: usize = 64;
    pub const LR: f64 = 0.01;
    pub const MOMENTUM: f64 = 0.9;
    /// The paper's weight decay for SGD.
    pub const SGD_WEIGHT_DECAY: f64 = 5e-4;
    /// PyTorch's default weight decay for AdamW.
    pub const ADAMW_WEIGHT_DECAY: f64 = 1e-2;
    pub const GAMMA: f64 = 0.1;
    pub const STEP_SIZE: usize = 30;
    pub const PATIENCE: usize = 3;
    /// Warm-up starts at this fraction of the base rate.
    pub const WARMUP_START: f64 = 0.1;
    /// Crops of at most this many pixels count as small images: no resize margin, and
    /// pad-crop augmentation.
    pub const SMALL_CROP: usize = 64;
    /// How a network trained from scratch starts (by measurement: see the README).
    pub const FROM_SCRATCH_INIT: crate::model::init::Init = crate::model::init::Init::Pytorch;
    /// The crop of CIFAR's 32×32 images.
    pub const CIFAR_CROP: usize = 32;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptimizerKind {
    Sgd,
    AdamW,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleKind {
    /// Multiply by `gamma` when validation top-1 stalls for `patience` epochs (the paper).
    Plateau,
    Cosine,
    Step,
    MultiStep,
    Constant,
}

/// A training run as asked for; [`TrainRequest::options`] resolves it.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    /// CIFAR-10/100 binary folder, or an ImageFolder (with train/ and val/, or `val_split`).
    pub data: PathBuf,
    pub val_split: Option<f64>,
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerKind,
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub nesterov: bool,
    /// `None`: [`defaults::SGD_WEIGHT_DECAY`] or [`defaults::ADAMW_WEIGHT_DECAY`].
    pub weight_decay: Option<f64>,
    pub schedule: ScheduleKind,
    pub gamma: f64,
    pub step_size: usize,
    pub milestones: Vec<usize>,
    pub patience: usize,
    pub min_lr: f64,
    pub warmup_epochs: usize,
    pub label_smoothing: f64,
    pub clip_grad_norm: Option<f64>,
    pub freeze: Option<Container>,
    pub augment: String,
    pub flip: bool,
    /// The preprocessing preset and the user's changes to it; `resize` / `crop` left
    /// `None` are chosen from the data.
    pub preprocess: Preprocess,
    pub resize: Option<usize>,
    pub crop: Option<usize>,
    /// The paper's scale jittering `(S_min, S_max)`; equal for fixed-scale training.
    pub scale: Option<(usize, usize)>,
    /// σ of AlexNet's RGB colour shift (0.1 in the paper), or none.
    pub color_shift: Option<f64>,
    pub seed: u64,
}

impl TrainRequest {
    /// A run on `data` with every default.
    pub fn new(data: impl Into<PathBuf>) -> Self {
        TrainRequest {
            data: data.into(),
            val_split: None,
            epochs: defaults::EPOCHS,
            batch_size: defaults::BATCH_SIZE,
            optimizer: OptimizerKind::Sgd,
            lr: defaults::LR,
            momentum: defaults::MOMENTUM,
            dampening: 0.0,
            nesterov: false,
            weight_decay: None,
            schedule: ScheduleKind::Plateau,
            gamma: defaults::GAMMA,
            step_size: defaults::STEP_SIZE,
            milestones: Vec::new(),
            patience: defaults::PATIENCE,
            min_lr: 0.0,
            warmup_epochs: 0,
            label_smoothing: 0.0,
            clip_grad_norm: None,
            freeze: None,
            augment: "auto".into(),
            flip: true,
            preprocess: Preprocess::imagenet(),
            resize: None,
            crop: None,
            scale: None,
            color_shift: None,
            seed: 0,
        }
    }

    /// The run's options; the trainer validates them.
    pub fn options(&self) -> Result<TrainOptions> {
        self.check_schedule_flags()?;
        let (preprocess, input) = self.training_preprocess()?;
        // Absolute: a run resumed from another working folder finds its data.
        let data = std::path::absolute(&self.data)
            .map_err(|e| Error::io(&self.data, "cannot resolve", e))?;
        Ok(TrainOptions {
            data,
            val_split: self.val_split,
            epochs: self.epochs,
            batch_size: self.batch_size,
            optimizer: self.optimizer_options(),
            schedule: LrSchedule {
                base: self.lr,
                schedule: self.lr_schedule(),
                warmup: (self.warmup_epochs > 0)
                    .then_some((self.warmup_epochs, defaults::WARMUP_START)),
            },
            plateau: (self.schedule == ScheduleKind::Plateau)
                .then_some((self.gamma, self.patience)),
            label_smoothing: self.label_smoothing,
            clip_grad_norm: self.clip_grad_norm,
            seed: self.seed,
            freeze: self.freeze,
            augment: self.augment.clone(),
            flip: self.flip,
            preprocess,
            input,
            scale: self.scale,
            color_shift: self.color_shift,
        })
    }

    fn optimizer_options(&self) -> OptimizerOptions {
        match self.optimizer {
            OptimizerKind::Sgd => OptimizerOptions::Sgd {
                momentum: self.momentum,
                dampening: self.dampening,
                weight_decay: self.weight_decay.unwrap_or(defaults::SGD_WEIGHT_DECAY),
                nesterov: self.nesterov,
            },
            // torch.optim.AdamW's betas and eps.
            OptimizerKind::AdamW => OptimizerOptions::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: self.weight_decay.unwrap_or(defaults::ADAMW_WEIGHT_DECAY),
            },
        }
    }

    /// Refuses schedule flags that would be ignored: milestones without the multistep
    /// schedule (or that schedule without them, a constant rate), a warm-up longer than the
    /// run.
    fn check_schedule_flags(&self) -> Result<()> {
        let multistep = self.schedule == ScheduleKind::MultiStep;
        if multistep && self.milestones.is_empty() {
            return Err(Error::BadArgument(
                "--schedule multistep needs --milestones, e.g. --milestones 30,60".into(),
            ));
        }
        if !multistep && !self.milestones.is_empty() {
            return Err(Error::BadArgument(
                "--milestones go with --schedule multistep".into(),
            ));
        }
        if self.warmup_epochs > self.epochs {
            return Err(Error::BadArgument(format!(
                "--warmup-epochs {} is longer than the run (--epochs {})",
                self.warmup_epochs, self.epochs
            )));
        }
        Ok(())
    }

    /// The schedule after warm-up; a cosine spans the epochs the warm-up leaves.
    fn lr_schedule(&self) -> Schedule {
        match self.schedule {
            ScheduleKind::Plateau | ScheduleKind::Constant => Schedule::Constant,
            ScheduleKind::Cosine => Schedule::Cosine {
                t_max: self.epochs.saturating_sub(self.warmup_epochs).max(1),
                eta_min: self.min_lr,
            },
            ScheduleKind::Step => Schedule::Step {
                step_size: self.step_size,
                gamma: self.gamma,
            },
            ScheduleKind::MultiStep => Schedule::MultiStep {
                milestones: self.milestones.clone(),
                gamma: self.gamma,
            },
        }
    }

    /// The crop: the one given, CIFAR's 32×32, small images' own size (an ImageFolder whose
    /// images all share one size of at most [`defaults::SMALL_CROP`]), else the preset's.
    /// Small crops get no resize margin (as for CIFAR). Also says, for the run's first
    /// line, what the network will see and why.
    fn training_preprocess(&self) -> Result<(Preprocess, String)> {
        let mut preprocess = self.preprocess.clone();
        let (crop, why) = match self.crop {
            Some(crop) => (crop, "--crop".to_string()),
            None if cifar::locate(&self.data).is_some() => {
                (defaults::CIFAR_CROP, "CIFAR's images are 32×32".into())
            }
            None => match small_images(&self.data) {
                Some((w, h)) => (w.min(h) as usize, format!("images are {w}×{h}")),
                None => (
                    preprocess.crop,
                    "the preset's; give --crop for another size".into(),
                ),
            },
        };
        preprocess.crop = crop;
        preprocess.resize = match self.resize {
            Some(resize) => resize,
            None if crop <= defaults::SMALL_CROP => crop,
            None => preprocess.resize,
        };
        preprocess.validate()?;
        let resized = match self.scale {
            Some((min, max)) if min == max => format!(" of images resized to {min} (--scale)"),
            Some((min, max)) => format!(" of images resized to {min}–{max} (--scale-jitter)"),
            None if preprocess.resize == crop => String::new(),
            None => format!(" of images resized to {}", preprocess.resize),
        };
        Ok((preprocess, format!("{crop}×{crop} crops{resized} ({why})")))
    }
}

/// The common size of an ImageFolder's training images when they are all one small size.
fn small_images(data: &std::path::Path) -> Option<(u32, u32)> {
    let train = data.join("train");
    let root = if train.is_dir() {
        train
    } else {
        data.to_path_buf()
    };
    let (w, h) = ImageFolder::open(&root, None).ok()?.common_size()?;
    (w.max(h) as usize <= defaults::SMALL_CROP).then_some((w, h))
}
