//! PyTorch `.pth` checkpoints (state_dicts) without Python and without running
//! any pickled code.
//!
//! Two containers exist:
//! - the zip format (`torch.save` since torch 1.6): `<archive>/data.pkl` is the
//!   pickle, `<archive>/data/<key>` holds each storage's raw bytes (stored
//!   uncompressed), `<archive>/byteorder` says `little` or `big`;
//! - the legacy format (older files such as torchvision's
//!   `vgg16-397923af.pth`, or `_use_new_zipfile_serialization=False`): five
//!   pickles back to back (magic number, protocol version, sys_info, the object,
//!   the sorted storage keys), then each storage as an 8-byte little-endian
//!   element count followed by its bytes.
//!
//! Opening parses only the pickles and the storage locations; tensor bytes are
//! read on demand, straight from the file into the output buffer when the
//! tensor is contiguous, so a 500 MB checkpoint is never held in memory twice.
//! Every size the file claims is checked against the file's length before
//! anything is allocated.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use half::{bf16, f16};

use crate::weights::pickle::{self, Pickle, TensorArgs, Value};
use crate::weights::pth_zip::ZipDirectory;

/// Keys under which training scripts commonly nest the state_dict, tried in
/// this order when the top-level dict holds no tensors.
const NESTED_KEYS: [&str; 4] = ["state_dict", "model", "model_state_dict", "module"];
/// The legacy format's magic number 0x1950a86a20f9469cfc6c, as the
/// little-endian bytes pickle's `LONG1` stores.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const LEGACY_PROTOCOL_VERSION: i64 = 1001;
/// Most dimensions a tensor may have (torch itself caps at 64).
const MAX_DIMS: usize = 64;
/// How many elements zero-stride (expanded) views may have beyond their
/// storages' sizes, per view and over the whole checkpoint: such views are
/// legal but their element count is not backed by file bytes, so a tiny file
/// could otherwise make every read produce gigabytes.
const MAX_EXPANDED_ELEMENTS: u64 = 1 << 24;
/// Bytes per read when converting a contiguous tensor of another dtype.
const CHUNK_BYTES: usize = 1 << 20;

/// Everything that can go wrong reading a checkpoint. Messages say what was
/// found and what is accepted.
#[derive(Debug, thiserror::Error)]
pub enum PthError {
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot read checkpoint: {0}")]
    Io(#[from] io::Error),
    #[error("not a PyTorch checkpoint: {0}")]
    NotACheckpoint(String),
    #[error(
        "checkpoint is truncated or corrupt: {what} at offset {offset} needs {needed} bytes but only {available} remain"
    )]
    Truncated {
        what: &'static str,
        offset: u64,
        needed: u64,
        available: u64,
    },
    #[error(
        "unknown pickle opcode 0x{opcode:02x}{} at offset {pos}: not a pickle, or a pickle feature torch.save never uses for a state_dict",
        name.map(|n| format!(" ({n})")).unwrap_or_default()
    )]
    UnknownOpcode {
        opcode: u8,
        name: Option<&'static str>,
        pos: u64,
    },
    #[error("malformed pickle at offset {pos}: {msg}")]
    Pickle { pos: u64, msg: String },
    #[error(
        "unsupported global {name} in pickle: a state_dict only needs OrderedDict, tensor rebuilds and storage types"
    )]
    UnsupportedGlobal { name: String },
    #[error(
        "pickle exceeds the {what} limit of {limit}: real checkpoints stay far below it, so the file is corrupt or malicious"
    )]
    LimitExceeded { what: &'static str, limit: u64 },
    #[error("invalid legacy checkpoint header: {0}")]
    BadHeader(String),
    #[error("checkpoint is big-endian ({0}); only little-endian checkpoints are supported")]
    BigEndian(String),
    #[error("malformed zip archive: {0}")]
    Zip(String),
    #[error(
        "zip entry {name} is compressed (method {method}); torch.save stores tensors uncompressed and only stored entries can be read in place"
    )]
    CompressedEntry { name: String, method: u16 },
    #[error(
        "no state_dict found: the checkpoint holds {found}; expected a dict of tensors, or a dict with a state_dict, model, model_state_dict or module entry holding one"
    )]
    NoStateDict { found: String },
    #[error("tensor {name}: {msg}")]
    BadTensor { name: String, msg: String },
    #[error("storage {key} is missing: expected {expected}")]
    StorageMissing { key: String, expected: String },
    #[error(
        "storage {key} claims {numel} {dtype} elements but the file holds only {available} bytes for it"
    )]
    StorageTooLarge {
        key: String,
        numel: u64,
        dtype: &'static str,
        available: u64,
    },
    #[error(
        "tensor {name} views past the end of its storage: shape {shape:?}, strides {strides:?} and offset {offset} reach element {last} but the storage holds {numel} elements"
    )]
    ViewOutOfBounds {
        name: String,
        shape: Vec<usize>,
        strides: Vec<usize>,
        offset: u64,
        last: u64,
        numel: u64,
    },
    #[error("tensor {name} has dtype {dtype}; {accepted}")]
    WrongDType {
        name: String,
        dtype: &'static str,
        accepted: &'static str,
    },
}

