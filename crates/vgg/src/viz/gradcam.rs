//! Grad-CAM (Selvaraju et al., 2017): which parts of the image raise a class's score. The
//! last conv block's activation `A` is weighted per channel by the mean gradient of the class
//! logit with respect to it, `cam = ReLU(Σ_k mean(∂y/∂A_k) · A_k)`; the last block keeps the
//! most class-specific features at a resolution that still locates them.

use candle_core::{D, Tensor, Var};

use crate::error::{Error, Result};
use crate::model::layers::logits_len;
use crate::model::{Container, LayerKind, Mode, Vgg};

/// A class-activation map for one image.
#[derive(Debug, Clone, PartialEq)]
pub struct GradCam {
    /// The class explained.
    pub class: usize,
    /// The network's logits for the image (the forward pass Grad-CAM needs anyway).
    pub logits: Vec<f32>,
    /// The map at the activation's resolution, row-major, scaled to [0, 1] by its maximum
    /// (all zeros when nothing in the image raises the class).
    pub map: Vec<f32>,
    pub height: usize,
    pub width: usize,
}

/// Index in [`Vgg::layers`] of the layer Grad-CAM looks at: the last ReLU in `features`,
/// i.e. the last conv block's output before its max-pool (`features.29` in vgg16).
pub fn target_layer(model: &Vgg) -> Result<usize> {
    model
        .layers()
        .iter()
        .rposition(|l| l.container == Container::Features && l.kind == LayerKind::ReLU)
        .ok_or_else(|| Error::BadArgument(format!("{} has no ReLU", model.config().name())))
}

/// Grad-CAM for `class` (the top-scoring class when `None`), given `activation`, the output
/// of [`target_layer`] for one image (`[1, C, H, W]`, from [`Vgg::forward_to`]). The rest of
/// the network runs from a `Var` holding the activation, so its gradient is the one we need.
pub fn grad_cam(model: &Vgg, activation: &Tensor, class: Option<usize>) -> Result<GradCam> {
    let (n, _, height, width) = activation.dims4()?;
    if n != 1 {
        return Err(Error::BadArgument(format!(
            "Grad-CAM explains one image at a time, got a batch of {n}"
        )));
    }
    let a = Var::from_tensor(&activation.detach())?;
    let logits_end = logits_len(model.layers());
    let first = target_layer(model)? + 1;
    let logits = model.forward_range(a.as_tensor(), Mode::Eval, first..logits_end)?;
    let logits = logits.squeeze(0)?;
    let class = match class {
        Some(c) if c >= logits.dim(0)? => {
            return Err(Error::BadArgument(format!(
                "class {c} is out of range: the model has {} classes",
                logits.dim(0)?
            )));
        }
        Some(c) => c,
        None => logits.argmax(D::Minus1)?.to_scalar::<u32>()? as usize,
    };
    let gradients = logits.get(class)?.backward()?;
    let g = gradients
        .get(a.as_tensor())
        .ok_or_else(|| Error::BadArgument("the class score does not depend on A".into()))?;
    let alpha = g.mean_keepdim((2, 3))?;
    let cam = a.as_tensor().broadcast_mul(&alpha)?.sum((0, 1))?.relu()?;
    Ok(GradCam {
        class,
        logits: logits.to_vec1()?,
        map: scale_to_unit(cam.flatten_all()?.to_vec1()?),
        height,
        width,
    })
}

/// Divides by the maximum when it is positive, so the strongest evidence is 1.
fn scale_to_unit(mut map: Vec<f32>) -> Vec<f32> {
    let max = map.iter().copied().fold(0.0f32, f32::max);
    if max > 0.0 {
        map.iter_mut().for_each(|v| *v /= max);
    }
    map
}

impl GradCam {
    /// The map resized to `height × width` as `torch.nn.functional.interpolate(...,
    /// mode="bilinear", align_corners=False)` does, so it lines up with the input pixels.
    pub fn upsample(&self, height: usize, width: usize) -> Vec<f32> {
        let rows = source_taps(self.height, height);
        let cols = source_taps(self.width, width);
        let at = |y: usize, x: usize| self.map[y * self.width + x];
        let mut out = Vec::with_capacity(height * width);
        for &(y0, y1, wy) in &rows {
            for &(x0, x1, wx) in &cols {
                let top = (1.0 - wx) * at(y0, x0) + wx * at(y0, x1);
                let bottom = (1.0 - wx) * at(y1, x0) + wx * at(y1, x1);
                out.push((1.0 - wy) * top + wy * bottom);
            }
        }
        out
    }
}

/// For each output index: the two input indices it blends and the second one's weight,
/// PyTorch's `area_pixel_compute_source_index` with `align_corners=False`.
fn source_taps(input: usize, output: usize) -> Vec<(usize, usize, f32)> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|i| {
            let source = (scale * (i as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (source as usize).min(input - 1);
            let i1 = (i0 + 1).min(input - 1);
            (i0, i1, source - i0 as f32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsampling_matches_pytorch_align_corners_false() {
        // torch: F.interpolate(torch.tensor([[[[0., 1.]]]]), size=(1, 4), mode="bilinear")
        // == [0, 0.25, 0.75, 1].
        let cam = GradCam {
            class: 0,
            logits: vec![0.0],
            map: vec![0.0, 1.0],
            height: 1,
            width: 2,
        };
        assert_eq!(cam.upsample(1, 4), [0.0, 0.25, 0.75, 1.0]);
    }

    #[test]
    fn scaling_keeps_an_all_zero_map() {
        assert_eq!(scale_to_unit(vec![0.0, 0.0]), [0.0, 0.0]);
        assert_eq!(scale_to_unit(vec![0.0, 2.0, 1.0]), [0.0, 1.0, 0.5]);
    }
}
