//! The training loop: epochs of shuffled, augmented batches through the candle model in
//! training mode, an optimiser step per batch, validation, metrics and checkpoints. Every
//! source of randomness (order, crops, flips, dropout) is derived from the seed and the
//! epoch, so a run resumed from its last checkpoint continues exactly as if never stopped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::data::augment::{Augment, image_rng};
use crate::data::preprocess::Preprocess;
use crate::error::{Error, Result};
use crate::io::write_atomically;
use crate::model::VggConfig;
use crate::model::footprint::{self, Work};
use crate::model::layers::{Container, logits_len};
use crate::model::{Mode, Vgg};
use crate::progress::Progress;
use crate::train::checkpoint::{self, RunState};
use crate::train::data::{self, Batch, ColorShift, EpochPlan, Split};
use crate::train::loss::{clip_grad_norm, cross_entropy, top_k_hits};
use crate::train::metrics::{self, EpochMetrics};
use crate::train::optim::{AdamW, AdamWConfig, Optimizer, Sgd, SgdConfig};
use crate::train::plan::{TrainPlan, forward_backward};
use crate::train::schedule::{LrSchedule, Plateau, Schedule};

/// The optimiser and its hyper-parameters (the rate comes from the schedule).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OptimizerOptions {
    Sgd {
        momentum: f64,
        dampening: f64,
        weight_decay: f64,
        nesterov: bool,
    },
    AdamW {
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    },
}

/// Everything that defines a run besides the model; saved in every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    pub data: PathBuf,
    pub val_split: Option<f64>,
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerOptions,
    pub schedule: LrSchedule,
    /// `(factor, patience)`: also multiply the rate by `factor` whenever validation top-1
    /// has not improved for more than `patience` epochs (the paper's "divide by 10").
    pub plateau: Option<(f64, usize)>,
    pub label_smoothing: f64,
    pub clip_grad_norm: Option<f64>,
    pub seed: u64,
    /// Train everything but this part.
    pub freeze: Option<Container>,
    pub augment: String,
    /// Random horizontal flips (off for digits, text…).
    pub flip: bool,
    pub preprocess: Preprocess,
    /// What the network sees and why, for the run's first line: `32×32 crops (images are
    /// 32×32)`.
    #[serde(default)]
    pub input: String,
    /// The paper's scale jittering `(S_min, S_max)` (§3.1): each training image's shorter
    /// side resized to a random S in the range (fixed-scale training when equal), then a
    /// random crop. Replaces `augment`.
    #[serde(default)]
    pub scale: Option<(usize, usize)>,
    /// AlexNet's RGB colour shift along the training set's principal components, with
    /// this σ for the per-image coefficients (the paper's and AlexNet's: 0.1).
    #[serde(default)]
    pub color_shift: Option<f64>,
}

/// Refuses a `flag` value that is negative, NaN or infinite.
fn non_negative(value: f64, flag: &str) -> Result<()> {
    if value >= 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(Error::BadArgument(format!(
            "{flag} must be a non-negative number, got {value}"
        )))
    }
}

