//! The paper's evaluation protocols (Simonyan & Zisserman, §3.2 and Table 5): besides the
//! single centre crop, *dense* evaluation (the fully convolutional network on the whole
//! image, its class score map averaged over space, the mirrored image's posteriors averaged
//! in) and *multi-crop* evaluation (a 5×5 grid of native-size crops and their mirrors), each
//! over several test scales (the image's shorter side rescaled to each Q), posteriors
//! averaged over scales; and both combined. `scripts/make_protocol_fixtures.py` is the
//! PyTorch reference these are tested against.

use candle_core::{Device, Tensor};
use image::RgbImage;

use crate::data::preprocess::{Preprocess, resize_shorter_side, shorter_side_size};
use crate::engine::{PlanOptions, Precision};
use crate::error::{Error, Result};
use crate::fast::FastVgg;
use crate::infer::{Backend, Classifier, Engine};
use crate::limits::{array_bytes, reserve, too_large};
use crate::model::footprint::{self, Work};
use crate::model::{Mode, Vgg, VggConfig};

/// How each image is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// torchvision's: resize, one centre crop.
    #[default]
    Center,
    /// The whole image at each scale through the dense network, plus its mirror image.
    Dense,
    /// Per scale a 5×5 grid of crops and their mirror images (50 views).
    MultiCrop,
    /// The mean of the dense and multi-crop posteriors (the paper's best, Table 5).
    #[serde(rename = "dense+multi-crop")]
    DenseMultiCrop,
}

impl std::str::FromStr for Protocol {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "center" => Ok(Protocol::Center),
            "dense" => Ok(Protocol::Dense),
            "multi-crop" => Ok(Protocol::MultiCrop),
            "dense+multi-crop" => Ok(Protocol::DenseMultiCrop),
            other => Err(Error::BadArgument(format!(
                "unknown protocol `{other}`; valid: center, dense, multi-crop, dense+multi-crop"
            ))),
        }
    }
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Center => "center",
            Protocol::Dense => "dense",
            Protocol::MultiCrop => "multi-crop",
            Protocol::DenseMultiCrop => "dense+multi-crop",
        }
    }

    /// Whether it runs the dense network.
    pub fn dense(self) -> bool {
        matches!(self, Protocol::Dense | Protocol::DenseMultiCrop)
    }

    /// Whether it runs the grid of crops.
    pub fn multi_crop(self) -> bool {
        matches!(self, Protocol::MultiCrop | Protocol::DenseMultiCrop)
    }

    /// Refuses a precision this protocol's engines do not compute in: the dense and
    /// multi-crop engines are compiled without an int8 calibration.
    pub fn check_precision(self, precision: Precision) -> Result<()> {
        if precision == Precision::Int8 && self != Protocol::Center {
            return Err(Error::BadArgument(format!(
                "int8 evaluates with the center protocol only (the {} protocol's engines \
                 compute in f32 or bf16)",
                self.name()
            )));
        }
        Ok(())
    }
}

/// The paper's test scales (Table 5: Q ∈ {256, 384, 512}), for its 224×224 crops.
pub const PAPER_SCALES: [usize; 3] = [256, 384, 512];

/// How a model was trained to see images (paper §3.1), which the paper's protocols choose
/// their test scales by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainingScale {
    /// Its shorter side resized to one size S.
    Fixed(usize),
    /// The paper's best models' scale augmentation (torchvision's were trained with one
    /// too): S jittered over [256, 512] for 224 crops, in proportion to the crop.
    Paper,
}

impl TrainingScale {
    /// The test scales Q the paper evaluates such a model at (§4.1-4.2): {S − 32, S, S + 32}
    /// for a fixed S (32 pixels at 224 crops, in proportion to `crop`), {256, 384, 512} for
    /// its jittered ones (in proportion to `crop`); none below `crop`, each once.
    pub fn test_scales(self, crop: usize) -> Vec<usize> {
        let mut scales = match self {
            TrainingScale::Fixed(s) => {
                let margin = (32 * crop).div_ceil(224).max(1);
                vec![s.saturating_sub(margin), s, s.saturating_add(margin)]
            }
            TrainingScale::Paper => (PAPER_SCALES.iter())
                .map(|&q| (q.saturating_mul(crop) + 112) / 224)
                .collect(),
        };
        scales.retain(|&q| q >= crop);
        scales.dedup();
        if scales.is_empty() {
            scales.push(crop);
        }
        scales
    }
}

