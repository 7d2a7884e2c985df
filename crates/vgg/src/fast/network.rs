//! From a VGG config and its tensors to the engine's [`NetworkSpec`], by folding over the
//! same layer list the reference model uses: batch norm is folded into the layer before it
//! (or, after a ReLU, the Linear after it), ReLUs into the layer before them, dropout (the
//! identity at inference) dropped.

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
        int8: None,
        classifier: Vec::new(),
    };
    // A batch norm after a ReLU cannot fold into the Linear before it; it waits for the
    // next Linear and folds into its inputs.
    let mut pending: Option<(String, Affine)> = None;
    for layer in build_layers(config) {
        let path = layer.path();
        let mut tensor = |name: &str| take(&format!("{path}.{name}"));
        match layer.kind {
            LayerKind::Conv2d {
                in_channels,
                out_channels,
            } => spec.features.push(FeatureOp::Conv3x3 {
                in_channels,
                out_channels,
                weight: tensor("weight")?,
                bias: tensor("bias")?,
                relu: false,
            }),
            LayerKind::BatchNorm2d { eps, .. } => {
                let affine = Affine::of_batch_norm(&mut tensor, eps)?;
                fold_into_conv(&mut spec, &path, affine)?;
            }
            LayerKind::ReLU => match &pending {
                Some((norm, _)) => return Err(unfoldable(norm)),
                None => mark_relu(&mut spec, &path)?,
            },
            LayerKind::MaxPool2d => spec.features.push(FeatureOp::MaxPool2x2),
            LayerKind::Linear {
                in_features,
                out_features,
            } => {
                let mut linear = Linear {
                    in_features,
                    out_features,
                    weight: tensor("weight")?,
                    bias: tensor("bias")?,
                    relu: false,
                };
                if let Some((_, affine)) = pending.take() {
                    affine.fold_into_input(&mut linear)?;
                }
                spec.classifier.push(linear);
            }
            LayerKind::BatchNorm1d { eps, .. } => {
                let affine = Affine::of_batch_norm(&mut tensor, eps)?;
                pending = fold_into_linear(&mut spec, pending.take(), path, affine)?;
            }
            LayerKind::FcConv { .. } => return Err(not_standard(&path)),
            LayerKind::AdaptiveAvgPool2d { .. }
            | LayerKind::Flatten
            | LayerKind::Dropout { .. }
            | LayerKind::Softmax => {}
        }
    }
    match pending {
        Some((path, _)) => Err(unfoldable(&path)),
        None => Ok(spec),
    }
}

/// Folds a 2-d batch norm into the convolution before it.
fn fold_into_conv(spec: &mut NetworkSpec, path: &str, affine: Affine) -> Result<()> {
    let Some(FeatureOp::Conv3x3 { weight, bias, .. }) = spec.features.last_mut() else {
        return Err(Error::BadArgument(format!(
            "{path}: batch norm without a convolution before it"
        )));
    };
    affine.fold_into_output(weight, bias)
}

/// Folds a 1-d batch norm into the Linear before it when no ReLU comes between; otherwise
/// returns it (after any batch norm already `pending`) to fold into the next Linear.
fn fold_into_linear(
    spec: &mut NetworkSpec,
    pending: Option<(String, Affine)>,
    path: String,
    affine: Affine,
) -> Result<Option<(String, Affine)>> {
    Ok(match (pending, spec.classifier.last_mut()) {
        (Some((first, before)), _) => Some((first, before.then(affine)?)),
        (None, Some(linear)) if !linear.relu => {
            affine.fold_into_output(&mut linear.weight, &mut linear.bias)?;
            None
        }
        (None, _) => Some((path, affine)),
    })
}

/// A dense (fully convolutional) head's layer in a standard network.
fn not_standard(path: &str) -> Error {
    Error::BadConfig(format!(
        "{path}: the engine's network is the standard form (PlanOptions::dense makes the \
         dense one)"
    ))
}

