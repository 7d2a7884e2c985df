//! Arguments shared by the commands that read images: preprocessing and batching.

use std::path::PathBuf;

use clap::Args;

use crate::cli::model::{self, EngineFlag, ModelFlags};
use crate::cli::progress::Bar;
use vgg::data::preprocess::Preprocess;
use vgg::engine::Precision;
use vgg::error::{Error, Result};
use vgg::infer::protocol::{Protocol, TrainingScale};
use vgg::infer::{Classifier, Engine};
use vgg::open::ModelSource;
use vgg::quantize::{CalibrationOptions, calibrate_on_images};

#[derive(Debug, Clone, Args)]
pub struct PreprocessArgs {
    /// imagenet (torchvision's weights) or caffe (vgg16_features weights) [default: what a
    /// `vgg train` checkpoint was trained with, else imagenet]
    #[arg(long)]
    pub preset: Option<String>,
    /// Shorter side after resizing [default: the checkpoint's or the preset's: 256]
    #[arg(long, value_name = "N")]
    pub resize: Option<usize>,
    /// Center crop size [default: the checkpoint's or the preset's: 224]
    #[arg(long, value_name = "N")]
    pub crop: Option<usize>,
    /// Per-channel mean in [0, 1] units, e.g. 0.485,0.456,0.406
    #[arg(long, value_name = "R,G,B", allow_hyphen_values = true)]
    pub mean: Option<String>,
    /// Per-channel std in [0, 1] units, e.g. 0.229,0.224,0.225
    #[arg(long, value_name = "R,G,B", allow_hyphen_values = true)]
    pub std: Option<String>,
    /// Turn photos upright by their EXIF orientation first (torchvision does not)
    #[arg(long)]
    pub exif_orientation: bool,
}

impl PreprocessArgs {
    /// The preset (imagenet unless named) with the flags' changes: for images without a model.
    pub fn preprocess(&self) -> Result<Preprocess> {
        let preset = self.preset.as_deref().unwrap_or("imagenet");
        self.over(Preprocess::preset(preset)?)
    }

    /// The model's own preprocessing (what a `vgg train` checkpoint recorded; ImageNet's
    /// otherwise) unless `--preset` names another, with the flags' changes.
    pub fn preprocess_for(&self, source: &ModelSource) -> Result<Preprocess> {
        match &self.preset {
            Some(name) => self.over(Preprocess::preset(name)?),
            None => self.over(source.preprocess()?),
        }
    }

    fn over(&self, mut p: Preprocess) -> Result<Preprocess> {
        p.resize = self.resize.unwrap_or(p.resize);
        p.crop = self.crop.unwrap_or(p.crop);
        if let Some(mean) = &self.mean {
            p.mean = three_numbers("--mean", mean)?;
        }
        if let Some(std) = &self.std {
            p.std = three_numbers("--std", std)?;
        }
        p.exif_orientation = self.exif_orientation;
        p.validate()?;
        Ok(p)
    }
}

/// What `classify` and `evaluate` share: how images become inputs, which engine runs them,
/// and test-time augmentation.
#[derive(Debug, Clone, Args)]
pub struct ClassifierArgs {
    /// Test-time augmentation: `flip` averages the mirrored image's probabilities
    #[arg(long, value_parser = ["flip"])]
    pub tta: Option<String>,
    #[command(flatten)]
    pub preprocess: PreprocessArgs,
    /// fast: the CPU engine; reference: the module-by-module model (our CPU ops on candle tensors, as training runs them)
    #[arg(long, value_enum, default_value_t = EngineFlag::Fast)]
    pub engine: EngineFlag,
    /// Number format of the fast engine's products: f32; bf16 (bf16 operands, f32
    /// accumulation; AVX512_BF16 where the CPU has it, a slower exact emulation elsewhere);
    /// int8 (u8 × s8 with i32 sums, layers calibrated by `vgg quantize` or --calib; AVX512_VNNI
    /// where the CPU has it, an exact emulation elsewhere)
    #[arg(long, default_value = "f32", value_parser = model::parse_precision)]
    pub precision: Precision,
    /// Calibrate --precision int8 at load on the images found here (instead of the
    /// calibration the weights file records)
    #[arg(long, value_name = "DIR")]
    pub calib: Option<PathBuf>,
    /// Calibrate on the first N images --calib holds
    #[arg(long, value_name = "N", default_value_t = 128, requires = "calib")]
    pub calib_images: usize,
    /// How each image is evaluated: center (one crop), or the paper's dense, multi-crop
    /// (5×5 crops of --crop's size × 2 flips per scale) or dense+multi-crop, over --scales
    #[arg(long, default_value = "center", value_parser = parse_protocol)]
    pub protocol: Protocol,
    /// Test scales Q of the dense and multi-crop protocols: the shorter side is resized to
    /// each, posteriors are averaged over them [default: the paper's choice for the
    /// training scale S: S-32,S,S+32 for a checkpoint trained here at a fixed S (32 at
    /// 224 crops, in proportion to --crop), else 256,384,512 (in proportion to --crop)]
    #[arg(long, value_name = "Q,Q,…")]
    pub scales: Option<String>,
}

