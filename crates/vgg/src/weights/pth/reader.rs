//! [`Checkpoint`]: open a `.pth`, find its state_dict, validate every view, read tensors.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use super::layout::{
    CHUNK_BYTES, Decoder, Layout, MAX_EXPANDED_ELEMENTS, f32_decoder, gather, i64_decoder,
};
use super::pickle::{TensorArgs, Value};
use super::source::{Extent, Source};
use super::storage::StorageRef;
use super::{DType, PthError, PthFormat, TensorEntry, legacy, zip};

/// Keys under which training scripts commonly nest the state_dict, tried in
/// this order when the top-level dict holds no tensors.
const NESTED_KEYS: [&str; 4] = ["state_dict", "model", "model_state_dict", "module"];

/// What opening found, before it becomes a [`Checkpoint`].
pub(super) struct Parsed {
    pub(super) format: PthFormat,
    pub(super) top: Value,
    /// Storage locations by key.
    pub(super) extents: HashMap<String, Extent>,
    /// Says where a storage that is not in `extents` should have been.
    pub(super) missing: fn(&str) -> String,
}

/// A PyTorch checkpoint's state_dict: tensor descriptions, with the bytes read
/// on demand.
pub struct Checkpoint {
    source: Source,
    format: PthFormat,
    source_key: Option<String>,
    entries: Vec<TensorEntry>,
    storages: Vec<Extent>,
}

impl fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkpoint")
            .field("format", &self.format)
            .field("source_key", &self.source_key)
            .field("entries", &self.entries.len())
            .field("bytes", &self.source.len())
            .finish()
    }
}

impl Checkpoint {
    /// Opens a checkpoint file, detecting the zip or legacy format from its
    /// first bytes. Only the pickles and storage headers are read here.
    pub fn open(path: &Path) -> Result<Self, PthError> {
        let open_err = |source| PthError::Open {
            path: path.to_owned(),
            source,
        };
        let file = crate::io::open_regular(path).map_err(open_err)?;
        Self::from_source(Source::file(file).map_err(open_err)?)
    }

