//! Opening a model: which network (a torchvision name, a custom config, or detected from a
//! checkpoint), with which changes to its head, from which checkpoint, how strictly. The
//! one call that the CLI's `--arch/--weights` flags and the Python package's constructors
//! share, for the reference model, the fast engine and fine-tuning alike.

use std::path::PathBuf;

use candle_core::Device;

use crate::data::labels::imagenet_classes;
use crate::data::preprocess::Preprocess;
use crate::engine::{PlanOptions, Precision};
use crate::error::{Error, Result};
use crate::fast::{FastOptions, FastVgg, layer_paths};
use crate::infer::protocol::{Protocol, TrainingScale, scale_classifier};
use crate::infer::{Backend, Classifier, Engine, check_takes_images};
use crate::model::Vgg;
use crate::model::config::{Arch, ConfigOverrides, VggConfig};
use crate::model::footprint::{self, Work};
use crate::model::init::Init;
use crate::model::layers::{LayerKind, build_layers};
use crate::weights::detect::{detect_config, detect_config_of};
use crate::weights::load::{LoadReport, check, load};
use crate::weights::recorded::Int8Calibration;
use crate::weights::{self, LazyPth, Shapes};

/// Which network to build.
#[derive(Debug, Clone, PartialEq)]
pub enum ArchChoice {
    /// The arch the checkpoint was saved from (needs weights).
    Auto,
    Named(Arch),
    /// A VGG-style feature config such as `32,M,64,M`.
    Custom {
        cfg: String,
        batch_norm: bool,
    },
}

impl ArchChoice {
    /// `auto`, `custom` (with `cfg`) or a torchvision name; `cfg` and `batch_norm` belong to
    /// `custom` alone.
    pub fn parse(arch: &str, cfg: Option<&str>, batch_norm: bool) -> Result<Self> {
        let custom_only = |arch: &str| {
            Error::BadArgument(format!(
                "--cfg and --batch-norm describe a custom network: use arch `custom` instead of \
                 `{arch}`{}",
                if arch == "auto" {
                    " (with auto the layout comes from the weights)".to_string()
                } else {
                    format!(
                        " (or {arch}'s own config: `{}_bn` has batch norm)",
                        arch.trim_end_matches("_bn")
                    )
                }
            ))
        };
        match arch {
            "custom" => {
                let cfg = cfg.ok_or_else(|| {
                    Error::BadArgument(
                        "arch `custom` needs --cfg, e.g. --cfg 32,M,64,M,128,128,M".into(),
                    )
                })?;
                Ok(ArchChoice::Custom {
                    cfg: cfg.to_string(),
                    batch_norm,
                })
            }
            _ if cfg.is_some() || batch_norm => {
                if arch != "auto" {
                    arch.parse::<Arch>()?;
                }
                Err(custom_only(arch))
            }
            "auto" => Ok(ArchChoice::Auto),
            name => Ok(ArchChoice::Named(name.parse()?)),
        }
    }
}

/// Everything that says which model to open. `ModelSource::default()` is `auto` with no
/// weights, which [`ModelSource::config`] refuses: name an arch or give weights.
#[derive(Debug, Clone)]
pub struct ModelSource {
    pub arch: ArchChoice,
    pub overrides: ConfigOverrides,
    /// Any checkpoint we read (`.pth` zip or legacy, safetensors, training checkpoints);
    /// random weights when absent.
    pub weights: Option<PathBuf>,
    /// Refuse any difference between checkpoint and model (PyTorch's `strict=True`);
    /// otherwise load what fits and initialise the rest.
    pub strict: bool,
    /// Seed of the initialisation of whatever is not loaded, and of dropout.
    pub seed: u64,
    /// How a network without weights is initialised.
    pub init: Init,
    /// The int8 calibration to compile `--precision int8` with, in place of the one the
    /// weights file records (`vgg quantize` writes it; `--calib` makes one at load).
    pub int8: Option<Int8Calibration>,
}

impl Default for ModelSource {
    fn default() -> Self {
        ModelSource {
            arch: ArchChoice::Auto,
            overrides: ConfigOverrides::default(),
            weights: None,
            strict: true,
            seed: 0,
            init: Init::default(),
            int8: None,
        }
    }
}