impl TrainOptions {
    fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::BadArgument(m.to_string()));
        if self.epochs == 0 || self.batch_size == 0 {
            return bad("--epochs and --batch-size must be at least 1");
        }
        if !(self.schedule.base > 0.0 && self.schedule.base.is_finite()) {
            return bad("--lr must be a positive number");
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad("--label-smoothing must be in [0, 1)");
        }
        if self.clip_grad_norm.is_some_and(|c| c.is_nan() || c <= 0.0) {
            return bad("--clip-grad-norm must be positive");
        }
        if self.freeze == Some(Container::Avgpool) {
            return bad("--freeze takes features or classifier");
        }
        if self
            .color_shift
            .is_some_and(|s| !(s.is_finite() && s >= 0.0))
        {
            return bad("--color-shift must be a non-negative number, e.g. 0.1");
        }
        self.validate_optimizer()?;
        self.validate_schedule()?;
        self.augmentation().map(|_| ())
    }

    /// torch.optim.SGD's and AdamW's own checks, with NaN and infinity refused too.
    fn validate_optimizer(&self) -> Result<()> {
        let (momentum, dampening, weight_decay, nesterov) = match self.optimizer {
            OptimizerOptions::Sgd {
                momentum,
                dampening,
                weight_decay,
                nesterov,
            } => (momentum, dampening, weight_decay, nesterov),
            OptimizerOptions::AdamW { weight_decay, .. } => (0.0, 0.0, weight_decay, false),
        };
        non_negative(momentum, "--momentum")?;
        non_negative(weight_decay, "--weight-decay")?;
        if !(0.0..=1.0).contains(&dampening) {
            return Err(Error::BadArgument(format!(
                "--dampening must be in [0, 1], got {dampening}"
            )));
        }
        if nesterov && (momentum == 0.0 || dampening != 0.0) {
            return Err(Error::BadArgument(
                "--nesterov needs --momentum above 0 and --dampening 0 (as torch.optim.SGD)".into(),
            ));
        }
        Ok(())
    }

    /// The schedule's factors and sizes: PyTorch's checks, and none that stops learning
    /// (a `--gamma` of 0 or below, a step every 0 epochs).
    fn validate_schedule(&self) -> Result<()> {
        let gamma = match &self.schedule.schedule {
            Schedule::Step { step_size: 0, .. } => {
                return Err(Error::BadArgument("--step-size must be at least 1".into()));
            }
            Schedule::Step { gamma, .. } | Schedule::MultiStep { gamma, .. } => Some(*gamma),
            Schedule::Cosine { eta_min, .. } => return non_negative(*eta_min, "--min-lr"),
            Schedule::Constant => None,
        };
        if gamma.is_some_and(|g| !(g > 0.0 && g.is_finite())) {
            return Err(Error::BadArgument(format!(
                "--gamma must be a positive number, got {}",
                gamma.unwrap_or_default()
            )));
        }
        match self.plateau {
            Some((factor, _)) if !(factor > 0.0 && factor < 1.0) => Err(Error::BadArgument(
                format!("--gamma must be in (0, 1) for --schedule plateau, got {factor}"),
            )),
            _ => Ok(()),
        }
    }

    /// How training images are augmented: scale jittering when `scale` is set, else `augment`.
    fn augmentation(&self) -> Result<Augment> {
        let crop = self.preprocess.crop;
        match self.scale {
            Some((min, max)) if min == max && min < crop => Err(Error::BadArgument(format!(
                "--scale {min}: expected at least the crop ({crop})"
            ))),
            Some((min, max)) if min > max || min < crop => Err(Error::BadArgument(format!(
                "--scale-jitter {min},{max}: expected S_min ≤ S_max, both at least the crop \
                 ({crop}), e.g. 256,512 for 224 crops"
            ))),
            Some(_) if self.augment != "auto" => Err(Error::BadArgument(format!(
                "--scale / --scale-jitter choose the augmentation; drop --augment {}",
                self.augment
            ))),
            Some((min, max)) => Ok(Augment::ScaleCrop {
                min,
                max,
                flip: self.flip,
            }),
            None => Augment::parse(&self.augment, crop, self.flip),
        }
    }
}

/// A run in progress: the model, its optimiser, the data and where results go.
pub struct Trainer {
    model: Vgg,
    optimizer: Optimizer,
    trainable: Vec<(String, Var)>,
    /// The compiled training step, when it covers the model and nothing is frozen;
    /// otherwise steps run through candle's autograd.
    plan: Option<TrainPlan>,
    run: RunState,
    train: Arc<Split>,
    val: Arc<Split>,
    augment: Augment,
    /// The training set's colour components and σ, for the colour shift.
    color: Option<Arc<ColorShift>>,
    out: PathBuf,
}

/// Refuses options that make no sense and runs whose steps would not fit the memory budget
/// (before a model is built, where its config is known without one).
pub fn check_run(options: &TrainOptions, config: &VggConfig) -> Result<()> {
    options.validate()?;
    let (batch, crop) = (options.batch_size, options.preprocess.crop);
    let input = [batch, config.in_channels(), crop, crop];
    footprint::check(config, input, Work::Training, || {
        format!("--batch-size {batch} with --crop {crop}: ")
    })
}