    /// [`Checkpoint::open`] on bytes already in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, PthError> {
        Self::from_source(Source::memory(bytes))
    }

    /// The state_dict's tensors, in the order they were saved.
    pub fn entries(&self) -> &[TensorEntry] {
        &self.entries
    }

    pub fn format(&self) -> PthFormat {
        self.format
    }

    /// The key the state_dict was nested under (`state_dict`, `model`,
    /// `model_state_dict` or `module`), or `None` when it is the top-level
    /// object.
    pub fn source_key(&self) -> Option<&str> {
        self.source_key.as_deref()
    }

    /// A float tensor (float32, float64, float16 or bfloat16) as contiguous
    /// row-major f32.
    pub fn read_f32(&self, entry: &TensorEntry) -> Result<Vec<f32>, PthError> {
        let decode = f32_decoder(entry.dtype).ok_or_else(|| PthError::WrongDType {
            name: entry.name.clone(),
            dtype: entry.dtype.name(),
            accepted: "read_f32 accepts float32, float64, float16 and bfloat16 tensors",
        })?;
        self.read_elements(entry, DType::F32, decode)
    }

    /// An integer or bool tensor as contiguous row-major i64 (bools as 0/1).
    pub fn read_i64(&self, entry: &TensorEntry) -> Result<Vec<i64>, PthError> {
        let decode = i64_decoder(entry.dtype).ok_or_else(|| PthError::WrongDType {
            name: entry.name.clone(),
            dtype: entry.dtype.name(),
            accepted: "read_i64 accepts int64, int32, int16, int8, uint8 and bool tensors",
        })?;
        self.read_elements(entry, DType::I64, decode)
    }

    fn from_source(source: Source) -> Result<Self, PthError> {
        let mut head = [0u8; 4];
        let head_len = usize::try_from(source.len()).map_or(head.len(), |len| len.min(head.len()));
        source.read_at(0, &mut head[..head_len], "file header")?;
        let parsed = match head {
            [b'P', b'K', 3, 4] | [b'P', b'K', 5, 6] => zip::parse_zip(&source)?,
            [0x80, ..] => legacy::parse_legacy(&source)?,
            _ => return Err(not_a_checkpoint(&source, &head[..head_len])),
        };
        Self::assemble(source, parsed)
    }

    /// Finds the state_dict in the unpickled object and validates every
    /// tensor view against its storage.
    fn assemble(source: Source, parsed: Parsed) -> Result<Self, PthError> {
        let StateDict {
            key: source_key,
            tensors,
        } = find_state_dict(&parsed.top)?;
        let mut checkpoint = Checkpoint {
            source,
            format: parsed.format,
            source_key,
            entries: Vec::new(),
            storages: Vec::new(),
        };
        let mut storage_index: HashMap<String, usize> = HashMap::new();
        let mut entry_index: HashMap<String, usize> = HashMap::new();
        let mut expanded_budget = MAX_EXPANDED_ELEMENTS;
        for (name, args) in tensors {
            let sref = args
                .storage
                .as_persistent_id()
                .ok_or_else(|| format!("storage argument is a {}", args.storage.kind()))
                .and_then(StorageRef::parse)
                .map_err(|msg| PthError::BadTensor {
                    name: name.clone(),
                    msg,
                })?;
            let extent =
                *parsed
                    .extents
                    .get(&sref.key)
                    .ok_or_else(|| PthError::StorageMissing {
                        key: sref.key.clone(),
                        expected: (parsed.missing)(&sref.key),
                    })?;
            let next = checkpoint.storages.len();
            let storage = *storage_index.entry(sref.key.clone()).or_insert(next);
            if storage == next {
                checkpoint.storages.push(extent);
            }
            let entry = build_entry(name, args, &sref, extent, storage, &mut expanded_budget)?;
            // A repeated key replaces the earlier tensor, as in a Python dict.
            match entry_index.get(&entry.name) {
                Some(&i) => {
                    if let Some(slot) = checkpoint.entries.get_mut(i) {
                        *slot = entry;
                    }
                }
                None => {
                    entry_index.insert(entry.name.clone(), checkpoint.entries.len());
                    checkpoint.entries.push(entry);
                }
            }
        }
        checkpoint.check_sharing()?;
        Ok(checkpoint)
    }

    /// Views may share a storage (tied weights), but each is read into a buffer of its own:
    /// views that read the same bytes many times over would turn megabytes on disk into
    /// gigabytes in memory. Together they may read at most twice what is stored, plus the
    /// allowance for expanded views.
    fn check_sharing(&self) -> Result<(), PthError> {
        // Bytes the storages really cover: zip entries may be made to overlap.
        let mut extents: Vec<(u64, u64)> = self
            .storages
            .iter()
            .map(|e| (e.offset, e.offset.saturating_add(e.len)))
            .collect();
        extents.sort_unstable();
        let (mut stored, mut covered_to) = (0u64, 0u64);
        for (start, end) in extents {
            let start = start.max(covered_to);
            if end > start {
                stored = stored.saturating_add(end - start);
                covered_to = end;
            }
        }
        let viewed = self.entries.iter().fold(0u64, |sum, e| {
            let numel = e
                .shape
                .iter()
                .fold(1u64, |n, &d| n.saturating_mul(d as u64));
            sum.saturating_add(numel.saturating_mul(e.dtype.size() as u64))
        });
        let allowed = stored
            .saturating_mul(2)
            .saturating_add(MAX_EXPANDED_ELEMENTS * 8);
        if viewed > allowed {
            return Err(PthError::SharedViews { viewed, stored });
        }
        Ok(())
    }

    /// Bytes that reading every tensor takes: floats as f32, integers as i64.
    pub fn materialized_bytes(&self) -> u64 {
        self.entries.iter().fold(0u64, |sum, e| {
            let size: u64 = if f32_decoder(e.dtype).is_some() { 4 } else { 8 };
            let numel = e
                .shape
                .iter()
                .fold(size, |n, &d| n.saturating_mul(d as u64));
            sum.saturating_add(numel)
        })
    }

    /// Reads a tensor's elements: straight into the output when it is
    /// contiguous and already in the output type, in chunks when it needs
    /// converting, and by gathering over its byte span when it is strided.
    fn read_elements<T: bytemuck::Pod>(
        &self,
        entry: &TensorEntry,
        native: DType,
        decode: Decoder<T>,
    ) -> Result<Vec<T>, PthError> {
        let extent = self
            .storages
            .get(entry.storage)
            .ok_or_else(|| PthError::BadTensor {
                name: entry.name.clone(),
                msg: "entry does not belong to this checkpoint".into(),
            })?;
        let size = entry.dtype.size() as u64;
        let offset = entry.storage_offset as u64;
        let layout = Layout::check(
            &entry.name,
            &entry.shape,
            &entry.strides,
            offset,
            extent.len / size,
        )?;
        if layout.numel == 0 {
            return Ok(Vec::new());
        }
        // Cannot overflow: `last < extent.len / size` was just checked.
        let start = extent.offset + offset * size;
        if !layout.contiguous {
            let span_bytes = (layout.last - offset + 1).saturating_mul(size);
            crate::limits::reserve(Some(span_bytes), || {
                format!(
                    "the {span_bytes}-byte span of strided tensor {}",
                    entry.name
                )
            })
            .map_err(|e| PthError::BadTensor {
                name: entry.name.clone(),
                msg: e.to_string(),
            })?;
            let span =
                self.source
                    .read_vec(start, (layout.last - offset + 1) * size, "tensor data")?;
            return gather(entry, &span, layout.numel, decode);
        }
        if entry.dtype == native && cfg!(target_endian = "little") {
            let mut out = vec![T::zeroed(); layout.numel];
            self.source
                .read_at(start, bytemuck::cast_slice_mut(&mut out), "tensor data")?;
            return Ok(out);
        }
        self.read_converted(start, layout.numel as u64 * size, layout.numel, decode)
    }

    /// Reads a contiguous run of `len` bytes in chunks, converting as it goes,
    /// so the only full-size buffer is the output.
    fn read_converted<T>(
        &self,
        start: u64,
        len: u64,
        numel: usize,
        decode: Decoder<T>,
    ) -> Result<Vec<T>, PthError> {
        let mut out = Vec::with_capacity(numel);
        let mut chunk =
            vec![0u8; usize::try_from(len).map_or(CHUNK_BYTES, |len| len.min(CHUNK_BYTES))];
        let mut done = 0u64;
        while done < len {
            let n = usize::try_from(len - done).map_or(chunk.len(), |left| left.min(chunk.len()));
            let buf = &mut chunk[..n];
            self.source.read_at(start + done, buf, "tensor data")?;
            decode(buf, &mut out);
            done += n as u64;
        }
        Ok(out)
    }
}