/// A model fine-tuning starts from: the checkpoint's weights, with the last linear layer
/// left at its fresh initialisation where the class count differs.
pub struct FineTuneStart {
    pub model: Vgg,
    /// The checkpoint keys that were not loaded because the head changed size.
    pub reinitialised: Vec<String>,
    pub report: LoadReport,
}

impl ModelSource {
    /// A torchvision model with random weights.
    pub fn named(arch: Arch) -> Self {
        ModelSource {
            arch: ArchChoice::Named(arch),
            ..ModelSource::default()
        }
    }

    /// The model a checkpoint holds, its arch detected.
    pub fn checkpoint(path: impl Into<PathBuf>) -> Self {
        ModelSource {
            weights: Some(path.into()),
            ..ModelSource::default()
        }
    }

    /// The config of the model, for a checkpoint with these tensors (`None`: no weights).
    pub fn config(&self, shapes: Option<&Shapes>) -> Result<VggConfig> {
        let base = match (&self.arch, shapes) {
            (ArchChoice::Auto, Some(shapes)) => match &self.weights {
                Some(path) => detect_config_of(path, shapes)?,
                None => detect_config(shapes)?,
            },
            (ArchChoice::Auto, None) => {
                return Err(Error::BadArgument(
                    "arch auto detects the arch from the weights: give --weights FILE, or \
                     name an arch (vgg11 … vgg19_bn, custom)"
                        .into(),
                ));
            }
            (ArchChoice::Named(arch), _) => VggConfig::from_arch(*arch),
            (ArchChoice::Custom { cfg, batch_norm }, _) => VggConfig::custom(cfg, *batch_norm)?,
        };
        base.with_overrides(&self.overrides)
    }

    /// Refuses an input that is not NCHW, holds NaN or infinity, or (without a checkpoint,
    /// whose layout is known only once it is read) that the network does not accept or
    /// that would not fit the memory budget: before any weights are initialised, so that a
    /// refusal costs nothing. The engines check again in any case. `what` prefixes the
    /// message.
    pub fn check_input(&self, x: &candle_core::Tensor, what: impl Fn() -> String) -> Result<()> {
        let input = crate::model::nchw(x.dims()).map_err(|e| match e {
            Error::BadArgument(why) => Error::BadArgument(format!("{}{why}", what())),
            other => other,
        })?;
        crate::ops::with_f32_values(x, crate::model::check_finite)??;
        self.check_work(input, Work::Inference, what)
    }

    /// Refuses `work` on an NCHW `input` that the network does not accept or that would not
    /// fit the memory budget (see [`ModelSource::check_input`]; only without a checkpoint).
    pub fn check_work(
        &self,
        input: [usize; 4],
        work: Work,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        match self.weights {
            Some(_) => Ok(()),
            None => footprint::check(&self.config(None)?, input, work, what),
        }
    }

    /// The reference model (module by module, any batch size, trainable), and the load
    /// report when weights were given.
    pub fn open(&self, device: &Device) -> Result<(Vgg, Option<LoadReport>)> {
        let Some(path) = &self.weights else {
            let config = self.config(None)?;
            return Ok((Vgg::with_init(config, self.init, self.seed, device)?, None));
        };
        let state = weights::read(path)?;
        let config = self.config(Some(&state.shapes()))?;
        let (model, report) = load(config, state, self.strict, self.seed, device)?;
        Ok((model, Some(report)))
    }

    /// The model compiled for the fast engine, for batches of `batch` inputs of `size`
    /// (height, width; the channels are the model's). A `.pth` that fits exactly is read
    /// tensor by tensor straight into the engine; anything else goes through the reference
    /// model first.
    pub fn open_fast(
        &self,
        batch: usize,
        size: [usize; 2],
        options: PlanOptions,
    ) -> Result<(FastVgg, Option<LoadReport>)> {
        let int8 = match options.precision {
            Precision::Int8 => Some(self.int8_calibration()?),
            _ => None,
        };
        let options = |config: &VggConfig| -> Result<FastOptions> {
            if let Some(calibration) = &int8 {
                self.check_calibration(calibration, config)?;
            }
            Ok(FastOptions {
                plan: options,
                int8: int8.clone(),
            })
        };
        let input = |config: &VggConfig| [batch, config.in_channels(), size[0], size[1]];
        if self.weights.is_none() {
            self.check_work(input(&self.config(None)?), Work::Inference, String::new)?;
        }
        if let Some(path) = &self.weights
            && let Some(checkpoint) = LazyPth::open(path)?
        {
            let shapes = checkpoint.shapes();
            let config = self.config(Some(&shapes))?;
            let report = check(&config, &shapes);
            if report.is_exact() {
                let shape = input(&config);
                let options = options(&config)?;
                let engine = FastVgg::from_pth(config, &checkpoint, shape, options)?;
                return Ok((engine, Some(report)));
            }
            if self.strict {
                return Err(Error::mismatch(report));
            }
        }
        let (model, report) = self.open(&Device::Cpu)?;
        let shape = input(model.config());
        let options = options(model.config())?;
        Ok((FastVgg::from_model(&model, shape, options)?, report))
    }