/// Refuses to resume a run on a dataset whose classes are not the ones it started with
/// (a class folder added or renamed since): every label would silently change meaning.
fn check_same_classes(run: &RunState, classes: &[String], out: &Path) -> Result<()> {
    if classes == run.classes {
        return Ok(());
    }
    let differs = match classes.iter().zip(&run.classes).position(|(a, b)| a != b) {
        Some(i) => format!(
            "class {i} is now `{}`, was `{}`",
            classes[i], run.classes[i]
        ),
        None => format!("{} classes now, {} then", classes.len(), run.classes.len()),
    };
    Err(Error::BadArgument(format!(
        "cannot resume {}: the classes of {} are not the ones the run started with ({differs}); \
         start a new run, or fine-tune from {} with --weights",
        out.display(),
        run.options.data.display(),
        out.join(LAST).display()
    )))
}

/// One epoch's training totals.
struct EpochTrain {
    loss: f64,
    top1: f64,
    images_per_s: f64,
}

/// Validation results: loss, top-1 and top-5 in percent.
struct Validation {
    loss: f64,
    top1: f64,
    top5: f64,
}

impl Trainer {
    /// A new run of `model` into `out`, which must not already hold any file a run writes
    /// ([`RUN_FILES`]) unless `overwrite` says they may be replaced: they may be another
    /// run's, or files of the user's that merely share a name.
    pub fn new(model: Vgg, options: TrainOptions, out: &Path, overwrite: bool) -> Result<Self> {
        check_run(&options, model.config())?;
        let resume = if out.join(LAST).exists() {
            format!("continue that run with --resume {}, ", out.display())
        } else {
            String::new()
        };
        crate::io::refuse_to_replace(out, &RUN_FILES, overwrite, &resume)?;
        let data = data::open(&options.data, options.val_split, options.seed)?;
        let num_classes = model.config().num_classes();
        if data.classes.len() != num_classes {
            return Err(Error::BadArgument(format!(
                "{} has {} classes but the model has {num_classes} outputs: pass --num-classes {}",
                options.data.display(),
                data.classes.len(),
                data.classes.len()
            )));
        }
        let run = RunState {
            config: model.config().clone(),
            options,
            classes: data.classes,
            epoch: 0,
            history: Vec::new(),
            best_val_top1: None,
            plateau: None,
            optimizer_steps: 0,
        };
        Self::assemble(model, run, data.train, data.val, out)
    }

    /// Continues the run saved in `out`, optionally extended to `epochs`.
    pub fn resume(out: &Path, epochs: Option<usize>, device: &Device) -> Result<Self> {
        if !out.join(LAST).is_file() {
            return Err(Error::BadArgument(format!(
                "no run to resume in {}: it has no {LAST} (a run writes it after its first epoch)",
                out.display()
            )));
        }
        let checkpoint = checkpoint::load(&out.join(LAST))?;
        let mut run = checkpoint.run;
        if let Some(epochs) = epochs {
            if let Schedule::Cosine { t_max, .. } = run.options.schedule.schedule
                && epochs != run.options.epochs
            {
                eprintln!(
                    "note: the cosine schedule of this run spans {t_max} epochs; later epochs \
                     keep its final rate"
                );
            }
            run.options.epochs = epochs;
        }
        // The options come from a file: checked as a new run's are, the message saying so
        // (it names the flag that sets each one).
        check_run(&run.options, &run.config).map_err(|e| {
            Error::BadArgument(format!(
                "cannot resume {}: its run state records options a new run would refuse: {e}",
                out.display()
            ))
        })?;
        let config = run.config.clone();
        let (model, _) =
            crate::weights::load::load(config, checkpoint.model, true, run.options.seed, device)?;
        let data = data::open(&run.options.data, run.options.val_split, run.options.seed)?;
        check_same_classes(&run, &data.classes, out)?;
        let steps = run.optimizer_steps;
        let mut trainer = Self::assemble(model, run, data.train, data.val, out)?;
        let keys: Vec<String> = trainer.trainable.iter().map(|(k, _)| k.clone()).collect();
        trainer
            .optimizer
            .restore(&keys, &checkpoint.optimizer, steps)?;
        Ok(trainer)
    }

