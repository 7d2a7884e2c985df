//! safetensors in (memory-mapped) and out (atomically).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{Device, Tensor};

use crate::data::preprocess::Preprocess;
use crate::error::{Error, Result};
use crate::io::write_atomically;
use crate::model::VggConfig;
use crate::weights::recorded::{Int8Calibration, Recorded, RecordedEntries};
use crate::weights::{StateDict, WeightFormat};

/// The `format` metadata value that marks a training checkpoint of `vgg train`: the model's
/// tensors, the optimiser's under [`OPTIMIZER_PREFIX`], and the run state as JSON under
/// `run`. Readers of weights skip the optimiser; `train::checkpoint` reads the rest.
pub const TRAINING_FORMAT: &str = "vgg-train-checkpoint/1";
/// Prefix of the optimiser's tensors in a training checkpoint.
pub const OPTIMIZER_PREFIX: &str = "optimizer.";

/// Reads every tensor; keys come out in natural order (`features.2` before `features.10`),
/// since safetensors stores no order of its own.
pub fn read(path: &Path) -> Result<StateDict> {
    let bad = |e: candle_core::Error| Error::BadWeights {
        path: path.display().to_string(),
        why: format!("not a valid safetensors file: {e}"),
    };
    // The header is checked (and bounded) before the safetensors crate parses it.
    let metadata = metadata(path)?;
    let training = is_training_checkpoint(&metadata);
    reserve_file(path, 1)?;
    // SAFETY: the map is read-only and dropped before this function returns; every tensor
    // is copied out of it. Another process truncating the file meanwhile is outside what
    // any reader can defend against (the same holds for PyTorch's and candle's readers).
    let mapped = unsafe { MmapedSafetensors::new(path) }.map_err(bad)?;
    // A training checkpoint also holds the optimiser's state: not part of the model.
    let (optimizer, mut names): (Vec<String>, Vec<String>) = (mapped.tensors().into_iter())
        .map(|(n, _)| n)
        .partition(|n| training && n.starts_with(OPTIMIZER_PREFIX));
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
        config: recorded_config(path, &metadata)?,
        notes: match optimizer.len() {
            0 => Vec::new(),
            n => vec![format!(
                "left out the optimiser's {n} tensors (a `vgg train` checkpoint; `vgg train \
                 --resume` reads them)"
            )],
        },
    })
}

/// What a file we wrote records, each entry read when asked (see [`RecordedEntries`]).
fn recorded<'a>(
    path: &'a Path,
    metadata: &'a HashMap<String, String>,
) -> RecordedEntries<'a, impl Fn(&str) -> Option<String>> {
    RecordedEntries {
        path,
        get: |key: &str| metadata.get(key).cloned(),
    }
}

/// The entry at `pointer` (a JSON pointer, `/config`) of a training checkpoint's run state,
/// checked by `usable`: `None` when it is not there, an error naming the file when it does
/// not parse or is not usable.
fn run_entry<T: serde::de::DeserializeOwned>(
    path: &Path,
    metadata: &HashMap<String, String>,
    (pointer, what): (&str, &str),
    usable: impl FnOnce(&T) -> Result<()>,
) -> Result<Option<T>> {
    let bad = |why: String| Error::BadWeights {
        path: path.display().to_string(),
        why: format!("its {what} (training run state `run`, at `{pointer}`) {why}"),
    };
    let Some(text) = metadata.get("run") else {
        return Ok(None);
    };
    let run: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("does not parse: {e}")))?;
    let Some(value) = run.pointer(pointer) else {
        return Ok(None);
    };
    let value =
        (serde_json::from_value(value.clone())).map_err(|e| bad(format!("does not parse: {e}")))?;
    usable(&value).map_err(|e| bad(format!("is not usable: {e}")))?;
    Ok(Some(value))
}

/// The config a file records: ours (see [`Recorded`]), a training checkpoint's in its run
/// state.
fn recorded_config(path: &Path, metadata: &HashMap<String, String>) -> Result<Option<VggConfig>> {
    match is_training_checkpoint(metadata) {
        true => run_entry(path, metadata, ("/config", "config"), |_| Ok(())),
        false => recorded(path, metadata).config(),
    }
}

fn is_training_checkpoint(metadata: &HashMap<String, String>) -> bool {
    metadata.get("format").map(String::as_str) == Some(TRAINING_FORMAT)
}

/// Every tensor of the file with its original name, the header checked first and the values
/// checked finite; errors name the path.
pub fn read_all(path: &Path) -> Result<Vec<(String, Tensor)>> {
    metadata(path)?;
    // candle reads the file, then copies each tensor out of it.
    reserve_file(path, 2)?;
    let tensors: Vec<(String, Tensor)> = candle_core::safetensors::load(path, &Device::Cpu)
        .map_err(|e| Error::BadWeights {
            path: path.display().to_string(),
            why: format!("not a valid safetensors file: {e}"),
        })?
        .into_iter()
        .collect();
    crate::weights::check_all_finite(path, &tensors)?;
    Ok(tensors)
}

