//! Key names: torchvision's are canonical. A `module.` prefix (saved from DataParallel) is
//! dropped, and timm's VGG names are mapped both ways: timm applies fc6 and fc7 as
//! convolutions (`pre_logits.fc1` is a 7×7 conv, `pre_logits.fc2` a 1×1 conv) and calls
//! fc8 `head.fc`. A conv weight `[O, C, k, k]` flattens to exactly torchvision's linear
//! weight `[O, C·k·k]`, because `torch.flatten` orders features channel-major too.

use candle_core::Tensor;

use crate::error::Result;
use crate::weights::StateDict;

/// timm module ↔ torchvision module.
const TIMM_MODULES: [(&str, &str); 3] = [
    ("pre_logits.fc1", "classifier.0"),
    ("pre_logits.fc2", "classifier.3"),
    ("head.fc", "classifier.6"),
];

/// Renames (and reshapes) a checkpoint's tensors to torchvision's names; notes what changed.
pub fn to_torchvision(mut state: StateDict) -> StateDict {
    if !state.tensors.is_empty() && state.keys().all(|k| k.starts_with("module.")) {
        for (key, _) in &mut state.tensors {
            key.drain(.."module.".len());
        }
        state
            .notes
            .push("dropped the `module.` prefix (a DataParallel checkpoint)".into());
    }
    let mut mapped = false;
    for (key, tensor) in &mut state.tensors {
        let Some((timm, torchvision)) = TIMM_MODULES
            .iter()
            .find(|(t, _)| key.starts_with(&format!("{t}.")))
        else {
            continue;
        };
        *key = key.replacen(timm, torchvision, 1);
        if tensor.rank() == 4
            && let Ok(flat) = tensor.flatten_from(1)
        {
            *tensor = flat;
        }
        mapped = true;
    }
    if mapped {
        state.notes.push(
            "mapped timm names (pre_logits.fc1/fc2, head.fc) to torchvision's classifier".into(),
        );
    }
    flatten_dense_classifier(state)
}

/// A dense-form state_dict (`vgg convert --dense`, paper §3.2) holds the classifier's
/// linear layers as convolution weights `[O, C, k, k]`: read them as the `[O, C·k·k]`
/// linear weights they are, so either form loads into either.
fn flatten_dense_classifier(mut state: StateDict) -> StateDict {
    let mut flattened = false;
    for (key, tensor) in &mut state.tensors {
        if key.starts_with("classifier.")
            && key.ends_with(".weight")
            && tensor.rank() == 4
            && let Ok(flat) = tensor.flatten_from(1)
        {
            *tensor = flat;
            flattened = true;
        }
    }
    if flattened {
        state
            .notes
            .push("read the dense form's convolution weights (classifier) as linear layers".into());
    }
    state
}

/// torchvision's tensors under timm's names, with fc6 and fc7 as convolution weights;
/// `pool` is the adaptive-pool size the classifier's first layer was built for.
pub fn to_timm(tensors: &[(String, Tensor)], pool: usize) -> Result<Vec<(String, Tensor)>> {
    tensors
        .iter()
        .map(|(key, tensor)| {
            let Some((timm, torchvision)) = TIMM_MODULES
                .iter()
                .find(|(_, tv)| key.starts_with(&format!("{tv}.")))
            else {
                return Ok((key.clone(), tensor.clone()));
            };
            let renamed = key.replacen(torchvision, timm, 1);
            if tensor.rank() != 2 {
                return Ok((renamed, tensor.clone()));
            }
            let (out, inputs) = tensor.dims2()?;
            let k = if *torchvision == "classifier.0" {
                pool
            } else {
                1
            };
            Ok((renamed, tensor.reshape((out, inputs / (k * k), k, k))?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::WeightFormat;
    use candle_core::Device;

    #[test]
    fn timm_round_trip() {
        let fc1 = Tensor::arange(0f32, 2.0 * 8.0 * 4.0, &Device::Cpu)
            .unwrap()
            .reshape((2, 8, 2, 2))
            .unwrap();
        let state = StateDict {
            tensors: vec![
                ("module.pre_logits.fc1.weight".into(), fc1.clone()),
                (
                    "module.head.fc.bias".into(),
                    Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap(),
                ),
            ],
            format: WeightFormat::Safetensors,
            config: None,
            notes: vec![],
        };
        let state = to_torchvision(state);
        assert_eq!(
            state.keys().collect::<Vec<_>>(),
            ["classifier.0.weight", "classifier.6.bias"]
        );
        assert_eq!(state.tensors[0].1.dims(), [2, 32]);
        assert_eq!(state.notes.len(), 2);
        let back = to_timm(&state.tensors, 2).unwrap();
        assert_eq!(back[0].0, "pre_logits.fc1.weight");
        let same = back[0]
            .1
            .eq(&fc1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .min(0)
            .unwrap();
        assert_eq!(same.to_scalar::<u8>().unwrap(), 1);
    }
}