    fn assemble(model: Vgg, run: RunState, train: Split, val: Split, out: &Path) -> Result<Self> {
        let options = &run.options;
        if train.is_empty() || val.is_empty() {
            return Err(Error::BadArgument(format!(
                "{}: {} training and {} validation images; both must be non-empty",
                options.data.display(),
                train.len(),
                val.len()
            )));
        }
        let trainable: Vec<(String, Var)> = model
            .parameters()
            .into_iter()
            .filter(|(key, _)| {
                options
                    .freeze
                    .is_none_or(|frozen| !key.starts_with(frozen.name()))
            })
            .collect();
        let optimizer =
            build_optimizer(options, trainable.iter().map(|(_, v)| v.clone()).collect());
        if out.exists() && !out.is_dir() {
            return Err(Error::BadArgument(format!(
                "--out {}: not a folder (a run folder holds checkpoints, metrics and curves)",
                out.display()
            )));
        }
        (std::fs::create_dir_all(out))
            .map_err(|e| Error::io(out, "cannot create the run folder", e))?;
        let color = match options.color_shift {
            Some(sigma) => Some(Arc::new(ColorShift {
                pca: data::color_pca(&train, &options.preprocess)?,
                sigma,
            })),
            None => None,
        };
        let plan = match options.freeze {
            None => TrainPlan::new(&model)?,
            Some(_) => None,
        };
        Ok(Trainer {
            plan,
            augment: options.augmentation()?,
            color,
            model,
            optimizer,
            trainable,
            train: Arc::new(train),
            val: Arc::new(val),
            run,
            out: out.to_path_buf(),
        })
    }

    pub fn model(&self) -> &Vgg {
        &self.model
    }

    pub fn run_state(&self) -> &RunState {
        &self.run
    }

    /// Trains the remaining epochs; `progress` follows each epoch's batches and receives one
    /// line per epoch (and a warning per unreadable image).
    pub fn run(&mut self, progress: &dyn Progress) -> Result<()> {
        if !self.run.options.input.is_empty() {
            progress.message(&format!("training at {}", self.run.options.input));
        }
        progress.message(&format!(
            "{}: {} training / {} validation images, {} {}, {} trainable tensors",
            self.run.config.name(),
            self.train.len(),
            self.val.len(),
            self.run.classes.len(),
            if self.run.classes.len() == 1 {
                "class"
            } else {
                "classes"
            },
            self.trainable.len()
        ));
        while self.run.epoch < self.run.options.epochs {
            let metrics = self.epoch(progress)?;
            progress.message(&format!(
                "epoch {}/{}: train loss {:.4} top-1 {:.2}% | val loss {:.4} top-1 {:.2}% top-5 \
                 {:.2}% | lr {:.3e} | {:.1} img/s, {:.1} s",
                metrics.epoch,
                self.run.options.epochs,
                metrics.train_loss,
                metrics.train_top1,
                metrics.val_loss,
                metrics.val_top1,
                metrics.val_top5,
                metrics.lr,
                metrics.images_per_s,
                metrics.seconds
            ));
        }
        Ok(())
    }

    /// One epoch: train, validate, record, checkpoint.
    fn epoch(&mut self, progress: &dyn Progress) -> Result<EpochMetrics> {
        let start = Instant::now();
        let epoch = self.run.epoch;
        let lr =
            self.run.options.schedule.lr(epoch) * self.run.plateau.as_ref().map_or(1.0, |p| p.lr);
        self.optimizer.set_lr(lr);
        let train = self.train_epoch(epoch, progress)?;
        let val = self.validate(progress)?;
        if !val.loss.is_finite() {
            return Err(Error::BadArgument(format!(
                "the weights diverged in epoch {}: the validation loss is {} (no checkpoint \
                 of it is written); lower --lr or set --clip-grad-norm",
                epoch + 1,
                val.loss
            )));
        }
        if let Some((factor, patience)) = self.run.options.plateau {
            self.run
                .plateau
                .get_or_insert_with(|| Plateau::new(1.0, factor, patience))
                .step(val.top1);
        }
        let metrics = EpochMetrics {
            epoch: epoch + 1,
            train_loss: train.loss,
            train_top1: train.top1,
            val_loss: val.loss,
            val_top1: val.top1,
            val_top5: val.top5,
            lr,
            images_per_s: train.images_per_s,
            seconds: start.elapsed().as_secs_f64(),
        };
        self.run.epoch += 1;
        self.run.history.push(metrics.clone());
        self.run.optimizer_steps = self.optimizer.steps();
        let improved = self.run.best_val_top1.is_none_or(|best| val.top1 > best);
        if improved {
            self.run.best_val_top1 = Some(val.top1);
        }
        self.save(improved)?;
        Ok(metrics)
    }