/// Refuses a file whose tensors, held `times` over, would not fit the memory budget.
fn reserve_file(path: &Path, times: u64) -> Result<()> {
    let length = std::fs::metadata(path)
        .map_err(|e| Error::io(path, "cannot read", e))?
        .len();
    crate::io::reserve_read(path, length, times)
}

/// The class names a training checkpoint or a file we converted recorded.
pub fn class_names(path: &Path) -> Result<Option<Vec<String>>> {
    let metadata = metadata(path)?;
    match is_training_checkpoint(&metadata) {
        true => run_entry(path, &metadata, ("/classes", "class names"), |_| Ok(())),
        false => recorded(path, &metadata).classes(),
    }
}

/// The preprocessing a training checkpoint's model was trained and validated with (resize,
/// crop, mean and std), or that a file we converted recorded.
pub fn trained_preprocess(path: &Path) -> Result<Option<Preprocess>> {
    let metadata = metadata(path)?;
    if !is_training_checkpoint(&metadata) {
        return recorded(path, &metadata).preprocess();
    }
    let entry = ("/options/preprocess", "preprocessing");
    run_entry(path, &metadata, entry, Preprocess::validate)
}

/// The int8 calibration a file records (see [`Recorded`]); one that does not parse or holds
/// unusable ranges is an error naming the file.
pub fn recorded_int8(path: &Path) -> Result<Option<Int8Calibration>> {
    recorded(path, &metadata(path)?).int8()
}

/// The header's `__metadata__` map (empty when the file has none).
pub fn metadata(path: &Path) -> Result<HashMap<String, String>> {
    let bad = |why: String| Error::BadWeights {
        path: path.display().to_string(),
        why: format!("not a valid safetensors file: {why}"),
    };
    let mut file = crate::io::open_regular(path).map_err(|e| Error::io(path, "cannot read", e))?;
    let mut length = [0u8; 8];
    file.read_exact(&mut length)
        .map_err(|e| bad(format!("cannot read the header length: {e}")))?;
    let length = u64::from_le_bytes(length);
    let file_len = file
        .metadata()
        .map_err(|e| Error::io(path, "cannot read", e))?
        .len();
    if length > file_len.saturating_sub(8) {
        return Err(bad(format!(
            "its header claims {length} bytes but the file holds {file_len}"
        )));
    }
    if length > MAX_HEADER {
        return Err(bad(format!(
            "a {length}-byte header (at most {MAX_HEADER} accepted: about 40,000 tensors; a VGG \
             checkpoint has under 200)"
        )));
    }
    let mut header = vec![0u8; length as usize];
    file.read_exact(&mut header)
        .map_err(|e| bad(format!("cannot read the header: {e}")))?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| bad(format!("header is not JSON: {e}")))?;
    check_layout(&header, file_len - 8 - length).map_err(bad)?;
    Ok(header
        .get("__metadata__")
        .and_then(|m| m.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default())
}

/// Bits per element of the dtypes candle reads.
const DTYPE_BITS: [(&str, u64); 15] = [
    ("F4", 4),
    ("F6_E2M3", 6),
    ("F6_E3M2", 6),
    ("U8", 8),
    ("F8_E4M3", 8),
    ("F8_E8M0", 8),
    ("U16", 16),
    ("I16", 16),
    ("F16", 16),
    ("BF16", 16),
    ("U32", 32),
    ("I32", 32),
    ("F32", 32),
    ("I64", 64),
    ("F64", 64),
];