/// Element types of PyTorch storages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// The torch name (`float32`, `bfloat16`, …).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::I16 => "int16",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }

    /// The dtype of a pickled storage class such as `torch.FloatStorage`.
    pub(crate) fn from_storage_name(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => DType::F32,
            "DoubleStorage" => DType::F64,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            "ShortStorage" => DType::I16,
            "CharStorage" => DType::I8,
            "ByteStorage" => DType::U8,
            "BoolStorage" => DType::Bool,
            _ => return None,
        })
    }
}

/// Which container a checkpoint uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PthFormat {
    /// `torch.save` since torch 1.6.
    Zip,
    /// Pre-1.6 files and `_use_new_zipfile_serialization=False`.
    Legacy,
}

/// One tensor of the state_dict: a strided view of a storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorEntry {
    /// The state_dict key, as saved (a DataParallel `module.` prefix is kept).
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// In elements, as torch reports them.
    pub strides: Vec<usize>,
    /// Offset of the first element from the start of the storage's bytes in the
    /// file, in elements. For old legacy files whose storages were views, the
    /// view's own offset is already added in.
    pub storage_offset: usize,
    /// Index into [`Checkpoint`]'s storages.
    storage: usize,
}

/// Where one storage's bytes lie in the source.
#[derive(Clone, Copy, Debug)]
struct Extent {
    offset: u64,
    len: u64,
}

/// The bytes of a checkpoint: an open file read at offsets, or a buffer.
pub(crate) struct Source {
    backing: Backing,
    len: u64,
}

enum Backing {
    File(File),
    Memory(Vec<u8>),
}

impl Source {
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Fills `buf` from `offset`, or fails with a truncation error naming
    /// `what` if the source is too short.
    pub(crate) fn read_at(
        &self,
        offset: u64,
        buf: &mut [u8],
        what: &'static str,
    ) -> Result<(), PthError> {
        let needed = buf.len() as u64;
        let end = offset.checked_add(needed).filter(|&end| end <= self.len);
        let truncated = || PthError::Truncated {
            what,
            offset,
            needed,
            available: self.len.saturating_sub(offset),
        };
        let end = end.ok_or_else(truncated)?;
        match &self.backing {
            Backing::File(file) => read_file_at(file, buf, offset).map_err(PthError::Io),
            Backing::Memory(bytes) => {
                let range = usize::try_from(offset).ok().zip(usize::try_from(end).ok());
                let src = range
                    .and_then(|(start, end)| bytes.get(start..end))
                    .ok_or_else(truncated)?;
                buf.copy_from_slice(src);
                Ok(())
            }
        }
    }

    /// Reads `len` bytes at `offset`, checking the range against the source's
    /// length before allocating.
    pub(crate) fn read_vec(
        &self,
        offset: u64,
        len: u64,
        what: &'static str,
    ) -> Result<Vec<u8>, PthError> {
        let available = self.len.saturating_sub(offset);
        let size = usize::try_from(len).ok().filter(|_| len <= available);
        let size = size.ok_or(PthError::Truncated {
            what,
            offset,
            needed: len,
            available,
        })?;
        let mut buf = vec![0u8; size];
        self.read_at(offset, &mut buf, what)?;
        Ok(buf)
    }
}

