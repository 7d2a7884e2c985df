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
            } => spec.classifier.push(Linear {
                in_features,
                out_features,
                weight: take(&format!("{path}.weight"))?,
                bias: take(&format!("{path}.bias"))?,
                relu: false,
            }),
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
            | LayerKind::Dropout { .. } => {}
        }
    }
    Ok(spec)
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
