//! safetensors in (memory-mapped) and out (atomically).

use std::collections::HashMap;
use std::path::Path;

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{Device, Tensor};

use crate::error::{Error, Result};
use crate::io::write_atomically;
use crate::weights::{StateDict, WeightFormat};

/// Reads every tensor; keys come out in natural order (`features.2` before `features.10`),
/// since safetensors stores no order of its own.
pub fn read(path: &Path) -> Result<StateDict> {
    let bad = |e: candle_core::Error| Error::BadWeights {
        path: path.display().to_string(),
        why: format!("not a valid safetensors file: {e}"),
    };
    // SAFETY: the map is read-only and dropped before this function returns; every tensor
    // is copied out of it. Another process truncating the file meanwhile is outside what
    // any reader can defend against (the same holds for PyTorch's and candle's readers).
    let mapped = unsafe { MmapedSafetensors::new(path) }.map_err(bad)?;
    let mut names: Vec<String> = mapped.tensors().into_iter().map(|(n, _)| n).collect();
    names.sort_by_key(|name| natural_key(name));
    let tensors = names
        .into_iter()
        .map(|name| {
            let tensor = mapped.load(&name, &Device::Cpu).map_err(bad)?;
            Ok((name, tensor))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(StateDict {
        tensors,
        format: WeightFormat::Safetensors,
        notes: Vec::new(),
    })
}

/// Writes the tensors (to CPU memory first) as a safetensors file.
pub fn write(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let map = tensors
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.to_device(&Device::Cpu)?)))
        .collect::<Result<HashMap<String, Tensor>>>()?;
    write_atomically(path, |tmp| Ok(candle_core::safetensors::save(&map, tmp)?))
}

/// Sorts dotted names with numeric parts compared as numbers.
pub fn natural_key(name: &str) -> Vec<(u64, String)> {
    name.split('.')
        .map(|part| match part.parse::<u64>() {
            Ok(n) => (n, String::new()),
            Err(_) => (u64::MAX, part.to_string()),
        })
        .collect()
}
