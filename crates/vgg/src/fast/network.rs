//! From a VGG config and its tensors to the engine's [`NetworkSpec`], by folding over the
//! same layer list the reference model uses: batch norm is folded into the preceding
//! convolution, ReLUs into the layer before them, dropout (the identity at inference) dropped.

use crate::engine::{FeatureOp, Linear, NetworkSpec};
use crate::error::{Error, Result};
use crate::model::VggConfig;
use crate::model::layers::{LayerKind, build_layers};

/// Builds the engine's description of `config`; `take(key)` hands over each tensor
/// (f32, row-major, torchvision's shape) and is called once per key.
pub fn network_spec(
    config: &VggConfig,
    mut take: impl FnMut(&str) -> Result<Vec<f32>>,
) -> Result<NetworkSpec> {
    let mut spec = NetworkSpec {
        features: Vec::new(),
        pool: config.pool(),
        classifier: Vec::new(),
    };
    // A batch norm after a ReLU cannot fold into the Linear before it; it folds into the
    // input side of the next one instead.
    let mut pending: Option<(String, Affine)> = None;
    for layer in build_layers(config) {
        let path = layer.path();
        match layer.kind {
            LayerKind::Conv2d {
                in_channels,
                out_channels,
            } => spec.features.push(FeatureOp::Conv3x3 {
                in_channels,
                out_channels,
                weight: take(&format!("{path}.weight"))?,
                bias: take(&format!("{path}.bias"))?,
                relu: false,
            }),
            LayerKind::BatchNorm2d { eps, .. } => {
                let Some(FeatureOp::Conv3x3 { weight, bias, .. }) = spec.features.last_mut() else {
                    return Err(Error::BadArgument(format!(
                        "{path}: batch norm without a convolution before it"
                    )));
                };
                let mut bn = |name: &str| take(&format!("{path}.{name}"));
                fold_batch_norm(
                    weight,
                    bias,
                    &bn("weight")?,
                    &bn("bias")?,
                    &bn("running_mean")?,
                    &bn("running_var")?,
                    eps as f32,
                )?;
            }
            LayerKind::ReLU => match (spec.features.last_mut(), spec.classifier.last_mut()) {
                (_, Some(linear)) => linear.relu = true,
                (Some(FeatureOp::Conv3x3 { relu, .. }), None) => *relu = true,
                _ => {
                    return Err(Error::BadArgument(format!(
                        "{path}: ReLU without a layer before it"
                    )));
                }
            },
            LayerKind::MaxPool2d => spec.features.push(FeatureOp::MaxPool2x2),
            LayerKind::Linear {
                in_features,
                out_features,
            } => {
                let mut linear = Linear {
                    in_features,
                    out_features,
                    weight: take(&format!("{path}.weight"))?,
                    bias: take(&format!("{path}.bias"))?,
                    relu: false,
                };
                if let Some((_, affine)) = pending.take() {
                    affine.fold_into_input(&mut linear)?;
                }
                spec.classifier.push(linear);
            }
            LayerKind::BatchNorm1d { eps, .. } => {
                let mut bn = |name: &str| take(&format!("{path}.{name}"));
                let affine = Affine::of_batch_norm(
                    &bn("weight")?,
                    &bn("bias")?,
                    &bn("running_mean")?,
                    &bn("running_var")?,
                    eps as f32,
                );
                match spec.classifier.last_mut() {
                    Some(linear) if !linear.relu => affine.fold_into_output(linear)?,
                    _ => pending = Some((path, affine)),
                }
            }
            LayerKind::FcConv {
                in_channels,
                out_channels,
                kernel,
            } => spec.classifier.push(Linear {
                in_features: in_channels * kernel * kernel,
                out_features: out_channels,
                weight: take(&format!("{path}.weight"))?,
                bias: take(&format!("{path}.bias"))?,
                relu: false,
            }),
            LayerKind::AdaptiveAvgPool2d { .. }
            | LayerKind::Flatten
            | LayerKind::Dropout { .. }
            | LayerKind::Softmax => {}
        }
    }
    if let Some((path, _)) = pending {
        return Err(Error::BadArgument(format!(
            "{path}: the fast engine folds a batch norm into a Linear and none follows this \
             one; use the reference engine (--engine reference)"
        )));
    }
    Ok(spec)
}

/// Eval-mode batch norm over features, `x·scale + shift` per feature.
struct Affine {
    scale: Vec<f32>,
    shift: Vec<f32>,
}

impl Affine {
    fn of_batch_norm(gamma: &[f32], beta: &[f32], mean: &[f32], var: &[f32], eps: f32) -> Self {
        let scale: Vec<f32> = gamma
            .iter()
            .zip(var)
            .map(|(g, v)| g / (v + eps).sqrt())
            .collect();
        let shift = (beta.iter().zip(mean).zip(&scale))
            .map(|((b, m), s)| b - m * s)
            .collect();
        Affine { scale, shift }
    }

    fn check(&self, features: usize) -> Result<()> {
        if self.scale.len() != features || self.shift.len() != features {
            return Err(Error::BadConfig(format!(
                "a batch norm over {} features does not fit a linear layer of {features}",
                self.scale.len()
            )));
        }
        Ok(())
    }

    /// Applied to a Linear's outputs: scale its rows and shift its bias.
    fn fold_into_output(&self, linear: &mut Linear) -> Result<()> {
        self.check(linear.out_features)?;
        let rows = linear.weight.chunks_mut(linear.in_features);
        for ((row, bias), (s, t)) in rows
            .zip(&mut linear.bias)
            .zip(self.scale.iter().zip(&self.shift))
        {
            row.iter_mut().for_each(|w| *w *= s);
            *bias = *bias * s + t;
        }
        Ok(())
    }

    /// Applied to a Linear's inputs: `W(x·s + t) + b = (W·diag s)x + (W t + b)`.
    fn fold_into_input(&self, linear: &mut Linear) -> Result<()> {
        self.check(linear.in_features)?;
        for (row, bias) in linear
            .weight
            .chunks_mut(linear.in_features)
            .zip(&mut linear.bias)
        {
            let shift: f64 = row
                .iter()
                .zip(&self.shift)
                .map(|(w, t)| f64::from(w * t))
                .sum();
            *bias += shift as f32;
            row.iter_mut().zip(&self.scale).for_each(|(w, s)| *w *= s);
        }
        Ok(())
    }
}

/// Eval-mode batch norm after a convolution is an affine map per output channel:
/// `γ·(conv(x) + b − μ)/√(σ² + ε) + β`, so scale the filter and shift the bias.
fn fold_batch_norm(
    weight: &mut [f32],
    bias: &mut [f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
) -> Result<()> {
    let channels = bias.len();
    let fits = [gamma, beta, mean, var].iter().all(|t| t.len() == channels);
    if channels == 0 || !weight.len().is_multiple_of(channels) || !fits {
        return Err(Error::BadConfig(format!(
            "batch norm over {channels} channels does not fit its convolution"
        )));
    }
    for (c, filter) in weight.chunks_mut(weight.len() / channels).enumerate() {
        let scale = gamma[c] / (var[c] + eps).sqrt();
        filter.iter_mut().for_each(|w| *w *= scale);
        bias[c] = (bias[c] - mean[c]) * scale + beta[c];
    }
    Ok(())
}