#[cfg(unix)]
fn read_file_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_file_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        let n = file.seek_read(buf, offset)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf = &mut buf[n..];
        offset += n as u64;
    }
    Ok(())
}

/// A sequential reader over a [`Source`], for pickles whose length is only
/// known once parsed (the legacy format).
struct SourceReader<'a> {
    source: &'a Source,
    pos: u64,
}

impl Read for SourceReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.source.len().saturating_sub(self.pos);
        let n = usize::try_from(left).map_or(buf.len(), |left| left.min(buf.len()));
        let head = &mut buf[..n];
        self.source
            .read_at(self.pos, head, "pickle data")
            .map_err(io::Error::other)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// A storage reference decoded from a persistent id:
/// `('storage', <T>Storage, key, location, numel[, view_metadata])`.
struct StorageRef {
    key: String,
    dtype: DType,
    numel: u64,
    /// Legacy storage views: `(view_key, offset, size)` in elements of the root.
    view: Option<(u64, u64)>,
}

impl StorageRef {
    fn parse(pid: &Value) -> Result<Self, String> {
        const EXPECTED: &str = "expected ('storage', <dtype>Storage, key, location, numel[, view])";
        let fields = pid
            .as_tuple()
            .ok_or_else(|| format!("persistent id is a {}; {EXPECTED}", pid.kind()))?;
        let [tag, class, key, _location, numel, rest @ ..] = fields else {
            return Err(format!(
                "persistent id has {} fields; {EXPECTED}",
                fields.len()
            ));
        };
        let Value::Global(pickle::Global::Storage(dtype)) = class else {
            return Err(format!(
                "persistent id names a {} as storage type; {EXPECTED}",
                class.kind()
            ));
        };
        if tag.as_str() != Some("storage") || rest.len() > 1 {
            return Err(format!("unsupported persistent id; {EXPECTED}"));
        }
        Ok(StorageRef {
            key: storage_key(key).ok_or_else(|| format!("storage key is a {}", key.kind()))?,
            dtype: *dtype,
            numel: non_negative(numel).ok_or("storage element count is not a non-negative int")?,
            view: rest.first().map(parse_view).transpose()?.flatten(),
        })
    }

    /// Base offset and size, in elements, of the part of the storage the
    /// tensor sees, checked against the storage's bytes.
    fn window(&self, extent: Extent) -> Result<(u64, u64), PthError> {
        let size = self.dtype.size() as u64;
        if self.numel > extent.len / size {
            return Err(PthError::StorageTooLarge {
                key: self.key.clone(),
                numel: self.numel,
                dtype: self.dtype.name(),
                available: extent.len,
            });
        }
        let Some((offset, len)) = self.view else {
            return Ok((0, self.numel));
        };
        match offset.checked_add(len) {
            Some(end) if end <= self.numel => Ok((offset, len)),
            _ => Err(PthError::StorageTooLarge {
                key: format!("view of {}", self.key),
                numel: len,
                dtype: self.dtype.name(),
                available: extent.len,
            }),
        }
    }
}

fn parse_view(view: &Value) -> Result<Option<(u64, u64)>, String> {
    if matches!(view, Value::None) {
        return Ok(None);
    }
    match view.as_tuple() {
        Some([_key, offset, size]) => non_negative(offset)
            .zip(non_negative(size))
            .map(Some)
            .ok_or_else(|| "storage view offset and size must be non-negative ints".into()),
        _ => Err("storage view metadata is not (key, offset, size)".into()),
    }
}

fn storage_key(key: &Value) -> Option<String> {
    match key {
        Value::Int(i) => Some(i.to_string()),
        other => other.as_str().map(str::to_owned),
    }
}

fn non_negative(value: &Value) -> Option<u64> {
    value.as_int().and_then(|i| u64::try_from(i).ok())
}

/// A validated strided view.
struct Layout {
    numel: usize,
    /// Largest element index the view touches (meaningless when empty).
    last: u64,
    contiguous: bool,
}