/// Crops per side of the multi-crop grid.
const GRID: usize = 5;

/// Crops per scale (before mirroring).
pub const GRID_CROPS: usize = GRID * GRID;

/// A normalised CHW image of one size.
#[derive(Debug, Clone)]
pub struct View {
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

impl View {
    /// The image with its shorter side resized to `q`, normalised.
    pub fn of(image: &RgbImage, q: usize, preprocess: &Preprocess) -> Result<View> {
        let resized = resize_shorter_side(image, q)?;
        Ok(View {
            height: resized.height() as usize,
            width: resized.width() as usize,
            data: preprocess.normalise(&resized),
        })
    }
}

/// The dense network: the reference model's dense form or a dense engine plan.
pub enum DenseBackend {
    Reference(Vgg),
    Fast(FastVgg),
}

impl DenseBackend {
    pub(crate) fn config(&self) -> &VggConfig {
        match self {
            DenseBackend::Reference(model) => model.config(),
            DenseBackend::Fast(engine) => engine.config(),
        }
    }

    /// The class score map of `view` and of its mirror image, each averaged over space:
    /// two rows of logits.
    fn mean_scores(&mut self, view: &View) -> Result<Tensor> {
        let image = |flip| super::stack(&[&view.data], view.height, view.width, flip, &Device::Cpu);
        let x = Tensor::cat(&[image(false)?, image(true)?], 0)?;
        let map = match self {
            DenseBackend::Reference(model) => model.forward(&x, Mode::Eval)?,
            DenseBackend::Fast(engine) => {
                let (n, h, w) = (2, view.height, view.width);
                let (scores, mh, mw) = engine.score_map(&x.flatten_all()?.to_vec1()?, h, w)?;
                let classes = scores.len() / (n * mh * mw);
                Tensor::from_vec(scores, (n, classes, mh, mw), &Device::Cpu)?
            }
        };
        Ok(map.mean((2, 3))?)
    }
}

/// A protocol over test scales, with what it needs to run.
pub struct ScaleProtocol {
    pub protocol: Protocol,
    /// Shorter-side sizes Q.
    pub scales: Vec<usize>,
    /// Side of the multi-crop crops: the size the network was trained and is evaluated at
    /// (the paper's 224).
    pub crop: usize,
    /// The dense network, for the dense protocols.
    pub dense: Option<DenseBackend>,
}

impl ScaleProtocol {
    /// Checks the scales against the windows each protocol evaluates: every view must hold
    /// a multi-crop crop, and a window of the dense network's fc6.
    pub fn validate(&self) -> Result<()> {
        if self.scales.is_empty() {
            return Err(Error::BadArgument(
                "--scales needs at least one size, e.g. 256,384,512".into(),
            ));
        }
        let windows = [
            (
                self.protocol.multi_crop(),
                self.crop,
                "the multi-crop crop size",
            ),
            (
                self.protocol.dense(),
                self.dense
                    .as_ref()
                    .map_or(0, |d| d.config().native_input_size()),
                "the dense network's native size",
            ),
        ];
        for (used, size, what) in windows {
            if let Some(&q) = self.scales.iter().find(|&&q| used && q < size) {
                return Err(Error::BadArgument(format!(
                    "--scales {q}: every scale must be at least {what} {size} (the {} \
                     protocol evaluates {size}×{size} windows)",
                    self.protocol.name()
                )));
            }
        }
        if self.protocol.dense() && self.dense.is_none() {
            return Err(Error::BadArgument(
                "the dense protocols need the dense network".into(),
            ));
        }
        Ok(())
    }