/// Checks every tensor entry of a parsed header against the `data_len` bytes after it, so
/// that a broken file's error names the tensor (the safetensors crate's names none, or
/// another): a dtype candle reads, a shape, offsets inside the data whose length fits
/// shape and dtype, and entries that tile the data without gaps or overlaps.
fn check_layout(header: &serde_json::Value, data_len: u64) -> std::result::Result<(), String> {
    let entries = header
        .as_object()
        .ok_or("the header is not a JSON object")?;
    let metadata = entries.get("__metadata__");
    if metadata.is_some_and(|m| {
        !m.as_object()
            .is_some_and(|m| m.values().all(|v| v.is_string()))
    }) {
        return Err("`__metadata__` is not a map of strings".into());
    }
    let mut spans = Vec::with_capacity(entries.len());
    for (name, entry) in entries.iter().filter(|(name, _)| *name != "__metadata__") {
        let bad = |why: &str| format!("tensor `{name}`: {why}");
        let dtype = entry["dtype"].as_str().ok_or_else(|| bad("no dtype"))?;
        let bits = (DTYPE_BITS.iter().find(|(d, _)| *d == dtype)).ok_or_else(|| {
            let known: Vec<&str> = DTYPE_BITS.iter().map(|(d, _)| *d).collect();
            bad(&format!("dtype {dtype} is not one of {}", known.join(", ")))
        })?;
        let shape = (entry["shape"].as_array())
            .and_then(|dims| {
                dims.iter()
                    .map(serde_json::Value::as_u64)
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| bad("the shape is not a list of sizes"))?;
        let (start, end) = match entry["data_offsets"].as_array().map(Vec::as_slice) {
            Some([start, end]) => (start.as_u64(), end.as_u64()),
            _ => (None, None),
        };
        let (Some(start), Some(end)) = (start, end) else {
            return Err(bad("data_offsets is not [start, end]"));
        };
        if start > end || end > data_len {
            return Err(bad(&format!(
                "bytes {start}..{end} are not inside the {data_len} bytes of data"
            )));
        }
        let bytes =
            (shape.iter().try_fold(bits.1, |n, &d| n.checked_mul(d))).map(|bits| bits.div_ceil(8));
        if bytes != Some(end - start) {
            return Err(bad(&format!(
                "shape {shape:?} of {dtype} does not fill its {} bytes",
                end - start
            )));
        }
        spans.push((start, end, name));
    }
    spans.sort();
    let mut at = 0;
    for (start, end, name) in spans {
        if start != at {
            return Err(format!(
                "tensor `{name}` starts at byte {start} of the data, expected {at} (the \
                 tensors must tile the data without gaps or overlaps)"
            ));
        }
        at = end;
    }
    if at != data_len {
        return Err(format!(
            "the tensors end at byte {at} of {data_len} bytes of data"
        ));
    }
    Ok(())
}

/// Cap on the JSON header: the format allows 100 MB, but parsing a header takes about 25
/// times its size in memory (a 99 MB header of 1.7 M empty tensors took 2.6 GB), and a VGG
/// checkpoint's header is a few kilobytes.
const MAX_HEADER: u64 = 4 << 20;

/// Writes the tensors (to CPU memory first) as a safetensors file, with what `recorded`
/// holds in the metadata, atomically. A name given twice is refused: the format holds each
/// name once.
pub fn write(path: &Path, tensors: &[(String, Tensor)], recorded: &Recorded) -> Result<()> {
    super::refuse_duplicate_names(path, tensors)?;
    let tensors = tensors
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.to_device(&Device::Cpu)?)))
        .collect::<Result<Vec<(String, Tensor)>>>()?;
    let metadata: HashMap<String, String> = recorded.to_metadata().into_iter().collect();
    write_atomically(path, |tmp| {
        write_file(tmp, &tensors, &metadata).map_err(|e| Error::write(path, e))
    })
}

/// Writes CPU tensors with unique names to `path` as a safetensors file, streamed (for
/// [`write_atomically`]'s temporary file): the crate's `serialize_to_file` makes a temporary file of
/// its own beside ours (mode 0600, outside [`write_atomically`]'s cleanup on signals), and
/// its `serialize` holds the whole file in memory. Tensors are laid out as the crate lays
/// them out: by descending dtype size, then by name, so every tensor stays aligned.
pub(crate) fn write_file(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &HashMap<String, String>,
) -> std::io::Result<()> {
    use safetensors::tensor::View;
    use std::io::Write;
    let mut order: Vec<&(String, Tensor)> = tensors.iter().collect();
    order.sort_by(|(a, x), (b, y)| View::dtype(y).cmp(&View::dtype(x)).then(a.cmp(b)));
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::json!(metadata));
    }
    let mut offset = 0;
    for (name, tensor) in &order {
        let end = offset + View::data_len(tensor);
        let info = serde_json::json!({
            "dtype": View::dtype(tensor),
            "shape": View::shape(tensor),
            "data_offsets": [offset, end],
        });
        header.insert(name.clone(), info);
        offset = end;
    }
    let mut header = serde_json::to_vec(&header)?;
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    out.write_all(&(header.len() as u64).to_le_bytes())?;
    out.write_all(&header)?;
    for (_, tensor) in order {
        out.write_all(&View::data(tensor))?;
    }
    out.flush()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(entries: &str, data_len: u64) -> std::result::Result<(), String> {
        check_layout(&serde_json::from_str(entries).unwrap(), data_len)
    }

    #[test]
    fn broken_layouts_name_the_tensor() {
        let a = r#""a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}"#;
        let b = r#""b": {"dtype": "I64", "shape": [], "data_offsets": [8, 16]}"#;
        assert_eq!(layout(&format!("{{{a}, {b}}}"), 16), Ok(()));
        let cases = [
            (format!("{{{a}}}"), 16, "end at byte 8 of 16"),
            (
                format!("{{{a}, {b}}}"),
                12,
                "tensor `b`: bytes 8..16 are not inside",
            ),
            (
                format!("{{{}}}", a.replace("F32", "BOOL")),
                8,
                "tensor `a`: dtype BOOL",
            ),
            (
                format!("{{{}}}", a.replace("[2]", "[3]")),
                8,
                "`a`: shape [3] of F32",
            ),
            (
                format!("{{{}, {b}}}", a.replace("[0, 8]", "[8, 16]")),
                16,
                "`a` starts at",
            ),
            (
                format!(r#"{{"__metadata__": 5, {a}}}"#),
                8,
                "`__metadata__`",
            ),
        ];
        for (header, data_len, needle) in cases {
            let err = layout(&header, data_len).unwrap_err();
            assert!(err.contains(needle), "{header}: {err}");
        }
    }
}
