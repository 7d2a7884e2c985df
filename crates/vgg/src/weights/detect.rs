//! `--arch auto`: the model a checkpoint was saved from, read off its keys and shapes.
//!
//! Convolutions sit at `features.i`; each is followed by its BatchNorm (if any) and a ReLU,
//! so a gap in the indices is a max-pool. The final pool leaves no trace in the keys; VGG
//! always ends its features with one, so detection assumes it.

use crate::error::{Error, Result};
use crate::model::config::{CfgItem, ConfigOverrides, VggConfig};
use crate::weights::Shapes;

/// The config whose state_dict layout `state` has: a named arch where the features match
/// one, otherwise `custom` with the detected cfg.
pub fn detect_config(state: &Shapes) -> Result<VggConfig> {
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

    let linear = |i: usize| {
        state
            .get(&format!("classifier.{i}.weight"))
            .map(<[usize]>::to_vec)
    };
    let (Some(fc6), Some(fc8)) = (linear(0), linear(6)) else {
        return Err(fail("no classifier.0.weight / classifier.6.weight"));
    };
    let (&[hidden, flat], &[num_classes, _]) = (fc6.as_slice(), fc8.as_slice()) else {
        return Err(fail("classifier weights are not matrices"));
    };
    let last_channels = convs.last().map_or(in_channels, |c| c.1);
    let pool = (1..=flat)
        .take_while(|p| p * p * last_channels <= flat)
        .last()
        .unwrap_or(0);
    if pool * pool * last_channels != flat {
        return Err(fail(&format!(
            "classifier.0 takes {flat} features, not {last_channels}·P·P for any pool size P"
        )));
    }
    VggConfig::from_features(features, batch_norm)?.with_overrides(&ConfigOverrides {
        in_channels: Some(in_channels),
        num_classes: Some(num_classes),
        hidden: Some(hidden),
        pool: Some(pool),
        dropout: None,
    })
}
