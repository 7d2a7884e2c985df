//! Loading a checkpoint into a model, as `load_state_dict` does: strict by default, with
//! every missing key, unexpected key and shape mismatch reported at once, plus hints.

use std::collections::HashSet;
use std::fmt;

use candle_core::{Device, Var};

use crate::error::{Error, Result, capped_list};
use crate::model::init::initial_values;
use crate::model::layers::{TensorSpec, build_layers};
use crate::model::{Vgg, VggConfig};
use crate::weights::detect::detect_config;
use crate::weights::{Shapes, StateDict};

/// A tensor the checkpoint has with another shape than the model's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub key: String,
    pub model: Vec<usize>,
    pub checkpoint: Vec<usize>,
}

/// What loading found. Missing `num_batches_tracked` is not reported (PyTorch fills 0).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub model: String,
    pub loaded: usize,
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
    pub mismatched: Vec<Mismatch>,
    pub hints: Vec<String>,
}

impl LoadReport {
    pub fn is_exact(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }
}

impl std::error::Error for LoadReport {}

impl Error {
    /// A strict load's error for `report`.
    pub fn mismatch(report: LoadReport) -> Self {
        Error::StateDictMismatch(Box::new(report))
    }

    /// The report of a checkpoint that did not fit, if this is such an error.
    pub fn load_report(&self) -> Option<&LoadReport> {
        match self {
            Error::StateDictMismatch(report) => report.downcast_ref(),
            _ => None,
        }
    }
}

/// Keys and mismatches listed in a report's message; the rest are counted.
const SHOWN: usize = 20;

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the checkpoint does not fit {}", self.model)?;
        // Hints first: a one-line message is capped, and they say what to do.
        for hint in &self.hints {
            write!(f, "\n  hint: {hint}")?;
        }
        if !self.missing.is_empty() {
            write!(
                f,
                "\n  missing keys ({}): {}",
                self.missing.len(),
                capped_list(&self.missing, SHOWN)
            )?;
        }
        if !self.unexpected.is_empty() {
            let n = self.unexpected.len();
            write!(
                f,
                "\n  unexpected keys ({n}): {}",
                capped_list(&self.unexpected, SHOWN)
            )?;
        }
        for m in self.mismatched.iter().take(SHOWN) {
            write!(
                f,
                "\n  size mismatch for {}: checkpoint {:?}, model {:?}",
                m.key, m.checkpoint, m.model
            )?;
        }
        if self.mismatched.len() > SHOWN {
            let more = self.mismatched.len() - SHOWN;
            write!(f, "\n  … and {more} more size mismatches")?;
        }
        Ok(())
    }
}

/// Compares the checkpoint with the tensors `config` needs, without building anything.
pub fn check(config: &VggConfig, state: &Shapes) -> LoadReport {
    let mut report = LoadReport {
        model: config.name().to_string(),
        ..LoadReport::default()
    };
    let mut used = HashSet::new();
    for (key, spec) in build_layers(config).iter().flat_map(|l| l.named_tensors()) {
        match state.get(&key) {
            None if spec.name == "num_batches_tracked" => {}
            None => report.missing.push(key),
            Some(shape) if fits(&spec, shape) => {
                report.loaded += 1;
                used.insert(key);
            }
            Some(shape) => {
                report.mismatched.push(Mismatch {
                    model: spec.shape.clone(),
                    checkpoint: shape.to_vec(),
                    key: key.clone(),
                });
                used.insert(key);
            }
        }
    }
    report.unexpected = state
        .keys()
        .filter(|k| !used.contains(*k))
        .map(String::from)
        .collect();
    report.hints = hints(config, state, &report);
    report
}