impl Layout {
    /// Checks that the view lies within `limit` elements and that its element
    /// count is backed by the file (or small).
    fn check(
        name: &str,
        shape: &[usize],
        strides: &[usize],
        offset: u64,
        limit: u64,
    ) -> Result<Self, PthError> {
        let bad = |msg: String| PthError::BadTensor {
            name: name.to_owned(),
            msg,
        };
        if shape.len() != strides.len() || shape.len() > MAX_DIMS {
            return Err(bad(format!(
                "{} sizes and {} strides (at most {MAX_DIMS} dimensions)",
                shape.len(),
                strides.len()
            )));
        }
        let overflow = || bad("shape and strides overflow".into());
        let numel = shape
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
            .ok_or_else(overflow)?;
        let span = shape.iter().zip(strides).try_fold(0u64, |acc, (&d, &s)| {
            (d as u64)
                .saturating_sub(1)
                .checked_mul(s as u64)
                .and_then(|x| acc.checked_add(x))
        });
        let last = span
            .and_then(|span| offset.checked_add(span))
            .ok_or_else(overflow)?;
        let fits = if numel == 0 {
            offset <= limit
        } else {
            last < limit
        };
        if !fits {
            return Err(PthError::ViewOutOfBounds {
                name: name.to_owned(),
                shape: shape.to_vec(),
                strides: strides.to_vec(),
                offset,
                last,
                numel: limit,
            });
        }
        if numel > limit.max(MAX_EXPANDED_ELEMENTS) {
            return Err(bad(format!(
                "{numel} elements over a storage of {limit}: expanded views beyond {MAX_EXPANDED_ELEMENTS} elements are refused"
            )));
        }
        Ok(Layout {
            numel: usize::try_from(numel).map_err(|_| overflow())?,
            last,
            contiguous: is_contiguous(shape, strides),
        })
    }
}

/// Row-major contiguity; strides of size-1 dimensions do not matter.
fn is_contiguous(shape: &[usize], strides: &[usize]) -> bool {
    let mut expected = 1usize;
    for (&dim, &stride) in shape.iter().zip(strides).rev() {
        if dim != 1 && stride != expected {
            return false;
        }
        expected = expected.saturating_mul(dim);
    }
    true
}

/// Decodes little-endian elements of one dtype, appending to the output.
type Decoder<T> = fn(&[u8], &mut Vec<T>);

fn f32_decoder(dtype: DType) -> Option<Decoder<f32>> {
    Some(match dtype {
        DType::F32 => |b, out| {
            out.extend(
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            )
        },
        DType::F64 => {
            |b, out| out.extend(b.chunks_exact(8).map(|c| f64::from_le_bytes(le8(c)) as f32))
        }
        DType::F16 => |b, out| {
            out.extend(
                b.chunks_exact(2)
                    .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()),
            )
        },
        DType::BF16 => |b, out| {
            out.extend(
                b.chunks_exact(2)
                    .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()),
            )
        },
        _ => return None,
    })
}

fn i64_decoder(dtype: DType) -> Option<Decoder<i64>> {
    Some(match dtype {
        DType::I64 => |b, out| out.extend(b.chunks_exact(8).map(|c| i64::from_le_bytes(le8(c)))),
        DType::I32 => |b, out| {
            out.extend(
                b.chunks_exact(4)
                    .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
            )
        },
        DType::I16 => |b, out| {
            out.extend(
                b.chunks_exact(2)
                    .map(|c| i64::from(i16::from_le_bytes([c[0], c[1]]))),
            )
        },
        DType::I8 => |b, out| out.extend(b.iter().map(|&x| i64::from(x as i8))),
        DType::U8 => |b, out| out.extend(b.iter().map(|&x| i64::from(x))),
        DType::Bool => |b, out| out.extend(b.iter().map(|&x| i64::from(x != 0))),
        _ => return None,
    })
}

/// The 8 bytes of an exact 8-byte chunk.
fn le8(chunk: &[u8]) -> [u8; 8] {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(chunk);
    bytes
}

