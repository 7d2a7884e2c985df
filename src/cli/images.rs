//! Arguments shared by the commands that read images: preprocessing and batching.

use clap::Args;

use crate::cli::model::{EngineFlag, ModelFlags};
use vgg::data::preprocess::Preprocess;
use vgg::error::{Error, Result};
use vgg::infer::Classifier;

#[derive(Debug, Clone, Args)]
pub struct PreprocessArgs {
    /// imagenet (torchvision's weights) or caffe (vgg16_features weights)
    #[arg(long, default_value = "imagenet")]
    pub preset: String,
    /// Shorter side after resizing [preset: 256]
    #[arg(long, value_name = "N")]
    pub resize: Option<usize>,
    /// Center crop size [preset: 224]
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
    pub fn preprocess(&self) -> Result<Preprocess> {
        let mut p = Preprocess::preset(&self.preset)?;
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
}

impl ClassifierArgs {
    /// The model `flags` name, ready for batches of up to `batch_size` images, and the
    /// preprocessing that makes them.
    pub fn build(&self, flags: &ModelFlags, batch_size: usize) -> Result<(Classifier, Preprocess)> {
        let preprocess = self.preprocess.preprocess()?;
        let size = [preprocess.crop, preprocess.crop];
        let backend = (flags.source()?).backend(self.engine.into(), batch_size, size)?;
        let classifier = Classifier {
            backend,
            tta_flip: self.tta.is_some(),
        };
        Ok((classifier, preprocess))
    }
}

fn three_numbers(flag: &str, text: &str) -> Result<[f32; 3]> {
    let values: Vec<f32> = text
        .split(',')
        .map(|v| v.trim().parse::<f32>().ok().filter(|v| v.is_finite()))
        .collect::<Option<_>>()
        .ok_or_else(|| {
            Error::BadArgument(format!(
                "{flag} `{text}`: expected three numbers like 0.5,0.5,0.5"
            ))
        })?;
    values.try_into().map_err(|_| {
        Error::BadArgument(format!(
            "{flag} `{text}`: expected exactly three numbers (R,G,B)"
        ))
    })
}
