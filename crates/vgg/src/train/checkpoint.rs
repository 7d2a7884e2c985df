//! Training checkpoints: one safetensors file holding the model's state_dict under
//! torchvision's key names (so every command, and torchvision after `vgg convert`, loads it
//! as weights), the optimiser's state under `optimizer.<param>.<buffer>`, and the run's
//! state (epoch, config, options, history, plateau tracker) as JSON in the header metadata.
//! Written atomically: a process killed at any moment leaves the previous file intact.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::io::write_atomically;
use crate::model::{Vgg, VggConfig};
use crate::train::metrics::EpochMetrics;
use crate::train::schedule::Plateau;
use crate::train::trainer::TrainOptions;
use crate::weights::safetensors::{OPTIMIZER_PREFIX, TRAINING_FORMAT};
use crate::weights::{self, StateDict, WeightFormat};

/// Everything about a run besides tensors: enough to continue it exactly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    pub config: VggConfig,
    pub options: TrainOptions,
    pub classes: Vec<String>,
    /// Epochs completed.
    pub epoch: usize,
    pub history: Vec<EpochMetrics>,
    pub best_val_top1: Option<f64>,
    pub plateau: Option<Plateau>,
    /// AdamW's step count (0 for SGD).
    pub optimizer_steps: i32,
}

impl RunState {
    /// The epoch `best.safetensors` holds: the first to reach the highest validation top-1.
    pub fn best_epoch(&self) -> Option<&EpochMetrics> {
        self.history
            .iter()
            .reduce(|best, m| if m.val_top1 > best.val_top1 { m } else { best })
    }
}

/// A checkpoint read back: the model's state_dict, the optimiser's tensors (prefix
/// stripped) and the run state.
pub struct Checkpoint {
    pub model: StateDict,
    pub optimizer: HashMap<String, Tensor>,
    pub run: RunState,
}

/// Writes `model`, `optimizer_state` and `run` to `path` atomically.
pub fn save(
    path: &Path,
    model: &Vgg,
    optimizer_state: Vec<(String, Tensor)>,
    run: &RunState,
) -> Result<()> {
    let mut tensors = model.state_dict()?;
    tensors.extend(
        optimizer_state
            .into_iter()
            .map(|(key, t)| (format!("{OPTIMIZER_PREFIX}{key}"), t)),
    );
    let tensors = tensors
        .into_iter()
        .map(|(k, t)| Ok((k, t.to_device(&Device::Cpu)?)))
        .collect::<Result<Vec<(String, Tensor)>>>()?;
    let run_json = serde_json::to_string(run).map_err(|e| Error::cannot_encode(path, e))?;
    let metadata = HashMap::from([
        ("format".to_string(), TRAINING_FORMAT.to_string()),
        ("run".to_string(), run_json),
    ]);
    write_atomically(path, |tmp| {
        weights::safetensors::write_file(tmp, &tensors, &metadata)
            .map_err(|e| Error::write(path, e))?;
        #[cfg(feature = "fault-injection")]
        crate::io::fault_injection::at_write("VGG_FAULT_CHECKPOINT_WRITE", tmp);
        Ok(())
    })
}

/// Reads a checkpoint written by [`save`], each tensor once.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let run = run_state(path)?;
    let (mut model, mut optimizer) = (Vec::new(), HashMap::new());
    for (key, tensor) in weights::safetensors::read_all(path)? {
        match key.strip_prefix(OPTIMIZER_PREFIX) {
            Some(name) => {
                optimizer.insert(name.to_string(), tensor);
            }
            None => model.push((key, tensor)),
        }
    }
    model.sort_by_key(|(key, _)| weights::safetensors::natural_key(key));
    let model = StateDict {
        tensors: model,
        format: WeightFormat::Safetensors,
        config: Some(run.config.clone()),
        notes: Vec::new(),
    };
    Ok(Checkpoint {
        model,
        optimizer,
        run,
    })
}

/// The run state in a checkpoint's metadata.
fn run_state(path: &Path) -> Result<RunState> {
    let bad = |why: String| Error::BadWeights {
        path: path.display().to_string(),
        why,
    };
    let metadata = weights::safetensors::metadata(path)?;
    let run = match (
        metadata.get("format").map(String::as_str),
        metadata.get("run"),
    ) {
        (Some(TRAINING_FORMAT), Some(run)) => run,
        _ => {
            return Err(bad(
                "not a training checkpoint of `vgg train` (no run state in its \
                            metadata); use it as --weights to fine-tune instead"
                    .into(),
            ));
        }
    };
    serde_json::from_str(run)
        .map_err(|e| bad(format!("the run state in its metadata is unreadable: {e}")))
}