    /// The calibration `--precision int8` compiles the opened model `config` with (see
    /// [`ModelSource::int8_calibration`]), checked to describe its layers.
    pub fn int8_calibration_for(&self, config: &VggConfig) -> Result<Int8Calibration> {
        let calibration = self.int8_calibration()?;
        self.check_calibration(&calibration, config)?;
        Ok(calibration)
    }

    /// The calibration `--precision int8` compiles with: the one given, else the one the
    /// weights file records.
    pub fn int8_calibration(&self) -> Result<Int8Calibration> {
        if let Some(calibration) = &self.int8 {
            return Ok(calibration.clone());
        }
        let Some(path) = &self.weights else {
            return Err(Error::BadArgument(
                "--precision int8 needs a calibrated checkpoint, and random weights have none: \
                 give --weights FILE (calibrated with `vgg quantize`), or --calib DIR to \
                 classify or evaluate"
                    .into(),
            ));
        };
        weights::recorded_int8(path)?.ok_or_else(|| {
            Error::BadArgument(format!(
                "--precision int8: {} records no int8 calibration; make one with `vgg quantize \
                 {} --calib DIR --out FILE.safetensors`, or calibrate at load with --calib DIR",
                path.display(),
                path.display()
            ))
        })
    }

    /// Refuses a calibration that does not describe `config`'s layers, naming the weights
    /// file that recorded it (one made at load with `--calib` always does).
    fn check_calibration(&self, calibration: &Int8Calibration, config: &VggConfig) -> Result<()> {
        let (convs, linears) = layer_paths(config);
        let paths = convs.iter().chain(&linears).map(String::as_str);
        calibration.check_layers(paths).map_err(|why| {
            let mismatch = format!(
                "does not describe this {} network: {why}; calibrate again with `vgg quantize` or --calib DIR",
                config.name()
            );
            match (&self.int8, &self.weights) {
                (None, Some(path)) => Error::BadWeights {
                    path: path.display().to_string(),
                    why: format!("its int8 calibration (metadata `vgg.int8`) {mismatch}"),
                },
                _ => Error::BadArgument(format!("--precision int8: the calibration {mismatch}")),
            }
        })
    }

    /// The backend `engine` names, the fast one compiled for batches of up to `batch`
    /// inputs of `size` (height, width).
    pub fn backend(&self, engine: Engine, batch: usize, size: [usize; 2]) -> Result<Backend> {
        Ok(match engine {
            Engine::Fast(_) => Backend::Fast(self.open_fast(batch, size, engine.plan_options())?.0),
            Engine::Reference => Backend::Reference(self.open(&Device::Cpu)?.0),
        })
    }

    /// A classifier that evaluates each image with `protocol` on `engine`, in batches of up
    /// to `batch` images: `center` takes `preprocess`'s centre crop (and its mirror image if
    /// `tta_flip`); the paper's protocols take the image at each of `scales` (its shorter
    /// side), and crops of the network's native size.
    pub fn classifier(
        &self,
        engine: Engine,
        batch: usize,
        preprocess: &Preprocess,
        protocol: Protocol,
        scales: &[usize],
        tta_flip: bool,
    ) -> Result<Classifier> {
        if protocol == Protocol::Center {
            let size = [preprocess.crop, preprocess.crop];
            let backend = self.backend(engine, batch, size)?;
            check_takes_images(backend.config())?;
            return Ok(Classifier::new(backend, tta_flip));
        }
        if tta_flip {
            return Err(Error::BadArgument(format!(
                "--tta flip: the {} protocol already averages every view with its mirror image",
                protocol.name()
            )));
        }
        let (model, _) = self.open(&Device::Cpu)?;
        check_takes_images(model.config())?;
        scale_classifier(&model, engine, batch, protocol, scales, preprocess.crop)
    }

