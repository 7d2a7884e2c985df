//! Key names: torchvision's are canonical. A `module.` prefix (saved from DataParallel) is
//! dropped, and timm's VGG names are mapped both ways: timm applies fc6 and fc7 as
//! convolutions (`pre_logits.fc1` is a 7×7 conv, `pre_logits.fc2` a 1×1 conv) and calls
//! fc8 `head.fc` (a linear layer still: timm's `ClassifierHead`). A conv weight `[O, C, k, k]` flattens to exactly torchvision's linear
//! weight `[O, C·k·k]`, because `torch.flatten` orders features channel-major too.

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::model::config::{Arch, VggConfig};
use crate::model::head::head_string;
use crate::model::layers::{Container, LayerKind, build_layers};
use crate::weights::StateDict;

/// timm's names for the classifier's three linear layers, in order.
const TIMM_LINEARS: [&str; 3] = ["pre_logits.fc1", "pre_logits.fc2", "head.fc"];

/// One classifier linear under both names, and the kernel size of the convolution timm
/// makes of it: fc6 sees the whole `pool×pool` map, fc7 one position, and fc8 stays linear.
struct TimmModule {
    timm: &'static str,
    torchvision: String,
    conv_kernel: Option<usize>,
}

/// The timm ↔ torchvision module pairs of `config`'s classifier, read off its layer list.
/// timm's VGG has torchvision's head only, so any other head is refused.
fn timm_modules(config: &VggConfig) -> Result<Vec<TimmModule>> {
    if config.hidden().is_none() {
        return Err(Error::BadArgument(format!(
            "--names timm needs torchvision's classifier (Linear, ReLU, Dropout, Linear, ReLU, \
             Dropout, Linear), the only head timm's VGG has; this checkpoint's head is `{}`: \
             write torchvision names",
            head_string(config.head())
        )));
    }
    let linears = build_layers(config).into_iter().filter(|layer| {
        layer.container == Container::Classifier && matches!(layer.kind, LayerKind::Linear { .. })
    });
    Ok(TIMM_LINEARS
        .into_iter()
        .zip(linears)
        .enumerate()
        .map(|(i, (timm, layer))| TimmModule {
            timm,
            torchvision: layer.path(),
            conv_kernel: match i {
                0 => Some(config.pool()),
                1 => Some(1),
                _ => None,
            },
        })
        .collect())
}

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
    let modules = timm_modules(&VggConfig::from_arch(Arch::Vgg11))
        .expect("torchvision's own head has timm names");
    for (key, tensor) in &mut state.tensors {
        let Some(module) = find_module(&modules, key, |m| m.timm) else {
            continue;
        };
        *key = key.replacen(module.timm, &module.torchvision, 1);
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

/// The module `key` belongs to, by the module name `name` picks.
fn find_module<'m>(
    modules: &'m [TimmModule],
    key: &str,
    name: impl Fn(&TimmModule) -> &str,
) -> Option<&'m TimmModule> {
    modules.iter().find(|m| {
        key.strip_prefix(name(m))
            .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// torchvision's tensors of a `config` network under timm's names, with its classifier's
/// linear weights as the convolution weights timm stores. Refuses a head timm does not have.
pub fn to_timm(tensors: &[(String, Tensor)], config: &VggConfig) -> Result<Vec<(String, Tensor)>> {
    let modules = timm_modules(config)?;
    tensors
        .iter()
        .map(|(key, tensor)| {
            let Some(module) = find_module(&modules, key, |m| &m.torchvision) else {
                return Ok((key.clone(), tensor.clone()));
            };
            let renamed = key.replacen(&module.torchvision, module.timm, 1);
            let Some(k) = module.conv_kernel.filter(|_| tensor.rank() == 2) else {
                return Ok((renamed, tensor.clone()));
            };
            let (out, inputs) = tensor.dims2()?;
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
                (
                    "module.head.fc.weight".into(),
                    Tensor::zeros((3, 2), candle_core::DType::F32, &Device::Cpu).unwrap(),
                ),
            ],
            format: WeightFormat::Safetensors,
            config: None,
            notes: vec![],
        };
        let state = to_torchvision(state);
        assert_eq!(
            state.keys().collect::<Vec<_>>(),
            [
                "classifier.0.weight",
                "classifier.6.bias",
                "classifier.6.weight"
            ]
        );
        assert_eq!(state.tensors[0].1.dims(), [2, 32]);
        assert_eq!(state.notes.len(), 2);
        let config = VggConfig::custom("8", false)
            .unwrap()
            .with_overrides(&crate::model::config::ConfigOverrides {
                pool: Some(2),
                hidden: Some(2),
                num_classes: Some(3),
                ..Default::default()
            })
            .unwrap();
        let back = to_timm(&state.tensors, &config).unwrap();
        assert_eq!(back[0].0, "pre_logits.fc1.weight");
        // timm's `head.fc` is an `nn.Linear`: its weight stays two-dimensional.
        assert_eq!(
            (back[2].0.as_str(), back[2].1.dims()),
            ("head.fc.weight", &[3, 2][..])
        );
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

    #[test]
    fn timm_names_refuse_a_head_timm_does_not_have() {
        let config = VggConfig::custom("8", false)
            .unwrap()
            .with_overrides(&crate::model::config::ConfigOverrides {
                head: Some(crate::model::head::parse_head("16,bn,relu,16,relu,3").unwrap()),
                ..Default::default()
            })
            .unwrap();
        let tensors = [(
            "classifier.3.weight".to_string(),
            Tensor::zeros((16, 16), candle_core::DType::F32, &Device::Cpu).unwrap(),
        )];
        let err = to_timm(&tensors, &config).unwrap_err().to_string();
        assert!(err.contains("`16,bn,relu,16,relu,3`"), "{err}");
        assert!(err.contains("--names timm"), "{err}");
    }
}
