//! Checkpoints: torchvision `.pth` files (zip and legacy formats, read without executing
//! pickle code), safetensors in and out, name mapping, arch detection and loading.

pub mod detect;
pub mod inspect;
pub mod load;
pub mod names;
pub mod onnx;
pub mod pth;
pub mod recorded;
pub mod safetensors;

use std::io::Read;
use std::path::Path;

use candle_core::{Device, Tensor, Var};

use crate::data::preprocess::Preprocess;
use crate::error::{Error, Result};
use crate::io::open_regular;
use crate::limits::reserve;
use crate::model::VggConfig;
use crate::weights::recorded::{Int8Calibration, Recorded};

/// The container a checkpoint came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// `torch.save` since PyTorch 1.6: a zip of `data.pkl` and one entry per storage.
    PthZip,
    /// `torch.save` before 1.6 (torchvision's published VGG files): pickles + raw storages.
    PthLegacy,
    Safetensors,
    /// An ONNX model whose graph is a VGG (ours, torchvision's export, the Model Zoo's,
    /// Keras' through tf2onnx).
    Onnx,
    /// Tensors handed over in memory (a Python dict of arrays, say).
    InMemory,
}

impl WeightFormat {
    pub fn describe(self) -> &'static str {
        match self {
            WeightFormat::PthZip => "PyTorch .pth (zip format)",
            WeightFormat::PthLegacy => "PyTorch .pth (legacy format, before 1.6)",
            WeightFormat::Safetensors => "safetensors",
            WeightFormat::Onnx => "ONNX",
            WeightFormat::InMemory => "tensors in memory",
        }
    }

    /// Recognises a file by its first bytes, whatever its extension says (ONNX, a protobuf
    /// without a signature, by its first field, the IR version, or its `.onnx` extension).
    pub fn sniff(path: &Path) -> Result<Self> {
        let mut head = [0u8; 9];
        let mut file = open_regular(path).map_err(|e| Error::io(path, "cannot open", e))?;
        let n = read_up_to(&mut file, &mut head).map_err(|e| Error::io(path, "cannot read", e))?;
        let head = &head[..n];
        match head {
            [b'P', b'K', 3, 4, ..] => Ok(WeightFormat::PthZip),
            [0x80, 2..=5, ..] => Ok(WeightFormat::PthLegacy),
            [_, _, _, _, _, _, _, _, b'{'] => Ok(WeightFormat::Safetensors),
            [0x08, ..] => Ok(WeightFormat::Onnx),
            _ if crate::io::extension(path).as_deref() == Some("onnx") => Ok(WeightFormat::Onnx),
            _ => Err(Error::BadWeights {
                path: path.display().to_string(),
                why: "not a checkpoint: expected a PyTorch .pth (zip or legacy pickle), a \
                      safetensors file or an ONNX model"
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
    /// The network the file describes, when it records one (see [`Shapes::config`]).
    pub config: Option<VggConfig>,
    /// What was changed on the way in (name mapping, nesting), for the user to see.
    pub notes: Vec<String>,
}

impl StateDict {
    /// Tensors from memory, with torchvision key names (a `module.` prefix and timm's
    /// names are mapped, as for files).
    pub fn from_tensors(tensors: Vec<(String, Tensor)>) -> Self {
        names::to_torchvision(StateDict {
            tensors,
            format: WeightFormat::InMemory,
            config: None,
            notes: Vec::new(),
        })
    }

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

/// Names and shapes of a checkpoint's tensors: all that arch detection and load checks need,
/// so they can run before (or without) reading any tensor data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shapes {
    pub entries: Vec<(String, Vec<usize>)>,
    /// The network the file describes, when it records one (an ONNX graph, a safetensors
    /// file we wrote): detection takes it instead of reading the layout off the keys.
    pub config: Option<VggConfig>,
}

impl Shapes {
    /// The names and shapes of `tensors`, recording no config.
    pub fn of(tensors: &[(String, Tensor)]) -> Shapes {
        Shapes {
            entries: (tensors.iter())
                .map(|(k, t)| (k.clone(), t.dims().to_vec()))
                .collect(),
            config: None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&[usize]> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, s)| s.as_slice())
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }
}

impl StateDict {
    pub fn shapes(&self) -> Shapes {
        Shapes {
            config: self.config.clone(),
            ..Shapes::of(&self.tensors)
        }
    }
}

/// Reads any checkpoint we support, with torchvision key names (timm's VGG names and a
/// `module.` prefix are mapped; see [`names`]).
pub fn read(path: &Path) -> Result<StateDict> {
    let state = match WeightFormat::sniff(path)? {
        WeightFormat::Safetensors => safetensors::read(path)?,
        WeightFormat::Onnx => {
            let model = onnx::read(path)?;
            StateDict {
                notes: vec![model.describe()],
                tensors: model.tensors,
                format: WeightFormat::Onnx,
                config: Some(model.config),
            }
        }
        _ => read_pth(path)?,
    };
    check_all_finite(path, &state.tensors)?;
    Ok(names::to_torchvision(state))
}

/// Refuses tensors (read from `path`) holding NaN or infinity; see [`check_finite`].
pub fn check_all_finite(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    for (key, tensor) in tensors {
        if tensor.dtype().is_float() {
            crate::ops::with_f32_values(tensor, |values| check_finite(path, key, values))??;
        }
    }
    Ok(())
}

/// Weights with NaN or infinity are refused: every output would be NaN (or worse, the
/// max-pools and ReLUs would hide it), and the file is broken, not the input. So is a
/// batch norm's negative running variance, whose square root is NaN.
fn check_finite(path: &Path, key: &str, values: &[f32]) -> Result<()> {
    let bad = |why: String| {
        Err(Error::BadWeights {
            path: path.display().to_string(),
            why,
        })
    };
    if let Some((i, value)) = crate::model::first_non_finite(values) {
        return bad(format!(
            "`{key}` holds {value} at element {i}; weights must be finite"
        ));
    }
    if key.ends_with("running_var")
        && let Some(i) = values.iter().position(|v| *v < 0.0)
    {
        return bad(format!(
            "`{key}` holds {} at element {i}; a variance is at least 0",
            values[i]
        ));
    }
    Ok(())
}

/// Reads a `.pth` state_dict into tensors: floats as f32, integers as i64, each read
/// straight from the file into its final buffer.
fn read_pth(path: &Path) -> Result<StateDict> {
    let bad = |e: pth::PthError| Error::BadWeights {
        path: path.display().to_string(),
        why: explain(e),
    };
    let checkpoint = pth::Checkpoint::open(path).map_err(bad)?;
    reserve_tensors(&checkpoint, path)?;
    let tensors = checkpoint
        .entries()
        .iter()
        .map(|entry| {
            let shape = entry.shape.as_slice();
            let tensor = if is_float(entry.dtype) {
                // Created as a variable so that the model adopts this storage instead of
                // copying it (`Var::from_tensor` copies plain tensors): one copy of the
                // weights in memory, not two.
                Var::from_vec(
                    checkpoint.read_f32(entry).map_err(bad)?,
                    shape,
                    &Device::Cpu,
                )?
                .into_inner()
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
        config: None,
        notes,
    })
}

/// A `.pth` checkpoint opened without reading tensor data: names and shapes now, each
/// tensor's values on demand. A consumer that keeps its own transformed copy (the fast
/// engine) then never holds the checkpoint twice.
pub struct LazyPth {
    checkpoint: pth::Checkpoint,
    path: String,
    /// torchvision names, parallel to the checkpoint's entries.
    names: Vec<String>,
}

impl LazyPth {
    /// `None` when the file is not a `.pth` or needs name mapping beyond a `module.` prefix
    /// (timm's reshaped names): such files take the [`read`] path.
    pub fn open(path: &Path) -> Result<Option<Self>> {
        if !matches!(
            WeightFormat::sniff(path)?,
            WeightFormat::PthZip | WeightFormat::PthLegacy
        ) {
            return Ok(None);
        }
        let bad = |e: pth::PthError| Error::BadWeights {
            path: path.display().to_string(),
            why: explain(e),
        };
        let checkpoint = pth::Checkpoint::open(path).map_err(bad)?;
        reserve_tensors(&checkpoint, path)?;
        let raw: Vec<&str> = checkpoint
            .entries()
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        let prefixed = !raw.is_empty() && raw.iter().all(|k| k.starts_with("module."));
        let names: Vec<String> = raw
            .iter()
            .map(|k| if prefixed { &k["module.".len()..] } else { k }.to_string())
            .collect();
        if names
            .iter()
            .any(|k| !k.starts_with("features.") && !k.starts_with("classifier."))
        {
            return Ok(None);
        }
        let path = path.display().to_string();
        Ok(Some(LazyPth {
            checkpoint,
            path,
            names,
        }))
    }

    /// The tensors' shapes, a dense-form classifier's convolution weights as the linear
    /// layers they are (their values are the same in the same order; see [`names`]).
    pub fn shapes(&self) -> Shapes {
        let entries = self.names.iter().zip(self.checkpoint.entries());
        let linear = |name: &str, shape: &[usize]| match shape {
            &[out, c, kh, kw] if name.starts_with("classifier.") => vec![out, c * kh * kw],
            _ => shape.to_vec(),
        };
        Shapes {
            entries: entries
                .map(|(n, e)| (n.clone(), linear(n, &e.shape)))
                .collect(),
            config: None,
        }
    }

    /// One tensor's values as f32, read from the file now.
    pub fn read_f32(&self, key: &str) -> Result<Vec<f32>> {
        let index = self
            .names
            .iter()
            .position(|n| n == key)
            .ok_or_else(|| Error::BadWeights {
                path: self.path.clone(),
                why: format!("no tensor `{key}`"),
            })?;
        let entry = &self.checkpoint.entries()[index];
        let bad = |e: pth::PthError| Error::BadWeights {
            path: self.path.clone(),
            why: explain(e),
        };
        if is_float(entry.dtype) {
            let values = self.checkpoint.read_f32(entry).map_err(bad)?;
            check_finite(Path::new(&self.path), key, &values)?;
            Ok(values)
        } else {
            let ints = self.checkpoint.read_i64(entry).map_err(bad)?;
            Ok(ints.into_iter().map(|v| v as f32).collect())
        }
    }
}

/// Refuses a checkpoint whose tensors would not fit the memory budget once read.
fn reserve_tensors(checkpoint: &pth::Checkpoint, path: &Path) -> Result<()> {
    reserve(Some(checkpoint.materialized_bytes()), || {
        format!("reading the tensors of {}", path.display())
    })
}

fn is_float(dtype: pth::DType) -> bool {
    matches!(
        dtype,
        pth::DType::F32 | pth::DType::F64 | pth::DType::F16 | pth::DType::BF16
    )
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

/// The preprocessing a checkpoint records (how its model was trained): a `vgg train`
/// checkpoint's, or that of a file we wrote; `None` for any other file, an error for a
/// recorded one that does not parse or is not usable.
pub fn recorded_preprocess(path: &Path) -> Result<Option<Preprocess>> {
    match WeightFormat::sniff(path)? {
        WeightFormat::Onnx => Ok(onnx::recorded(path)?.0),
        WeightFormat::Safetensors => safetensors::trained_preprocess(path),
        _ => Ok(None),
    }
}

/// The preprocessing a file converted from the checkpoint at `path` records, so that
/// commands treat it as they treat the checkpoint: the recorded one, else what an ONNX
/// graph's fixed input size implies unless that is the default anyway (a default recorded
/// would read as how the model was trained).
pub fn preprocess_to_carry(path: &Path) -> Result<Option<Preprocess>> {
    Ok(match recorded_preprocess(path)? {
        Some(recorded) => Some(recorded),
        None => implied_preprocess(path)?.filter(|p| *p != Preprocess::imagenet()),
    })
}

/// The preprocessing inputs to a checkpoint's model should have: the recorded one, else,
/// for an ONNX graph of a fixed input size, ImageNet's at that size.
pub fn implied_preprocess(path: &Path) -> Result<Option<Preprocess>> {
    match WeightFormat::sniff(path)? {
        WeightFormat::Onnx => onnx::implied_preprocess(path),
        _ => recorded_preprocess(path),
    }
}

/// The class names a checkpoint records (a `vgg train` checkpoint, an ONNX file we wrote);
/// an error for recorded ones that do not parse.
pub fn recorded_class_names(path: &Path) -> Result<Option<Vec<String>>> {
    match WeightFormat::sniff(path)? {
        WeightFormat::Onnx => Ok(onnx::recorded(path)?.1),
        WeightFormat::Safetensors => safetensors::class_names(path),
        _ => Ok(None),
    }
}

/// The int8 calibration a safetensors file records (`vgg quantize` writes one); `None` for
/// any other file. A calibration that does not parse or holds unusable ranges is an error.
pub fn recorded_int8(path: &Path) -> Result<Option<Int8Calibration>> {
    match WeightFormat::sniff(path)? {
        WeightFormat::Safetensors => safetensors::recorded_int8(path),
        _ => Ok(None),
    }
}

/// Writes `tensors` to `path`, choosing the format by extension (`.safetensors`, or `.pth`
/// / `.pt` for torch's zip format).
pub fn write(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    write_recording(path, tensors, &Recorded::default())
}

/// [`write`], a safetensors file recording what `recorded` holds, so that a head with no
/// torchvision counterpart reads back exactly (a `.pth` holds only the state_dict, as
/// PyTorch's do).
pub fn write_recording(
    path: &Path,
    tensors: &[(String, Tensor)],
    recorded: &Recorded,
) -> Result<()> {
    refuse_duplicate_names(path, tensors)?;
    match crate::io::extension(path).as_deref() {
        Some("safetensors") => safetensors::write(path, tensors, recorded),
        Some("pth" | "pt") => pth::write::write(path, tensors),
        _ => Err(Error::BadArgument(format!(
            "cannot write {}: the output format follows the extension; supported: .safetensors, \
             .pth, .pt (and .onnx with `vgg convert`)",
            path.display()
        ))),
    }
}

/// Refuses to write two tensors under one name, which no checkpoint format can hold
/// (a checkpoint with both timm's and torchvision's names for a layer maps to such a pair).
pub(crate) fn refuse_duplicate_names(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    match first_repeated_name(tensors) {
        Some(name) => Err(Error::BadArgument(format!(
            "cannot write {}: two tensors are named `{name}`; a checkpoint holds each name once",
            path.display()
        ))),
        None => Ok(()),
    }
}

/// The first name that `tensors` gives a second time.
pub fn first_repeated_name(tensors: &[(String, Tensor)]) -> Option<&str> {
    let mut seen = std::collections::HashSet::new();
    tensors
        .iter()
        .map(|(name, _)| name.as_str())
        .find(|name| !seen.insert(*name))
}
