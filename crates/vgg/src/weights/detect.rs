//! `--arch auto`: the model a checkpoint was saved from, read off its keys and shapes.
//!
//! Convolutions sit at `features.i`; each is followed by its BatchNorm (if any) and a ReLU,
//! so a gap in the indices is a max-pool. The final pool leaves no trace in the keys; VGG
//! always ends its features with one, so detection assumes it.

use std::path::Path;

use crate::error::{Error, Result};
use crate::model::config::{CfgItem, ConfigOverrides, VggConfig, pool_side};
use crate::model::head::{DEFAULT_DROPOUT, HeadItem};
use crate::weights::Shapes;

/// [`detect_config`] for the checkpoint at `path`: a layout that is not a VGG's makes the
/// file a bad checkpoint, named in the message.
pub fn detect_config_of(path: &Path, state: &Shapes) -> Result<VggConfig> {
    detect_config(state).map_err(|e| match e {
        Error::BadArgument(why) => Error::BadWeights {
            path: path.display().to_string(),
            why,
        },
        other => other,
    })
}

/// The config whose state_dict layout `state` has: a named arch where the features match
/// one, otherwise `custom` with the detected cfg.
pub fn detect_config(state: &Shapes) -> Result<VggConfig> {
    if let Some(config) = &state.config {
        return Ok(config.clone());
    }
    let fail = |why: &str| {
        Error::BadArgument(format!("cannot detect the arch from the checkpoint: {why}"))
    };
    let mut convs: Vec<(usize, usize, usize)> = state
        .entries
        .iter()
        .filter_map(|(key, shape)| {
            let index = key
                .strip_prefix("features.")?
                .strip_suffix(".weight")?
                .parse()
                .ok()?;
            match shape.as_slice() {
                &[out, inp, 3, 3] => Some((index, out, inp)),
                _ => None,
            }
        })
        .collect();
    convs.sort();
    let &(first, _, in_channels) = convs
        .first()
        .ok_or_else(|| fail("no features.N.weight convolution weights"))?;
    if first != 0 {
        return Err(fail("the first convolution is not features.0"));
    }
    let batch_norm = state.get("features.1.running_mean").is_some();
    let step = if batch_norm { 3 } else { 2 };
    let mut features = Vec::new();
    let mut expected_index = 0;
    for &(index, out, _) in &convs {
        match index.checked_sub(expected_index) {
            Some(0) => {}
            Some(1) => features.push(CfgItem::Pool),
            _ => return Err(fail(&format!("unexpected layout around features.{index}"))),
        }
        features.push(CfgItem::Conv(out));
        expected_index = index + step;
    }
    features.push(CfgItem::Pool);

    let last_channels = convs.last().map_or(in_channels, |c| c.1);
    let (head, flat) = detect_head(state).map_err(|why| fail(&why))?;
    let pool = pool_side(flat, last_channels).ok_or_else(|| {
        fail(&format!(
            "classifier.0 takes {flat} features, not {last_channels}·P·P for any pool size P"
        ))
    })?;
    VggConfig::from_features(features, batch_norm)?.with_overrides(&ConfigOverrides {
        in_channels: Some(in_channels),
        pool: Some(pool),
        head: Some(head),
        ..ConfigOverrides::default()
    })
}

/// The head the `classifier.N` tensors describe, and the first Linear's input width.
/// Linear and batch-norm layers leave keys; ReLU, dropout and softmax do not. A gap in the
/// indices reads as PyTorch's usual order: `relu` then `dropout` after a Linear (so
/// torchvision's layout, Linear at 0, 3 and 6, reads as its head), and `relu` (or `dropout`
/// when the ReLU came before the batch norm) after a batch norm. A file that records its
/// config (ONNX, our safetensors) is read exactly instead.
fn detect_head(state: &Shapes) -> std::result::Result<(Vec<HeadItem>, usize), String> {
    let mut layers: Vec<(usize, HeadItem, usize)> = state
        .entries
        .iter()
        .filter_map(|(key, shape)| {
            let index = key.strip_prefix("classifier.")?.strip_suffix(".weight")?;
            // Only canonical indices (`3`, not `03` or `+3`): each names one module.
            let index = index
                .parse::<usize>()
                .ok()
                .filter(|i| i.to_string() == index)?;
            let bn = state
                .get(&format!("classifier.{index}.running_mean"))
                .is_some();
            match *shape.as_slice() {
                [out, inp] if !bn => Some((index, HeadItem::Linear(out), inp)),
                [features] if bn => Some((index, HeadItem::BatchNorm1d, features)),
                _ => None,
            }
        })
        .collect();
    layers.sort_by_key(|l| l.0);
    let Some(&(0, HeadItem::Linear(_), flat)) = layers.first() else {
        return Err("no classifier.0.weight linear layer".into());
    };
    let mut head: Vec<HeadItem> = Vec::new();
    for (index, item, _) in layers {
        let Some(gap) = index.checked_sub(head.len()) else {
            return Err(format!("classifier.{index} appears twice"));
        };
        let relu_before_norm = head.last() == Some(&HeadItem::BatchNorm1d)
            && head
                .iter()
                .rev()
                .skip(1)
                .take_while(|i| !matches!(i, HeadItem::Linear(_)))
                .any(|i| *i == HeadItem::ReLU);
        let fill: &[HeadItem] = match (gap, relu_before_norm) {
            (0, _) => &[],
            (1, true) => &[HeadItem::Dropout(DEFAULT_DROPOUT)],
            (1, false) => &[HeadItem::ReLU],
            (2, false) => &[HeadItem::ReLU, HeadItem::Dropout(DEFAULT_DROPOUT)],
            _ => return Err(format!("an unexplained gap before classifier.{index}")),
        };
        head.extend_from_slice(fill);
        head.push(item);
    }
    Ok((head, flat))
}