    /// Mean dense posterior over the scales: per view, softmax of the spatially averaged
    /// score map, averaged with the mirror image's.
    pub fn dense_posterior(&mut self, views: &[View]) -> Result<Tensor> {
        let dense = self
            .dense
            .as_mut()
            .expect("validated: dense protocols have one");
        let mut sum: Option<Tensor> = None;
        for view in views {
            let probs = super::probabilities(&dense.mean_scores(view)?, dense.config())?;
            let probs = probs.mean(0)?;
            sum = Some(match sum {
                Some(s) => (s + probs)?,
                None => probs,
            });
        }
        Ok((sum.expect("validated: at least one scale") / views.len() as f64)?)
    }
}

/// Refuses an image of `(width, height)` (neither 0) whose views at the test `scales` would
/// not fit the memory budget, before any is made: the normalised f32 views, held together,
/// each beside the resized u8 image it is made from (the resize checks its own passes),
/// and under a `dense` protocol the network's pass over each view and its mirror image.
pub fn check_views(
    scales: &[usize],
    dense: Option<&VggConfig>,
    (width, height): (usize, usize),
) -> Result<()> {
    let mut views: u64 = 0;
    for &q in scales {
        let what = || format!("--scales {q} on a {width}x{height} image: ");
        let (w, h) = shorter_side_size(width, height, q).ok_or_else(|| too_large(what()))?;
        let view = array_bytes(&[3, w, h], 4 + 1);
        views = view
            .and_then(|v| v.checked_add(views))
            .ok_or_else(|| too_large(what()))?;
        reserve(Some(views), || format!("{}the views", what()))?;
        if let Some(config) = dense {
            let input = [2, config.in_channels(), h, w];
            footprint::check(config, input, Work::Inference, what)?;
        }
    }
    Ok(())
}

/// The crops of the multi-crop grid of a `height × width` view: offsets
/// `⌊i·(H − S)/4⌋`, `⌊j·(W − S)/4⌋` for `i, j` in `0..5`, row by row.
pub fn grid_crops(view: &View, crop: usize) -> Vec<Vec<f32>> {
    let offsets =
        |size: usize| -> Vec<usize> { (0..GRID).map(|i| i * (size - crop) / (GRID - 1)).collect() };
    let (tops, lefts) = (offsets(view.height), offsets(view.width));
    let plane = view.height * view.width;
    let mut crops = Vec::with_capacity(GRID * GRID);
    for &top in &tops {
        for &left in &lefts {
            let mut data = Vec::with_capacity(3 * crop * crop);
            for channel in view.data.chunks_exact(plane) {
                for y in top..top + crop {
                    let row = y * view.width + left;
                    data.extend_from_slice(&channel[row..row + crop]);
                }
            }
            crops.push(data);
        }
    }
    crops
}

/// A classifier that evaluates each image of `model` with a scale `protocol` (not
/// `center`) at the test `scales`, on `engine`; multi-crop takes `crop × crop` crops (the
/// size the model was trained at), up to `batch` at once.
pub fn scale_classifier(
    model: &Vgg,
    engine: Engine,
    batch: usize,
    protocol: Protocol,
    scales: &[usize],
    crop: usize,
) -> Result<Classifier> {
    if let Engine::Fast(precision) = engine {
        protocol.check_precision(precision)?;
    }
    let config = model.config();
    let mut scales = ScaleProtocol {
        protocol,
        scales: scales.to_vec(),
        crop,
        dense: None,
    };
    if protocol.dense() {
        scales.dense = Some(dense_backend(model, engine)?);
    }
    scales.validate()?;
    let crops = [batch.clamp(1, GRID_CROPS), config.in_channels(), crop, crop];
    let backend = match (engine, protocol.multi_crop()) {
        (Engine::Fast(_), true) => {
            Backend::Fast(FastVgg::from_model(model, crops, engine.plan_options())?)
        }
        _ => Backend::Reference(model.share()),
    };
    Ok(Classifier {
        backend,
        tta_flip: false,
        scales: Some(scales),
    })
}

/// The dense network (paper §3.2) of `model`: the engine's dense plan, compiled for an
/// image and its mirror image at the native size (it follows each image's size), or the
/// reference model's dense form.
fn dense_backend(model: &Vgg, engine: Engine) -> Result<DenseBackend> {
    Ok(match engine {
        Engine::Fast(_) => {
            let native = model.config().native_input_size();
            let input = [2, model.config().in_channels(), native, native];
            let options = PlanOptions {
                dense: true,
                ..engine.plan_options()
            };
            DenseBackend::Fast(FastVgg::from_model(model, input, options)?)
        }
        Engine::Reference => DenseBackend::Reference(model.dense()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_scales_follow_the_training_scale_as_in_the_paper() {
        assert_eq!(TrainingScale::Paper.test_scales(224), PAPER_SCALES);
        assert_eq!(TrainingScale::Paper.test_scales(112), [128, 192, 256]);
        assert_eq!(TrainingScale::Fixed(256).test_scales(224), [224, 256, 288]);
        // A digits net trained at 32: 32 ± 5, none below the crop.
        assert_eq!(TrainingScale::Fixed(32).test_scales(32), [32, 37]);
        assert_eq!(TrainingScale::Fixed(20).test_scales(32), [32]);
    }
}
