//! Checkpoints: torchvision `.pth` files (zip and legacy formats, read without executing
//! pickle code), safetensors in and out, name mapping, arch detection and loading.

pub mod detect;
pub mod load;
pub mod names;
pub mod pickle;
pub mod pth;
pub mod pth_zip;
pub mod safetensors;

use std::io::Read;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};

/// The container a checkpoint came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// `torch.save` since PyTorch 1.6: a zip of `data.pkl` and one entry per storage.
    PthZip,
    /// `torch.save` before 1.6 (torchvision's published VGG files): pickles + raw storages.
    PthLegacy,
    Safetensors,
}

impl WeightFormat {
    pub fn describe(self) -> &'static str {
        match self {
            WeightFormat::PthZip => "PyTorch .pth (zip format)",
            WeightFormat::PthLegacy => "PyTorch .pth (legacy format, before 1.6)",
            WeightFormat::Safetensors => "safetensors",
        }
    }

    /// Recognises a file by its first bytes, whatever its extension says.
    pub fn sniff(path: &Path) -> Result<Self> {
        let mut head = [0u8; 9];
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, "cannot open", e))?;
        let n = read_up_to(&mut file, &mut head).map_err(|e| Error::io(path, "cannot read", e))?;
        let head = &head[..n];
        match head {
            [b'P', b'K', 3, 4, ..] => Ok(WeightFormat::PthZip),
            [0x80, 2..=5, ..] => Ok(WeightFormat::PthLegacy),
            [_, _, _, _, _, _, _, _, b'{'] => Ok(WeightFormat::Safetensors),
            _ => Err(Error::BadWeights {
                path: path.display().to_string(),
                why: "not a checkpoint: expected a PyTorch .pth (zip or legacy pickle) or a \
                      safetensors file"
                    .into(),
            }),
        }
    }
}

fn read_up_to(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Named tensors in file order, in their stored dtype (integer types other than u8/u32/i64
/// become i64; f16/bf16/f64 stay as they are).
#[derive(Debug, Clone)]
pub struct StateDict {
    pub tensors: Vec<(String, Tensor)>,
    pub format: WeightFormat,
    /// What was changed on the way in (name mapping, nesting), for the user to see.
    pub notes: Vec<String>,
}

impl StateDict {
    pub fn get(&self, key: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(k, _)| k == key).map(|(_, t)| t)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|(k, _)| k.as_str())
    }

    /// Elements of every floating-point tensor except BatchNorm running statistics: the
    /// number PyTorch's `sum(p.numel() for p in model.parameters())` gives.
    pub fn num_params(&self) -> usize {
        self.tensors
            .iter()
            .filter(|(k, t)| t.dtype().is_float() && !k.contains("running_"))
            .map(|(_, t)| t.elem_count())
            .sum()
    }
}

/// Reads any checkpoint we support, with torchvision key names (timm's VGG names and a
/// `module.` prefix are mapped; see [`names`]).
pub fn read(path: &Path) -> Result<StateDict> {
    let state = match WeightFormat::sniff(path)? {
        WeightFormat::Safetensors => safetensors::read(path)?,
        _ => read_pth(path)?,
    };
    Ok(names::to_torchvision(state))
}

/// Reads a `.pth` state_dict into tensors: floats as f32, integers as i64 (one copy each,
/// read straight from the file).
fn read_pth(path: &Path) -> Result<StateDict> {
    let bad = |e: pth::PthError| Error::BadWeights {
        path: path.display().to_string(),
        why: explain(e),
    };
    let checkpoint = pth::Checkpoint::open(path).map_err(bad)?;
    let tensors = checkpoint
        .entries()
        .iter()
        .map(|entry| {
            let shape = entry.shape.as_slice();
            let float = matches!(
                entry.dtype,
                pth::DType::F32 | pth::DType::F64 | pth::DType::F16 | pth::DType::BF16
            );
            let tensor = if float {
                Tensor::from_vec(
                    checkpoint.read_f32(entry).map_err(bad)?,
                    shape,
                    &Device::Cpu,
                )?
            } else {
                Tensor::from_vec(
                    checkpoint.read_i64(entry).map_err(bad)?,
                    shape,
                    &Device::Cpu,
                )?
            };
            Ok((entry.name.clone(), tensor))
        })
        .collect::<Result<Vec<_>>>()?;
    let format = match checkpoint.format() {
        pth::PthFormat::Zip => WeightFormat::PthZip,
        pth::PthFormat::Legacy => WeightFormat::PthLegacy,
    };
    let notes = checkpoint
        .source_key()
        .map(|key| format!("the state_dict was nested under `{key}`"))
        .into_iter()
        .collect();
    Ok(StateDict {
        tensors,
        format,
        notes,
    })
}

/// A whole pickled model needs its classes: say what to save instead.
fn explain(error: pth::PthError) -> String {
    match &error {
        pth::PthError::UnsupportedGlobal { name }
            if name.starts_with("torch.nn.") || name.starts_with("torchvision.") =>
        {
            format!(
                "{error}; this file holds a whole pickled model ({name}): save `model.state_dict()` instead"
            )
        }
        _ => error.to_string(),
    }
}

/// Writes `tensors` to `path`, choosing the format by extension (`.safetensors`).
pub fn write(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => safetensors::write(path, tensors),
        _ => Err(Error::BadArgument(format!(
            "cannot write {}: the output format follows the extension; supported: .safetensors",
            path.display()
        ))),
    }
}
