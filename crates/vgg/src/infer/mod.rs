//! Inference on preprocessed images: softmax probabilities on either engine, optional flip
//! test-time augmentation (the paper averages the flipped image's class posteriors), top-k;
//! and the pipelines over files built on them: [`classify`], [`evaluate`], [`features`].

pub mod classify;
pub mod evaluate;
pub mod features;
pub mod protocol;

use candle_core::{D, Device, Tensor};

use image::RgbImage;

use crate::data::preprocess::Preprocess;
use crate::engine::{PlanOptions, Precision};
use crate::error::{Error, Result};
use crate::fast::FastVgg;
use crate::infer::protocol::{DenseBackend, Protocol, ScaleProtocol, View, grid_crops};
use crate::model::{Mode, Vgg, VggConfig};

/// A class and its probability.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Prediction {
    pub index: usize,
    pub prob: f32,
}

/// Which implementation runs a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The CPU engine: Winograd convolutions, fused layers, folded batch norm and pooling,
    /// computing in this precision.
    Fast(Precision),
    /// The module-by-module model: our CPU ops on candle tensors, as training runs them (f32).
    Reference,
}

impl Default for Engine {
    fn default() -> Self {
        Engine::Fast(Precision::F32)
    }
}

impl Engine {
    /// The engine `--engine` names, computing in `precision`: only the fast engine has a
    /// precision other than f32.
    pub fn new(fast: bool, precision: Precision) -> Result<Engine> {
        match (fast, precision) {
            (true, p) => Ok(Engine::Fast(p)),
            (false, Precision::F32) => Ok(Engine::Reference),
            (false, p) => Err(Error::BadArgument(format!(
                "--precision {p} runs on the fast engine; --engine reference computes in f32"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Engine::Fast(Precision::F32) => "fast",
            Engine::Fast(Precision::Bf16) => "fast bf16",
            Engine::Fast(Precision::Int8) => "fast int8",
            Engine::Reference => "reference",
        }
    }

    /// Plan options for the fast engine in this engine's precision.
    pub fn plan_options(self) -> PlanOptions {
        let precision = match self {
            Engine::Fast(p) => p,
            Engine::Reference => Precision::F32,
        };
        PlanOptions {
            precision,
            ..PlanOptions::default()
        }
    }
}

/// A compiled or module-by-module network, ready to run.
pub enum Backend {
    /// The module-by-module model (our CPU ops on candle tensors, as training runs them): any batch size.
    Reference(Vgg),
    /// The CPU engine, compiled for `[batch, C, H, W]`; smaller batches are zero-padded.
    Fast(FastVgg),
}

impl Backend {
    /// The engine this backend is (the fast one with its precision).
    pub fn engine(&self) -> Engine {
        match self {
            Backend::Reference(_) => Engine::Reference,
            Backend::Fast(engine) => Engine::Fast(engine.precision()),
        }
    }

    pub fn config(&self) -> &VggConfig {
        match self {
            Backend::Reference(model) => model.config(),
            Backend::Fast(engine) => engine.config(),
        }
    }

    /// The most images one call takes (the engine's compiled batch).
    fn capacity(&self) -> usize {
        match self {
            Backend::Reference(_) => usize::MAX,
            Backend::Fast(engine) => engine.input_shape()[0],
        }
    }

    /// The network's outputs for `x`: logits, or probabilities when its head ends with a
    /// softmax.
    fn outputs(&mut self, x: Tensor) -> Result<Tensor> {
        match self {
            Backend::Reference(model) => model.forward(&x, Mode::Eval),
            Backend::Fast(engine) => {
                let n = x.dim(0)?;
                let capacity = engine.input_shape()[0];
                if n > capacity {
                    return Err(Error::BadArgument(format!(
                        "a batch of {n} exceeds the engine's {capacity}"
                    )));
                }
                let padded = if n < capacity {
                    x.pad_with_zeros(0, 0, capacity - n)?
                } else {
                    x
                };
                Ok(engine.forward(&padded)?.narrow(0, 0, n)?)
            }
        }
    }
}

/// Runs a model on batches of CHW images of one size.
pub struct Classifier {
    pub backend: Backend,
    /// Average the probabilities of each image and its mirror image.
    pub tta_flip: bool,
    /// The paper's dense / multi-crop evaluation over test scales; `None`: one centre crop.
    pub scales: Option<ScaleProtocol>,
}

/// An image made ready for a [`Classifier`]: its centre crop, or its views at every test scale.
pub enum Prepared {
    Crop(Vec<f32>),
    Scales(Vec<View>),
}

/// How images become [`Prepared`] inputs: cheap to clone, so loader threads can prepare
/// images while the network runs.
#[derive(Debug, Clone)]
pub struct Preparation {
    pub preprocess: Preprocess,
    /// The test scales of a scale protocol.
    pub scales: Option<Vec<usize>>,
    /// A dense protocol's network, which each view runs through whole.
    pub dense: Option<VggConfig>,
}

impl Preparation {
    pub fn prepare(&self, image: &RgbImage) -> Result<Prepared> {
        let Some(scales) = &self.scales else {
            return Ok(Prepared::Crop(self.preprocess.apply(image)?));
        };
        let size = (image.width() as usize, image.height() as usize);
        protocol::check_views(scales, self.dense.as_ref(), size)?;
        let views = scales
            .iter()
            .map(|&q| View::of(image, q, &self.preprocess))
            .collect::<Result<_>>()?;
        Ok(Prepared::Scales(views))
    }
}

impl Classifier {
    /// A classifier with one centre crop (and optional flip).
    pub fn new(backend: Backend, tta_flip: bool) -> Self {
        Classifier {
            backend,
            tta_flip,
            scales: None,
        }
    }

    /// The engine that computes the posteriors: the dense network's under a dense
    /// protocol (the crops' backend then only serves multi-crop), else the backend's.
    pub fn engine(&self) -> Engine {
        match self.scales.as_ref().and_then(|s| s.dense.as_ref()) {
            Some(DenseBackend::Fast(engine)) => Engine::Fast(engine.precision()),
            Some(DenseBackend::Reference(_)) => Engine::Reference,
            None => self.backend.engine(),
        }
    }

    /// The protocol each image is evaluated with.
    pub fn protocol(&self) -> Protocol {
        self.scales
            .as_ref()
            .map_or(Protocol::Center, |s| s.protocol)
    }

    /// What [`Classifier::posteriors`] expects, made by `preprocess`.
    pub fn preparation(&self, preprocess: &Preprocess) -> Preparation {
        let dense = self.scales.as_ref().and_then(|s| s.dense.as_ref());
        Preparation {
            preprocess: preprocess.clone(),
            scales: self.scales.as_ref().map(|s| s.scales.clone()),
            dense: dense.map(|d| d.config().clone()),
        }
    }

    /// Class probabilities, one row per prepared image, under the classifier's protocol.
    pub fn posteriors(&mut self, images: &[&Prepared], crop: usize) -> Result<Vec<Vec<f32>>> {
        let crops: Vec<&[f32]> = images
            .iter()
            .filter_map(|p| match p {
                Prepared::Crop(data) => Some(data.as_slice()),
                Prepared::Scales(_) => None,
            })
            .collect();
        if crops.len() == images.len() {
            return if crops.is_empty() {
                Ok(Vec::new())
            } else {
                self.probabilities(&crops, crop, crop)
            };
        }
        images
            .iter()
            .map(|p| match p {
                Prepared::Scales(views) => self.scale_posterior(views),
                Prepared::Crop(_) => Err(Error::BadArgument(
                    "a batch mixes centre crops and test scales".into(),
                )),
            })
            .collect()
    }

    /// One image's posterior under the scale protocol: dense, multi-crop, or their mean.
    fn scale_posterior(&mut self, views: &[View]) -> Result<Vec<f32>> {
        let Some(scales) = self.scales.as_mut() else {
            return Err(Error::BadArgument(
                "test scales given to a centre-crop classifier".into(),
            ));
        };
        let (protocol, crop) = (scales.protocol, scales.crop);
        let dense = if protocol.dense() {
            Some(scales.dense_posterior(views)?)
        } else {
            None
        };
        let crops = if protocol.multi_crop() {
            Some(self.multi_crop_posterior(views, crop)?)
        } else {
            None
        };
        let posterior = match (dense, crops) {
            (Some(d), Some(c)) => ((d + c)? * 0.5)?,
            (Some(p), None) | (None, Some(p)) => p,
            (None, None) => unreachable!("scale protocols are dense or multi-crop"),
        };
        Ok(posterior.to_vec1()?)
    }

    /// Mean over scales of the mean softmax of the grid's crops and their mirror images.
    fn multi_crop_posterior(&mut self, views: &[View], crop: usize) -> Result<Tensor> {
        let mut sum: Option<Tensor> = None;
        for view in views {
            let crops = grid_crops(view, crop);
            let slices: Vec<&[f32]> = crops.iter().map(Vec::as_slice).collect();
            for chunk in slices.chunks(self.backend.capacity().min(slices.len())) {
                for flip in [false, true] {
                    let probs = self.softmax(chunk, crop, crop, flip)?.sum(0)?;
                    sum = Some(match sum {
                        Some(s) => (s + probs)?,
                        None => probs,
                    });
                }
            }
        }
        let views_seen = (views.len() * 2 * crate::infer::protocol::GRID_CROPS) as f64;
        Ok((sum.expect("at least one scale") / views_seen)?)
    }

    /// Class probabilities, one row per image; `images` are CHW tensors of `[3, size, size]`.
    pub fn probabilities(
        &mut self,
        images: &[&[f32]],
        height: usize,
        width: usize,
    ) -> Result<Vec<Vec<f32>>> {
        let probs = self.softmax(images, height, width, false)?;
        if !self.tta_flip {
            return Ok(probs.to_vec2()?);
        }
        let flipped = self.softmax(images, height, width, true)?;
        Ok(((probs + flipped)? * 0.5)?.to_vec2()?)
    }

    fn softmax(
        &mut self,
        images: &[&[f32]],
        height: usize,
        width: usize,
        flip: bool,
    ) -> Result<Tensor> {
        let x = stack(images, height, width, flip, &Device::Cpu)?;
        let outputs = self.backend.outputs(x)?;
        probabilities(&outputs, self.backend.config())
    }
}

/// The batch size to compile for `images` images when `requested` was asked for: never
/// larger than the images (a plan's memory grows with its batch). A request of 0 is refused.
pub fn batch_for(requested: usize, images: usize) -> Result<usize> {
    match requested {
        0 => Err(Error::BadArgument("--batch-size must be at least 1".into())),
        _ => Ok(requested.min(images.max(1))),
    }
}

/// Refuses to feed images to a network that does not take 3 channels: they decode to RGB,
/// and the mismatch would otherwise surface as an engine's shape error.
pub fn check_takes_images(config: &VggConfig) -> Result<()> {
    match config.in_channels() {
        3 => Ok(()),
        n => Err(Error::BadArgument(format!(
            "images decode to 3 channels (RGB), and this {} network takes {n}; run it on \
             {n}-channel arrays (`vgg forward --input X.npy`, or calling the model in Python)",
            config.name()
        ))),
    }
}

/// Class probabilities over the last dimension of a network's `outputs`: the outputs
/// themselves when its head ends with a softmax, else their softmax. Outputs with NaN or
/// infinity are an error, not a ranking: finite weights (a diverged run's) can overflow.
pub fn probabilities(outputs: &Tensor, config: &VggConfig) -> Result<Tensor> {
    crate::ops::with_f32_values(outputs, crate::model::check_network_outputs)??;
    if config.outputs_probabilities() {
        return Ok(outputs.clone());
    }
    Ok(candle_nn::ops::softmax(outputs, D::Minus1)?)
}

/// Stacks CHW images into an NCHW tensor, mirrored left-right if `flip`.
pub fn stack(
    images: &[&[f32]],
    height: usize,
    width: usize,
    flip: bool,
    device: &Device,
) -> Result<Tensor> {
    let mut data = Vec::with_capacity(images.iter().map(|i| i.len()).sum());
    for image in images {
        if flip {
            for row in image.chunks(width) {
                data.extend(row.iter().rev());
            }
        } else {
            data.extend_from_slice(image);
        }
    }
    let channels = images.first().map_or(3, |i| i.len() / (height * width));
    Ok(Tensor::from_vec(
        data,
        (images.len(), channels, height, width),
        device,
    )?)
}

/// The `k` most probable classes, most probable first.
pub fn top_k(probs: &[f32], k: usize) -> Vec<Prediction> {
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|index| Prediction {
            index,
            prob: probs[index],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_by_probability() {
        let top = top_k(&[0.1, 0.5, 0.2, 0.2], 3);
        let idx: Vec<usize> = top.iter().map(|p| p.index).collect();
        assert_eq!(idx, [1, 2, 3]);
    }
}