/// Validates one tensor against the part of its storage it may see.
pub(super) fn build_entry(
    name: String,
    args: &TensorArgs,
    sref: &StorageRef,
    extent: Extent,
    storage: usize,
    expanded_budget: &mut u64,
) -> Result<TensorEntry, PthError> {
    let bad = |msg: &str| PthError::BadTensor {
        name: name.clone(),
        msg: msg.to_owned(),
    };
    let to_usizes = |values: &[i64]| -> Option<Vec<usize>> {
        values.iter().map(|&v| usize::try_from(v).ok()).collect()
    };
    let shape = to_usizes(&args.shape).ok_or_else(|| bad("negative or oversized size"))?;
    let strides = to_usizes(&args.strides).ok_or_else(|| bad("negative or oversized stride"))?;
    let offset = u64::try_from(args.storage_offset).map_err(|_| bad("negative storage offset"))?;
    let (base, limit) = sref.window(extent)?;
    let layout = Layout::check(&name, &shape, &strides, offset, limit)?;
    let expanded = (layout.numel as u64).saturating_sub(limit);
    *expanded_budget = expanded_budget.checked_sub(expanded).ok_or_else(|| {
        bad("expanded (zero-stride) views exceed their storages by too much in total")
    })?;
    let storage_offset = base
        .checked_add(offset)
        .and_then(|o| usize::try_from(o).ok())
        .ok_or_else(|| bad("storage offset overflows"))?;
    Ok(TensorEntry {
        name,
        dtype: sref.dtype,
        shape,
        strides,
        storage_offset,
        storage,
    })
}