/// What opening found, before it becomes a [`Checkpoint`].
struct Parsed {
    format: PthFormat,
    top: Value,
    /// Storage locations by key.
    extents: HashMap<String, Extent>,
    /// Says where a storage that is not in `extents` should have been.
    missing: fn(&str) -> String,
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
        let file = File::open(path).map_err(open_err)?;
        let len = file.metadata().map_err(open_err)?.len();
        Self::from_source(Source {
            backing: Backing::File(file),
            len,
        })
    }

    /// [`Checkpoint::open`] on bytes already in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, PthError> {
        let len = bytes.len() as u64;
        Self::from_source(Source {
            backing: Backing::Memory(bytes),
            len,
        })
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
            [b'P', b'K', 3, 4] | [b'P', b'K', 5, 6] => parse_zip(&source)?,
            [0x80, ..] => parse_legacy(&source)?,
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
        Ok(checkpoint)
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

/// Walks a strided view in row-major order over `span`, the bytes from its
/// first element to its last.
fn gather<T>(
    entry: &TensorEntry,
    span: &[u8],
    numel: usize,
    decode: Decoder<T>,
) -> Result<Vec<T>, PthError> {
    let size = entry.dtype.size();
    let internal = || PthError::BadTensor {
        name: entry.name.clone(),
        msg: "strided view escapes its byte span".into(),
    };
    // Size-1 dimensions never move the position, and skipping them keeps
    // their (arbitrary) strides out of the arithmetic.
    let dims: Vec<(usize, usize)> = entry
        .shape
        .iter()
        .zip(&entry.strides)
        .filter(|(d, _)| **d != 1)
        .map(|(&d, &s)| (d, s))
        .collect();
    let mut index = vec![0usize; dims.len()];
    let mut pos = 0usize;
    let mut out = Vec::with_capacity(numel);
    for _ in 0..numel {
        let start = pos.checked_mul(size).ok_or_else(internal)?;
        let element = start
            .checked_add(size)
            .and_then(|end| span.get(start..end))
            .ok_or_else(internal)?;
        decode(element, &mut out);
        for (i, &(dim, stride)) in index.iter_mut().zip(&dims).rev() {
            *i += 1;
            if *i < dim {
                pos = pos.checked_add(stride).ok_or_else(internal)?;
                break;
            }
            *i = 0;
            let rewind = stride.checked_mul(dim - 1).ok_or_else(internal)?;
            pos = pos.checked_sub(rewind).ok_or_else(internal)?;
        }
    }
    Ok(out)
}