/// The ReLU after a layer runs fused into it.
fn mark_relu(spec: &mut NetworkSpec, path: &str) -> Result<()> {
    match (spec.features.last_mut(), spec.classifier.last_mut()) {
        (_, Some(linear)) => linear.relu = true,
        (Some(FeatureOp::Conv3x3 { relu, .. }), None) => *relu = true,
        _ => {
            return Err(Error::BadArgument(format!(
                "{path}: ReLU without a layer before it"
            )));
        }
    }
    Ok(())
}

/// A head whose batch norm (after a ReLU) is followed by another ReLU, or by no Linear.
fn unfoldable(path: &str) -> Error {
    Error::BadArgument(format!(
        "{path}: the fast engine folds a batch norm that follows a ReLU into the next Linear, \
         and this one meets a ReLU or the end first; use the reference engine (--engine \
         reference)"
    ))
}

/// Eval-mode batch norm, `x·scale + shift` per channel or feature.
struct Affine {
    scale: Vec<f32>,
    shift: Vec<f32>,
}

impl Affine {
    /// `γ·(x − μ)/√(σ² + ε) + β` from the layer's four tensors, read with `tensor`.
    fn of_batch_norm(tensor: &mut impl FnMut(&str) -> Result<Vec<f32>>, eps: f64) -> Result<Self> {
        let (gamma, beta) = (tensor("weight")?, tensor("bias")?);
        let (mean, var) = (tensor("running_mean")?, tensor("running_var")?);
        let n = gamma.len();
        if [&beta, &mean, &var].iter().any(|t| t.len() != n) {
            return Err(Error::BadConfig(
                "a batch norm's tensors have different lengths".into(),
            ));
        }
        let scale: Vec<f32> = (gamma.iter().zip(&var))
            .map(|(g, v)| g / (v + eps as f32).sqrt())
            .collect();
        let shift = (beta.iter().zip(&mean).zip(&scale))
            .map(|((b, m), s)| b - m * s)
            .collect();
        Ok(Affine { scale, shift })
    }

    fn check(&self, width: usize, what: &str) -> Result<()> {
        if self.scale.len() != width || width == 0 {
            return Err(Error::BadConfig(format!(
                "a batch norm over {} features does not fit {what} of {width}",
                self.scale.len()
            )));
        }
        Ok(())
    }

    /// Applied to a layer's outputs: scale each output's weights, and its bias.
    fn fold_into_output(&self, weight: &mut [f32], bias: &mut [f32]) -> Result<()> {
        self.check(bias.len(), "a layer with outputs")?;
        if !weight.len().is_multiple_of(bias.len()) {
            return Err(Error::BadConfig("weights do not split into outputs".into()));
        }
        let per_output = weight.len() / bias.len();
        let affine = self.scale.iter().zip(&self.shift);
        for ((row, b), (s, t)) in weight.chunks_mut(per_output).zip(bias).zip(affine) {
            row.iter_mut().for_each(|w| *w *= s);
            *b = *b * s + t;
        }
        Ok(())
    }

    /// Applied to a Linear's inputs: `W(x·s + t) + b = (W·diag s)x + (W t + b)`.
    fn fold_into_input(&self, linear: &mut Linear) -> Result<()> {
        self.check(linear.in_features, "a Linear taking inputs")?;
        let rows = linear.weight.chunks_mut(linear.in_features);
        for (row, bias) in rows.zip(&mut linear.bias) {
            let shift: f64 = (row.iter().zip(&self.shift))
                .map(|(w, t)| f64::from(w * t))
                .sum();
            *bias += shift as f32;
            row.iter_mut().zip(&self.scale).for_each(|(w, s)| *w *= s);
        }
        Ok(())
    }

    /// This batch norm, then `next`: one affine map.
    fn then(self, next: Affine) -> Result<Affine> {
        next.check(self.scale.len(), "a batch norm")?;
        let scale = (self.scale.iter().zip(&next.scale))
            .map(|(a, b)| a * b)
            .collect();
        let shift = (self.shift.iter().zip(&next.scale).zip(&next.shift))
            .map(|((t, s), u)| t * s + u)
            .collect();
        Ok(Affine { scale, shift })
    }
}
