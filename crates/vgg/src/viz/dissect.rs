//! Looking inside a network for one image (`vgg dissect`): what each conv block responds to,
//! what the first layer's filters look like, and where the evidence for the top class lies
//! (Grad-CAM), gathered into one self-contained HTML page ([`crate::viz::report`]).

use candle_core::{D, Device, Tensor};

use crate::data::preprocess::Preprocess;
use crate::error::{Error, Result};
use crate::infer::top_k;
use crate::model::layers::stages;
use crate::model::{Mode, Vgg};
use crate::summary::{Summary, torchsummary};
use crate::viz::gradcam::{grad_cam, target_layer};
use crate::viz::grid::{MAX_CHANNELS, feature_grid, filter_grid, overlay, png};

/// How many classes the report lists.
pub const TOP_CLASSES: usize = 5;

/// One picture of the report: its file name in the output folder, a caption, PNG bytes.
#[derive(Debug, Clone)]
pub struct Figure {
    pub file: String,
    pub caption: String,
    pub png: Vec<u8>,
}

/// Everything `vgg dissect` shows for one image.
#[derive(Debug, Clone)]
pub struct Dissection {
    pub model: String,
    /// The preprocessed input, de-normalised back to RGB.
    pub input: Figure,
    /// Grad-CAM for the top class over the input.
    pub gradcam: Figure,
    /// The output of each conv block (each max-pool in `features`), in order.
    pub stages: Vec<Figure>,
    pub filters: Figure,
    /// The most probable classes: name and probability, most probable first.
    pub top: Vec<(String, f32)>,
    /// torchsummary's table for the model at this input size.
    pub summary: String,
}

impl Dissection {
    pub fn figures(&self) -> impl Iterator<Item = &Figure> {
        [&self.input, &self.gradcam]
            .into_iter()
            .chain(&self.stages)
            .chain([&self.filters])
    }
}

/// Dissects `model` on one preprocessed image (CHW, `preprocess.crop` square); `labels`
/// names the classes. One forward pass gives every stage's output and Grad-CAM's activation.
pub fn dissect(
    model: &Vgg,
    image: &[f32],
    preprocess: &Preprocess,
    labels: &[String],
) -> Result<Dissection> {
    crate::infer::check_takes_images(model.config())?;
    let size = preprocess.crop;
    let x = Tensor::from_vec(image.to_vec(), (1, 3, size, size), &Device::Cpu)?;
    let target = target_layer(model)?;
    let pools: Vec<usize> = stages(model.layers())
        .iter()
        .filter_map(|s| s.pool)
        .collect();
    let mut marks = pools.clone();
    marks.push(target);
    marks.sort_unstable();
    let paths: Vec<String> = marks.iter().map(|&i| model.layers()[i].path()).collect();
    let names: Vec<&str> = paths.iter().map(String::as_str).collect();
    let outputs = model.forward_taps(&x, Mode::Eval, &names)?;
    let output = |layer: usize| &outputs[marks.binary_search(&layer).expect("a marked layer")];

    let cam = grad_cam(model, output(target), None)?;
    let top = top_classes(&cam.logits, labels)?;

    let input = preprocess.denormalise(image, size as u32);
    let heat = overlay(&input, &cam.upsample(size, size));
    let figure = |file: &str, caption: String, png: Vec<u8>| Figure {
        file: file.into(),
        caption,
        png,
    };
    let stages = (pools.iter().enumerate())
        .map(|(i, &pool)| stage_figure(model, i + 1, pool, output(pool)))
        .collect::<Result<_>>()?;
    let first_conv = first_conv_weight(model)?;
    Ok(Dissection {
        model: model.config().name().to_string(),
        input: figure(
            "input.png",
            format!("Input: the {size}×{size} crop the network sees"),
            png(input)?,
        ),
        gradcam: figure(
            "gradcam.png",
            format!(
                "Grad-CAM for “{}” at {}",
                labels[cam.class],
                model.layers()[target].path()
            ),
            png(heat)?,
        ),
        stages,
        filters: figure(
            "filters.png",
            format!("features.0: {} filters, 3×3 RGB", first_conv.dim(0)?),
            png(filter_grid(&first_conv)?)?,
        ),
        top,
        summary: torchsummary::render(&Summary::new(model.config(), 1, [3, size, size], &[])?, -1),
    })
}

/// The [`TOP_CLASSES`] most probable classes of `logits`, named by `labels`.
fn top_classes(logits: &[f32], labels: &[String]) -> Result<Vec<(String, f32)>> {
    let logits = Tensor::new(logits, &Device::Cpu)?;
    let probs = candle_nn::ops::softmax(&logits, D::Minus1)?.to_vec1::<f32>()?;
    Ok(top_k(&probs, TOP_CLASSES)
        .into_iter()
        .map(|p| (labels[p.index].clone(), p.prob))
        .collect())
}

/// Stage `number`'s picture: the most active channels of `activation`, the output of its
/// max-pool (layer `pool`).
fn stage_figure(model: &Vgg, number: usize, pool: usize, activation: &Tensor) -> Result<Figure> {
    let (_, c, h, w) = activation.dims4()?;
    Ok(Figure {
        file: format!("stage{number}.png"),
        caption: format!(
            "Stage {number}: {} output, {c}×{h}×{w}; {} most active channels",
            model.layers()[pool].path(),
            c.min(MAX_CHANNELS)
        ),
        png: png(feature_grid(activation)?)?,
    })
}

fn first_conv_weight(model: &Vgg) -> Result<Tensor> {
    model
        .parameters()
        .into_iter()
        .find(|(key, _)| key == "features.0.weight")
        .map(|(_, var)| var.as_detached_tensor())
        .ok_or_else(|| Error::BadArgument(format!("{} has no features.0", model.config().name())))
}
