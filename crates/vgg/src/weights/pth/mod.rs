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
//!
//! One file per concern: [`reader`] (the [`Checkpoint`] API), [`zip`] and [`legacy`] (the two
//! containers), [`source`] (bounded reads from a file or buffer), [`storage`] (persistent ids),
//! [`layout`] (strided views and dtype decoding), [`pickle`] (the restricted unpickler) and
//! [`write`] (the zip writer), with the pickle opcodes in one table shared by reader and writer.

mod layout;
mod legacy;
pub mod pickle;
mod reader;
mod source;
mod storage;
pub mod write;
mod zip;

use std::io;
use std::path::PathBuf;

pub use reader::Checkpoint;

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
    #[error(
        "its tensors view {viewed} bytes of {stored} stored bytes: tensors may share storage (tied weights), but each is read into its own buffer, so together they may read at most twice what is stored"
    )]
    SharedViews { viewed: u64, stored: u64 },
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