    fn train_epoch(&mut self, epoch: usize, progress: &dyn Progress) -> Result<EpochTrain> {
        let options = &self.run.options;
        self.model
            .reseed_dropout(image_rng(options.seed, epoch, data::DROPOUT_STREAM).random());
        let plan = EpochPlan {
            augment: self.augment,
            color: self.color.clone(),
            preprocess: options.preprocess.clone(),
            batch_size: options.batch_size,
            seed: options.seed,
            epoch,
            shuffle: true,
        };
        progress.begin(
            self.train.len(),
            &format!("epoch {}/{}", epoch + 1, options.epochs),
        );
        let params: Vec<Var> = self.trainable.iter().map(|(_, v)| v.clone()).collect();
        let (start, mut totals) = (Instant::now(), Totals::default());
        for (step, batch) in data::batches(self.train.clone(), plan)
            .into_iter()
            .enumerate()
        {
            totals.skip(&batch, progress);
            if batch.is_empty() {
                continue;
            }
            let x = batch_tensor(&batch, options.preprocess.crop, self.model.device())?;
            let (loss_value, logits, mut grads) = forward_backward(
                self.plan.as_mut(),
                &self.model,
                (&x, &batch.labels),
                options.label_smoothing,
                |x| forward_train(&self.model, options.freeze, x),
            )?;
            if !loss_value.is_finite() {
                return Err(Error::BadArgument(format!(
                    "the loss became {loss_value} at epoch {} step {}: lower --lr or set \
                     --clip-grad-norm",
                    epoch + 1,
                    step + 1
                )));
            }
            if let Some(max_norm) = options.clip_grad_norm {
                clip_grad_norm(&mut grads, &params, max_norm)?;
            }
            self.optimizer.step(&grads)?;
            totals.add(loss_value, &logits, &batch)?;
            progress.advance(
                batch.len(),
                &format!(
                    "loss {:.4} top-1 {:.1}% {:.0} img/s",
                    totals.mean_loss(),
                    totals.top1(),
                    totals.seen as f64 / start.elapsed().as_secs_f64()
                ),
            );
        }
        progress.end();
        totals.check_some_seen(("training", self.train.len()), epoch + 1)?;
        Ok(EpochTrain {
            loss: totals.mean_loss(),
            top1: totals.top1(),
            images_per_s: totals.seen as f64 / start.elapsed().as_secs_f64(),
        })
    }

    fn validate(&self, progress: &dyn Progress) -> Result<Validation> {
        let options = &self.run.options;
        let plan = EpochPlan {
            augment: Augment::None,
            color: None,
            preprocess: options.preprocess.clone(),
            batch_size: options.batch_size,
            seed: options.seed,
            epoch: 0,
            shuffle: false,
        };
        progress.begin(self.val.len(), "validation");
        let mut totals = Totals::default();
        for batch in data::batches(self.val.clone(), plan) {
            totals.skip(&batch, progress);
            if batch.is_empty() {
                continue;
            }
            let x = batch_tensor(&batch, options.preprocess.crop, self.model.device())?;
            let y = Tensor::from_slice(&batch.labels, batch.len(), x.device())?;
            let logits = self.model.logits(&x, Mode::Eval)?;
            let loss = cross_entropy(&logits, &y, options.label_smoothing)?;
            totals.add(f64::from(loss.to_scalar::<f32>()?), &logits, &batch)?;
            progress.advance(batch.len(), "");
        }
        progress.end();
        totals.check_some_seen(("validation", self.val.len()), self.run.epoch + 1)?;
        Ok(Validation {
            loss: totals.mean_loss(),
            top1: totals.top1(),
            top5: totals.top5(),
        })
    }