/// The state_dict inside the unpickled object.
pub(super) struct StateDict<'a> {
    /// The nesting key, if it was not the top-level object.
    key: Option<String>,
    tensors: Vec<(String, &'a TensorArgs)>,
}

/// Locates the state_dict: the top-level dict if it holds tensors, else the
/// first of [`NESTED_KEYS`] whose value does. Non-tensor values (such as
/// `_extra_state`) are skipped.
pub(super) fn find_state_dict(top: &Value) -> Result<StateDict<'_>, PthError> {
    let holds_tensors = |v: &Value| {
        v.as_dict()
            .is_some_and(|d| d.iter().any(|(_, v)| v.as_tensor().is_some()))
    };
    let (key, dict) = if holds_tensors(top) {
        (None, top)
    } else {
        NESTED_KEYS
            .iter()
            .find_map(|&k| {
                top.get(k)
                    .filter(|v| holds_tensors(v))
                    .map(|v| (Some(k.to_owned()), v))
            })
            .ok_or_else(|| PthError::NoStateDict {
                found: describe(top),
            })?
    };
    let mut tensors = Vec::new();
    for (k, v) in dict.as_dict().unwrap_or_default() {
        let Some(tensor) = v.as_tensor() else {
            continue;
        };
        let name = k.as_str().ok_or_else(|| PthError::BadTensor {
            name: format!("<{} key>", k.kind()),
            msg: "state_dict keys must be strings".into(),
        })?;
        tensors.push((name.to_owned(), tensor));
    }
    Ok(StateDict { key, tensors })
}

/// A short description of a value that holds no state_dict.
pub(super) fn describe(value: &Value) -> String {
    let Some(items) = value.as_dict() else {
        return format!("a {}", value.kind());
    };
    let keys: Vec<String> = items
        .iter()
        .take(8)
        .map(|(k, v)| {
            let key: String = k.as_str().unwrap_or("?").chars().take(40).collect();
            format!("{:?}: {}", key, v.kind())
        })
        .collect();
    let more = if items.len() > keys.len() {
        ", …"
    } else {
        ""
    };
    format!("a dict {{{}{more}}}", keys.join(", "))
}

pub(super) fn not_a_checkpoint(source: &Source, head: &[u8]) -> PthError {
    let mut magic = [0u8; 5];
    let is_tar = source.read_at(257, &mut magic, "tar header").is_ok() && &magic == b"ustar";
    if is_tar {
        return PthError::NotACheckpoint(
            "this is a tar archive, the pre-0.4 torch format, which is not supported; re-save it with a current torch"
                .into(),
        );
    }
    let hex: Vec<String> = head.iter().map(|b| format!("{b:02x}")).collect();
    PthError::NotACheckpoint(format!(
        "expected a zip archive (starting with PK, torch >= 1.6) or a legacy pickle stream (starting with 0x80), found bytes [{}]",
        hex.join(" ")
    ))
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/pth")
            .join(name)
    }

    /// `shared.a` and `shared.b` view one storage at different offsets; the
    /// checkpoint must record one storage for both, not two copies.
    #[test]
    fn shared_views_use_one_storage() {
        for name in ["tiny_zip.pth", "tiny_legacy.pth"] {
            let checkpoint = Checkpoint::open(&fixture(name)).unwrap();
            let find = |n: &str| checkpoint.entries().iter().find(|e| e.name == n).unwrap();
            let (a, b) = (find("shared.a"), find("shared.b"));
            assert_eq!(a.storage, b.storage, "{name}");
            assert_eq!((a.storage_offset, b.storage_offset), (2, 6), "{name}");
            let distinct: std::collections::HashSet<usize> =
                checkpoint.entries().iter().map(|e| e.storage).collect();
            assert_eq!(distinct.len(), checkpoint.storages.len(), "{name}");
            assert_eq!(distinct.len(), checkpoint.entries().len() - 1, "{name}");
        }
    }
}