/// Validates one tensor against the part of its storage it may see.
fn build_entry(
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
struct StateDict<'a> {
    /// The nesting key, if it was not the top-level object.
    key: Option<String>,
    tensors: Vec<(String, &'a TensorArgs)>,
}

/// Locates the state_dict: the top-level dict if it holds tensors, else the
/// first of [`NESTED_KEYS`] whose value does. Non-tensor values (such as
/// `_extra_state`) are skipped.
fn find_state_dict(top: &Value) -> Result<StateDict<'_>, PthError> {
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
fn describe(value: &Value) -> String {
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

fn not_a_checkpoint(source: &Source, head: &[u8]) -> PthError {
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

// --- zip format ----------------------------------------------------------

fn parse_zip(source: &Source) -> Result<Parsed, PthError> {
    let dir = ZipDirectory::read(source)?;
    let prefix = dir
        .names()
        .filter_map(|n| n.strip_suffix("data.pkl"))
        .find(|p| p.ends_with('/') && p.matches('/').count() == 1)
        .ok_or_else(|| {
            PthError::Zip(
                "no <archive>/data.pkl entry: this zip is not a torch.save checkpoint".into(),
            )
        })?
        .to_owned();
    let pickle_name = format!("{prefix}data.pkl");
    if let Some(order) = dir.get(&format!("{prefix}byteorder")) {
        let (offset, len) = dir.data_range(source, order)?;
        let bytes = source.read_vec(offset, len.min(16), "byteorder entry")?;
        if bytes != b"little" {
            return Err(PthError::BigEndian(format!(
                "byteorder entry says {:?}",
                String::from_utf8_lossy(&bytes)
            )));
        }
    }
    let entry = dir
        .get(&pickle_name)
        .ok_or_else(|| PthError::Zip(format!("{pickle_name} vanished")))?;
    let (offset, len) = dir.data_range(source, entry)?;
    let bytes = source.read_vec(offset, len, "data.pkl")?;
    let top = pickle::load(bytes.as_slice(), offset, offset + len)?.value;
    let mut extents = HashMap::new();
    let storage_prefix = format!("{prefix}data/");
    for entry in dir.entries() {
        if let Some(key) = entry.name.strip_prefix(&storage_prefix) {
            let (offset, len) = dir.data_range(source, entry)?;
            extents.insert(key.to_owned(), Extent { offset, len });
        }
    }
    Ok(Parsed {
        format: PthFormat::Zip,
        top,
        extents,
        missing: |key| format!("a zip entry <archive>/data/{key}"),
    })
}

// --- legacy format -------------------------------------------------------

fn load_at(source: &Source, offset: u64) -> Result<Pickle, PthError> {
    let reader = BufReader::new(SourceReader {
        source,
        pos: offset,
    });
    pickle::load(reader, offset, source.len())
}

fn parse_legacy(source: &Source) -> Result<Parsed, PthError> {
    let magic = load_at(source, 0)?;
    if !matches!(&magic.value, Value::BigInt(bytes) if **bytes == LEGACY_MAGIC) {
        return Err(PthError::BadHeader(
            "the first pickle is not the magic number 0x1950a86a20f9469cfc6c".into(),
        ));
    }
    let version = load_at(source, magic.end)?;
    if version.value.as_int() != Some(LEGACY_PROTOCOL_VERSION) {
        return Err(PthError::BadHeader(format!(
            "protocol version is a {} other than {LEGACY_PROTOCOL_VERSION}",
            version.value.kind()
        )));
    }
    let sys_info = load_at(source, version.end)?;
    if matches!(
        sys_info.value.get("little_endian"),
        Some(Value::Bool(false))
    ) {
        return Err(PthError::BigEndian(
            "sys_info has little_endian=False".into(),
        ));
    }
    let main = load_at(source, sys_info.end)?;
    let keys = load_at(source, main.end)?;
    let extents = legacy_extents(source, &main.persistent_ids, &keys.value, keys.end)?;
    Ok(Parsed {
        format: PthFormat::Legacy,
        top: main.value,
        extents,
        missing: |_| "an entry in the legacy storage key list".into(),
    })
}

/// Walks the storage records after the pickles: for each key in the listed
/// order, an 8-byte element count then the data. Element sizes come from the
/// persistent ids, which name each storage's dtype.
fn legacy_extents(
    source: &Source,
    pids: &[Value],
    keys: &Value,
    mut pos: u64,
) -> Result<HashMap<String, Extent>, PthError> {
    let mut dtypes: HashMap<String, DType> = HashMap::new();
    for pid in pids {
        let sref = StorageRef::parse(pid).map_err(PthError::BadHeader)?;
        dtypes.entry(sref.key).or_insert(sref.dtype);
    }
    let keys = keys
        .as_list()
        .ok_or_else(|| PthError::BadHeader(format!("storage key list is a {}", keys.kind())))?;
    let mut extents = HashMap::new();
    for key in keys {
        let key = storage_key(key)
            .ok_or_else(|| PthError::BadHeader("storage key is not a string".into()))?;
        let dtype = *dtypes.get(&key).ok_or_else(|| {
            PthError::BadHeader(format!("storage {key} is listed but never referenced"))
        })?;
        let mut count = [0u8; 8];
        source.read_at(pos, &mut count, "storage header")?;
        let numel = u64::from_le_bytes(count);
        let data = pos + 8;
        let available = source.len() - data;
        let len = numel
            .checked_mul(dtype.size() as u64)
            .filter(|&len| len <= available)
            .ok_or_else(|| PthError::StorageTooLarge {
                key: key.clone(),
                numel,
                dtype: dtype.name(),
                available,
            })?;
        extents.insert(key, Extent { offset: data, len });
        pos = data + len;
    }
    Ok(extents)
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn contiguity_ignores_unit_dimensions() {
        assert!(is_contiguous(&[2, 3], &[3, 1]));
        assert!(is_contiguous(&[1, 3], &[99, 1]));
        assert!(is_contiguous(&[], &[]));
        assert!(!is_contiguous(&[4, 3], &[1, 4]));
    }
}