    /// Writes `last` (and `best` when validation improved), then the metrics and curves.
    fn save(&self, improved: bool) -> Result<()> {
        let keys: Vec<String> = self.trainable.iter().map(|(k, _)| k.clone()).collect();
        let last = self.out.join(LAST);
        checkpoint::save(&last, &self.model, self.optimizer.state(&keys), &self.run)?;
        if improved {
            let best = self.out.join(BEST);
            write_atomically(&best, |tmp| {
                std::fs::copy(&last, tmp)
                    .map(|_| ())
                    .map_err(|e| Error::io(tmp, "cannot write", e))
            })?;
        }
        metrics::write_all(&self.out, &self.run.history)
    }
}

/// File names inside a run directory.
pub const LAST: &str = "last.safetensors";
pub const BEST: &str = "best.safetensors";
/// Every file a run writes into its folder.
pub const RUN_FILES: [&str; 6] = [
    LAST,
    BEST,
    "metrics.jsonl",
    "metrics.csv",
    "curves.svg",
    "curves.png",
];

fn build_optimizer(options: &TrainOptions, params: Vec<Var>) -> Optimizer {
    let lr = options.schedule.base;
    match options.optimizer {
        OptimizerOptions::Sgd {
            momentum,
            dampening,
            weight_decay,
            nesterov,
        } => Optimizer::Sgd(Sgd::new(
            params,
            SgdConfig {
                lr,
                momentum,
                dampening,
                weight_decay,
                nesterov,
            },
        )),
        OptimizerOptions::AdamW {
            beta1,
            beta2,
            eps,
            weight_decay,
        } => Optimizer::AdamW(AdamW::new(
            params,
            AdamWConfig {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            },
        )),
    }
}

/// A batch's images as an NCHW tensor.
fn batch_tensor(batch: &Batch, size: usize, device: &Device) -> Result<Tensor> {
    Ok(Tensor::from_slice(
        &batch.pixels,
        (batch.len(), 3, size, size),
        device,
    )?)
}

/// The training-mode forward pass on candle's autograd; with frozen features, the
/// features run (updating batch-norm statistics, as PyTorch does for frozen parameters in
/// training mode) outside the autograd graph, so the backward pass stops at the classifier.
fn forward_train(model: &Vgg, freeze: Option<Container>, x: &Tensor) -> Result<Tensor> {
    let end = logits_len(model.layers());
    if freeze != Some(Container::Features) {
        return model.forward_range(x, Mode::Train, 0..end);
    }
    let split = model
        .layers()
        .iter()
        .position(|l| l.container != Container::Features)
        .unwrap_or(end);
    let features = model.forward_range(x, Mode::Train, 0..split)?.detach();
    model.forward_range(&features, Mode::Train, split..end)
}

/// Running sums over an epoch.
#[derive(Default)]
struct Totals {
    loss: f64,
    top1: usize,
    top5: usize,
    seen: usize,
}

impl Totals {
    fn add(&mut self, mean_loss: f64, logits: &Tensor, batch: &Batch) -> Result<()> {
        let classes = logits.dim(1)?;
        let values: Vec<f32> = logits.flatten_all()?.to_vec1()?;
        self.loss += mean_loss * batch.len() as f64;
        self.top1 += top_k_hits(&values, classes, &batch.labels, 1);
        self.top5 += top_k_hits(&values, classes, &batch.labels, 5);
        self.seen += batch.len();
        Ok(())
    }

    /// Reports unreadable images; they are left out of the epoch.
    fn skip(&self, batch: &Batch, progress: &dyn Progress) {
        for why in &batch.skipped {
            progress.message(&format!("warning: skipped {why}"));
        }
    }

    /// Refuses an epoch in which no image of `what` could be used (every one was skipped):
    /// its loss and accuracy would be made-up zeros.
    fn check_some_seen(&self, (what, images): (&str, usize), epoch: usize) -> Result<()> {
        match self.seen {
            0 => Err(Error::BadArgument(format!(
                "epoch {epoch}: none of the {images} {what} images could be used (each was \
                 skipped; the warnings say why)"
            ))),
            _ => Ok(()),
        }
    }

    fn mean_loss(&self) -> f64 {
        self.loss / self.seen.max(1) as f64
    }

    fn top1(&self) -> f64 {
        100.0 * self.top1 as f64 / self.seen.max(1) as f64
    }

    fn top5(&self) -> f64 {
        100.0 * self.top5 as f64 / self.seen.max(1) as f64
    }
}