    /// A model to fine-tune: the checkpoint's weights where they fit; when the class count
    /// differs, the last linear layer keeps its fresh initialisation (and is reported).
    /// Any other difference is an error unless the source is not strict.
    pub fn open_for_fine_tuning(&self, device: &Device) -> Result<FineTuneStart> {
        let Some(path) = &self.weights else {
            let (model, _) = self.open(device)?;
            return Ok(FineTuneStart {
                model,
                reinitialised: Vec::new(),
                report: LoadReport::default(),
            });
        };
        let mut state = weights::read(path)?;
        let config = self.config(Some(&state.shapes()))?;
        let head = build_layers(&config)
            .iter()
            .rev()
            .find(|l| matches!(l.kind, LayerKind::Linear { .. }))
            .map(|l| format!("{}.", l.path()));
        let num_classes = config.num_classes();
        let reinitialised: Vec<String> = state
            .tensors
            .iter()
            .filter(|(key, t)| {
                head.as_deref().is_some_and(|head| key.starts_with(head))
                    && t.dim(0).ok() != Some(num_classes)
            })
            .map(|(key, _)| key.clone())
            .collect();
        state
            .tensors
            .retain(|(key, _)| !reinitialised.contains(key));
        let (model, report) = load(config, state, false, self.seed, device)?;
        let unexplained = report.missing.iter().any(|k| !reinitialised.contains(k))
            || !report.unexpected.is_empty()
            || !report.mismatched.is_empty();
        if unexplained && self.strict {
            return Err(Error::mismatch(report));
        }
        Ok(FineTuneStart {
            model,
            reinitialised,
            report,
        })
    }

    /// Names for the model's `num_classes` classes: those the checkpoint records (a `vgg
    /// train` checkpoint, a file we wrote), else ImageNet's for 1000 classes, else `class N`.
    /// Recorded names of another count are an error when the checkpoint loads strictly (the
    /// file contradicts its own last layer) and left unused otherwise (the head changed).
    pub fn class_names(&self, num_classes: usize) -> Result<Vec<String>> {
        let recorded = match self.weights.as_deref() {
            Some(path) => weights::recorded_class_names(path)?.map(|names| (path, names)),
            None => None,
        };
        match recorded {
            Some((_, names)) if names.len() == num_classes => Ok(names),
            Some((path, names)) if self.strict => Err(Error::BadWeights {
                path: path.display().to_string(),
                why: format!(
                    "it records {} class names, but its last layer has {num_classes} outputs",
                    names.len()
                ),
            }),
            _ => Ok(generic_class_names(num_classes)),
        }
    }

    /// The scale the model was trained at, which the paper's protocols choose their test
    /// scales by: the resize of the preprocessing its checkpoint records (a `vgg train`
    /// run, a file converted from one), else the paper's scale augmentation (torchvision's
    /// weights were trained with one).
    pub fn training_scale(&self) -> Result<TrainingScale> {
        Ok(match self.recorded_preprocess()? {
            Some(trained) => TrainingScale::Fixed(trained.resize),
            None => TrainingScale::Paper,
        })
    }

    /// How the model's inputs were made in training (a `vgg train` checkpoint records it;
    /// an ONNX graph of a fixed size implies ImageNet's at that size), else torchvision's
    /// ImageNet preprocessing: what evaluating the model should use unless told otherwise.
    pub fn preprocess(&self) -> Result<Preprocess> {
        let implied = match self.weights.as_deref() {
            Some(path) => weights::implied_preprocess(path)?,
            None => None,
        };
        Ok(implied.unwrap_or_else(Preprocess::imagenet))
    }

    /// The preprocessing the checkpoint records, if any: how its model was trained.
    pub fn recorded_preprocess(&self) -> Result<Option<Preprocess>> {
        match self.weights.as_deref() {
            Some(path) => weights::recorded_preprocess(path),
            None => Ok(None),
        }
    }
}

/// Names for `num_classes` classes that nothing records: ImageNet's for 1000 classes, else
/// `class N`.
fn generic_class_names(num_classes: usize) -> Vec<String> {
    if num_classes == 1000 {
        imagenet_classes().into_iter().map(String::from).collect()
    } else {
        (0..num_classes).map(|i| format!("class {i}")).collect()
    }
}