fn parse_protocol(text: &str) -> std::result::Result<Protocol, String> {
    text.parse().map_err(|e: Error| e.to_string())
}

impl ClassifierArgs {
    /// The model `flags` name, ready for batches of up to `batch_size` images, and the
    /// preprocessing that makes them.
    pub fn build(&self, flags: &ModelFlags, batch_size: usize) -> Result<(Classifier, Preprocess)> {
        let engine = self.engine()?;
        let mut source = flags.source()?;
        let preprocess = self.preprocess.preprocess_for(&source)?;
        if let Some(dir) = &self.calib {
            if self.calib_images == 0 {
                return Err(Error::BadArgument(
                    "--calib-images must be at least 1".into(),
                ));
            }
            let options = CalibrationOptions::default();
            let dirs = [dir.clone()];
            let limit = self.calib_images;
            let bar = Bar::default();
            let calibrated =
                calibrate_on_images(&source, &dirs, &preprocess, limit, options, &bar)?;
            source.int8 = Some(calibrated.calibration);
        }
        let scales = self.scales(source.training_scale()?, preprocess.crop)?;
        let classifier = source.classifier(
            engine,
            batch_size,
            &preprocess,
            self.protocol,
            &scales,
            self.tta.is_some(),
        )?;
        Ok((classifier, preprocess))
    }

    /// The engine `--engine` and `--precision` name; callers check it before reading data.
    pub fn engine(&self) -> Result<Engine> {
        if self.calib.is_some() && self.precision != Precision::Int8 {
            return Err(Error::BadArgument(
                "--calib calibrates int8: add --precision int8".into(),
            ));
        }
        self.protocol.check_precision(self.precision)?;
        model::engine(self.engine, self.precision)
    }

    /// `--scales`, which only the paper's protocols take; by default those the paper pairs
    /// with the model's `training` scale, for `crop`-sized crops.
    fn scales(&self, training: TrainingScale, crop: usize) -> Result<Vec<usize>> {
        let centre = self.protocol == Protocol::Center;
        match &self.scales {
            None => Ok(training.test_scales(crop)),
            Some(_) if centre => Err(Error::BadArgument(
                "--scales goes with --protocol dense, multi-crop or dense+multi-crop; \
                 center uses --resize and --crop"
                    .into(),
            )),
            Some(text) => text
                .split(',')
                .map(|q| q.trim().parse::<usize>().ok().filter(|&q| q > 0))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    Error::BadArgument(format!(
                        "--scales `{text}`: expected sizes like 256,384,512"
                    ))
                }),
        }
    }
}

fn three_numbers(flag: &str, text: &str) -> Result<[f32; 3]> {
    let values: Vec<f32> = text
        .split(',')
        .map(|v| v.trim().parse::<f32>().ok())
        .collect::<Option<_>>()
        .ok_or_else(|| {
            Error::BadArgument(format!(
                "{flag} `{text}`: expected three numbers like 0.5,0.5,0.5"
            ))
        })?;
    if values.iter().any(|v| !v.is_finite()) {
        return Err(Error::BadArgument(format!(
            "{flag} `{text}`: values must be finite float32 numbers (at most ~3.4e38)"
        )));
    }
    values.try_into().map_err(|_| {
        Error::BadArgument(format!(
            "{flag} `{text}`: expected exactly three numbers (R,G,B)"
        ))
    })
}