/// Builds `config` with the checkpoint's tensors. Strict: any difference is an error listing
/// all of them. Not strict: tensors that fit are loaded, the rest keep torchvision's
/// initialisation (from `seed`), and the report says which. The state_dict is consumed:
/// the model takes over its tensors' storage.
pub fn load(
    config: VggConfig,
    state: StateDict,
    strict: bool,
    seed: u64,
    device: &Device,
) -> Result<(Vgg, LoadReport)> {
    let report = check(&config, &state.shapes());
    if strict && !report.is_exact() {
        return Err(Error::mismatch(report));
    }
    let model = Vgg::build(config, seed, device, |layer, key, spec| {
        match state.get(key) {
            // Same shape: the tensor itself, so a variable-backed checkpoint tensor is adopted
            // without a copy; a one-element `num_batches_tracked` is reshaped to 0-dim.
            Some(tensor) if tensor.dims() == spec.shape.as_slice() => Ok(tensor.clone()),
            Some(tensor) if fits(spec, tensor.dims()) => Ok(tensor.reshape(spec.shape.as_slice())?),
            _ => {
                let values = initial_values(&layer.kind, spec, seed, key);
                Ok(Var::from_vec(values, spec.shape.as_slice(), device)?.into_inner())
            }
        }
    })?;
    Ok((model, report))
}

/// `model.load_state_dict(state, strict)` as PyTorch does it: strict refuses any difference;
/// otherwise the tensors that fit replace the model's, missing keys keep the model's current
/// values, unexpected keys are ignored, and a size mismatch is still an error. Returns the
/// new model (the old one is left as it was) and the report.
pub fn load_into(model: &Vgg, state: StateDict, strict: bool) -> Result<(Vgg, LoadReport)> {
    crate::weights::check_all_finite(std::path::Path::new("the state_dict"), &state.tensors)?;
    let report = check(model.config(), &state.shapes());
    if !report.is_exact() && (strict || !report.mismatched.is_empty()) {
        return Err(Error::mismatch(report));
    }
    let current = model.state_dict()?;
    let device = model.device().clone();
    let loaded = Vgg::build(model.config().clone(), 0, &device, |_, key, spec| {
        let tensor = state
            .get(key)
            .or_else(|| current.iter().find(|(k, _)| k == key).map(|(_, t)| t))
            .ok_or_else(|| {
                Error::BadConfig(format!("{key}: no tensor in the model or the state"))
            })?;
        Ok(tensor.reshape(spec.shape.as_slice())?.to_device(&device)?)
    })?;
    Ok((loaded, report))
}

/// Same shape, or a one-element tensor for a 0-dim one (old `num_batches_tracked`).
fn fits(spec: &TensorSpec, shape: &[usize]) -> bool {
    shape == spec.shape.as_slice()
        || (spec.shape.is_empty() && shape.iter().product::<usize>() == 1)
}

fn hints(config: &VggConfig, state: &Shapes, report: &LoadReport) -> Vec<String> {
    let mut hints = Vec::new();
    if report.is_exact() {
        return hints;
    }
    if let Ok(detected) = detect_config(state) {
        if detected.name() == "custom" {
            hints.push(format!(
                "the checkpoint looks like a custom network: --arch custom {} {} --pool {} \
                 (or --arch auto)",
                detected.feature_flags(),
                detected.head_flags(),
                detected.pool(),
            ));
        } else if detected.name() != config.name() {
            let why = match (detected.batch_norm(), config.batch_norm()) {
                (true, false) => " (it has batch norm layers)",
                (false, true) => " (it has no batch norm layers)",
                _ => "",
            };
            hints.push(format!(
                "the checkpoint looks like {}{why}: use --arch {} or --arch auto",
                detected.name(),
                detected.name()
            ));
        }
        if detected.num_classes() != config.num_classes() {
            hints.push(format!(
                "the checkpoint has {} classes, the model {}: pass --num-classes {} (or load \
                 non-strictly to keep a freshly initialised last layer for fine-tuning)",
                detected.num_classes(),
                config.num_classes(),
                detected.num_classes()
            ));
        }
    }
    hints
}
