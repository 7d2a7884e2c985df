//! Starting a deeper network from a trained shallower one, as the paper trained its deeper
//! configurations (§3.1): "we initialised the first four convolutional layers and the last
//! three fully-connected layers with the layers of net A (the intermediate layers were
//! initialised randomly)". The layers are matched by where they sit, not by index: the
//! source's k-th convolution of stage s (s max-pools before it) goes to the target's k-th
//! convolution of stage s. For vgg11 → vgg16 that is conv1_1, conv2_1, conv3_1 and conv3_2,
//! whose shapes agree; a batch norm following a copied convolution is copied with it.

use std::path::Path;

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};
use crate::model::Vgg;
use crate::model::layers::{LayerKind, LayerSpec, build_layers, stages};
use crate::weights::detect::detect_config_of;
use crate::weights::load::load;
use crate::weights::{self, StateDict};

/// Convolutions the paper copies from net A.
pub const PAPER_CONV_LAYERS: usize = 4;

/// `(source module, target module)` pairs that were copied, e.g. `features.3 → features.5`.
pub type Copied = Vec<(String, String)>;

/// `model` with its first `convs` convolutions (matched by stage and position) and its
/// classifier's linear layers taken from the checkpoint at `source`; everything else keeps
/// `model`'s values. Refuses layers whose shapes differ.
pub fn init_from(
    model: &Vgg,
    source: &Path,
    convs: usize,
    seed: u64,
    device: &Device,
) -> Result<(Vgg, Copied)> {
    let state = weights::read(source)?;
    let source_layers = build_layers(&detect_config_of(source, &state.shapes())?);
    let pairs = matched_modules(&source_layers, model.layers(), convs, source)?;
    let mut tensors = model.state_dict()?;
    for (from, to) in &pairs {
        for (key, tensor) in tensors.iter_mut() {
            let Some(name) = key.strip_prefix(&format!("{to}.")) else {
                continue;
            };
            *tensor = take(&state, &format!("{from}.{name}"), tensor, key, source)?;
        }
    }
    let (model, _) = load(
        model.config().clone(),
        StateDict::from_tensors(tensors),
        true,
        seed,
        device,
    )?;
    Ok((model, pairs))
}

/// The source tensor `key` in place of the target's `target_key`, shapes checked.
fn take(
    state: &StateDict,
    key: &str,
    target: &Tensor,
    target_key: &str,
    path: &Path,
) -> Result<Tensor> {
    let tensor = state.get(key).ok_or_else(|| {
        Error::BadArgument(format!("--init-from {}: no tensor `{key}`", path.display()))
    })?;
    if tensor.dims() != target.dims() {
        return Err(Error::BadArgument(format!(
            "--init-from {}: `{key}` is {:?} but `{target_key}` needs {:?}; the layers \
             the paper copies must have the same shapes",
            path.display(),
            tensor.dims(),
            target.dims()
        )));
    }
    Ok(tensor.to_dtype(target.dtype())?)
}

/// Source and target module paths to copy: the first `convs` convolutions (each with a
/// batch norm after it in both) and the classifier's linear layers.
fn matched_modules(
    source: &[LayerSpec],
    target: &[LayerSpec],
    convs: usize,
    path: &Path,
) -> Result<Copied> {
    let target_convs = conv_places(target);
    let mut pairs = Vec::new();
    for (place, i) in conv_places(source).into_iter().take(convs) {
        let Some(&(_, j)) = target_convs.iter().find(|(p, _)| *p == place) else {
            return Err(Error::BadArgument(format!(
                "--init-from {}: the target has no convolution {} of stage {} for `{}`",
                path.display(),
                place.1 + 1,
                place.0 + 1,
                source[i].path()
            )));
        };
        pairs.push((source[i].path(), target[j].path()));
        if let (Some(from), Some(to)) = (batch_norm_after(source, i), batch_norm_after(target, j)) {
            pairs.push((from.path(), to.path()));
        }
    }
    let linears = |layers: &[LayerSpec]| -> Vec<String> {
        (layers.iter())
            .filter(|l| matches!(l.kind, LayerKind::Linear { .. }))
            .map(LayerSpec::path)
            .collect()
    };
    pairs.extend(linears(source).into_iter().zip(linears(target)));
    Ok(pairs)
}

/// The batch norm right after layer `k`, if there is one.
fn batch_norm_after(layers: &[LayerSpec], k: usize) -> Option<&LayerSpec> {
    (layers.get(k + 1)).filter(|l| matches!(l.kind, LayerKind::BatchNorm2d { .. }))
}

/// Each convolution's `(stage, position in stage)` and index in the layer list.
fn conv_places(layers: &[LayerSpec]) -> Vec<((usize, usize), usize)> {
    (stages(layers).iter().enumerate())
        .flat_map(|(s, stage)| (stage.convs(layers).enumerate()).map(move |(p, i)| ((s, p), i)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::{Arch, VggConfig};

    #[test]
    fn vgg11_to_vgg16_copies_the_papers_layers() {
        let source = build_layers(&VggConfig::from_arch(Arch::Vgg11));
        let target = build_layers(&VggConfig::from_arch(Arch::Vgg16));
        let pairs = matched_modules(&source, &target, PAPER_CONV_LAYERS, Path::new("a")).unwrap();
        let expect = [
            ("features.0", "features.0"),  // conv1_1
            ("features.3", "features.5"),  // conv2_1
            ("features.6", "features.10"), // conv3_1
            ("features.8", "features.12"), // conv3_2
            ("classifier.0", "classifier.0"),
            ("classifier.3", "classifier.3"),
            ("classifier.6", "classifier.6"),
        ];
        let got: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn batch_norm_follows_its_convolution() {
        let source = build_layers(&VggConfig::from_arch(Arch::Vgg11Bn));
        let target = build_layers(&VggConfig::from_arch(Arch::Vgg13Bn));
        let pairs = matched_modules(&source, &target, 2, Path::new("a")).unwrap();
        assert_eq!(
            pairs[..4],
            [
                ("features.0".to_string(), "features.0".to_string()),
                ("features.1".to_string(), "features.1".to_string()),
                ("features.4".to_string(), "features.7".to_string()),
                ("features.5".to_string(), "features.8".to_string()),
            ]
        );
    }
}
