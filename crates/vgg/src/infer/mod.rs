//! Inference on preprocessed images: softmax probabilities on either engine, optional flip
//! test-time augmentation (the paper averages the flipped image's class posteriors), top-k;
//! and the pipelines over files built on them: [`classify`], [`evaluate`], [`features`].

pub mod classify;
pub mod evaluate;
pub mod features;

use candle_core::{D, Device, Tensor};

use crate::error::{Error, Result};
use crate::fast::FastVgg;
use crate::model::{Mode, Vgg, VggConfig};

/// A class and its probability.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Prediction {
    pub index: usize,
    pub prob: f32,
}

/// Which implementation runs a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// The CPU engine: Winograd convolutions, fused layers, folded batch norm and pooling.
    #[default]
    Fast,
    /// The module-by-module model: our CPU ops on candle tensors, as training runs them.
    Reference,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Fast => "fast",
            Engine::Reference => "reference",
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
    pub fn config(&self) -> &VggConfig {
        match self {
            Backend::Reference(model) => model.config(),
            Backend::Fast(engine) => engine.config(),
        }
    }

    fn logits(&mut self, x: Tensor) -> Result<Tensor> {
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
}

impl Classifier {
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
        let logits = self.backend.logits(x)?;
        Ok(candle_nn::ops::softmax(&logits, D::Minus1)?)
    }
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
