//! Reading an ONNX file safely: the protobuf is decoded by prost from a buffer whose size was
//! checked against the memory budget, and each tensor's data is checked against its claimed
//! shape before anything is allocated for it. External data is read only from files inside
//! the model's folder, within their length.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use prost::Message;

use crate::error::{Error, Result};
use crate::io::{open_regular, read_regular};
use crate::limits::element_count;
use crate::weights::onnx::proto::tensor_proto::{DataLocation, DataType};
use crate::weights::onnx::proto::{ModelProto, TensorProto};

/// A decoded model and where it came from (external data is resolved against its folder).
pub struct OnnxFile {
    pub model: ModelProto,
    path: PathBuf,
}

impl OnnxFile {
    /// Reads and decodes `path`. The file is held twice while decoding (its bytes and the
    /// decoded tensors), and checked against the memory budget for that.
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = read_regular(path, 2)?;
        let model = ModelProto::decode(bytes.as_slice()).map_err(|e| Error::BadWeights {
            path: path.display().to_string(),
            why: format!("not an ONNX model (the protobuf does not decode: {e})"),
        })?;
        if model.graph.is_none() {
            return Err(bad(path, "an ONNX model without a graph".into()));
        }
        Ok(OnnxFile {
            model,
            path: path.to_path_buf(),
        })
    }

    /// The error for this file: `why` it cannot be used.
    pub fn error(&self, why: String) -> Error {
        bad(&self.path, why)
    }

    /// A float tensor's shape and values as f32 (from float, double, float16 or bfloat16
    /// data, in any of the places ONNX may keep them).
    pub fn floats(&self, tensor: &TensorProto) -> Result<(Vec<usize>, Vec<f32>)> {
        let (dims, count) = self.dims(tensor)?;
        let name = tensor.name();
        let values = match DataType::try_from(tensor.data_type()) {
            Ok(DataType::Float) => self.values(tensor, count, 4, &tensor.float_data, |b| {
                f32::from_le_bytes(b.try_into().expect("4 bytes"))
            })?,
            Ok(DataType::Double) => {
                let f64s = self.values(tensor, count, 8, &tensor.double_data, |b| {
                    f64::from_le_bytes(b.try_into().expect("8 bytes"))
                })?;
                f64s.into_iter().map(|v| v as f32).collect()
            }
            Ok(DataType::Float16 | DataType::Bfloat16) => {
                let bf16 = tensor.data_type() == DataType::Bfloat16 as i32;
                let bits: Vec<u32> = tensor.int32_data.iter().map(|&v| v as u32).collect();
                let halves = self.values(tensor, count, 2, &bits, |b| {
                    u32::from(u16::from_le_bytes(b.try_into().expect("2 bytes")))
                })?;
                halves
                    .into_iter()
                    .map(|h| match bf16 {
                        true => half::bf16::from_bits(h as u16).to_f32(),
                        false => half::f16::from_bits(h as u16).to_f32(),
                    })
                    .collect()
            }
            _ => {
                return Err(self.error(format!(
                    "tensor `{name}` holds {}; weights must be float, double, float16 or \
                     bfloat16",
                    type_name(tensor.data_type())
                )));
            }
        };
        if let Some((i, v)) = crate::model::first_non_finite(&values) {
            return Err(self.error(format!(
                "tensor `{name}` holds {v} at element {i}; weights must be finite"
            )));
        }
        Ok((dims, values))
    }

    /// An integer tensor's values (shape constants, axes).
    pub fn ints(&self, tensor: &TensorProto) -> Result<Vec<i64>> {
        let (_, count) = self.dims(tensor)?;
        match DataType::try_from(tensor.data_type()) {
            Ok(DataType::Int64) => self.values(tensor, count, 8, &tensor.int64_data, |b| {
                i64::from_le_bytes(b.try_into().expect("8 bytes"))
            }),
            Ok(DataType::Int32) => {
                let values = self.values(tensor, count, 4, &tensor.int32_data, |b| {
                    i32::from_le_bytes(b.try_into().expect("4 bytes"))
                })?;
                Ok(values.into_iter().map(i64::from).collect())
            }
            _ => Err(self.error(format!(
                "tensor `{}` holds {}; expected int64 or int32 values",
                tensor.name(),
                type_name(tensor.data_type())
            ))),
        }
    }

    /// The claimed shape, checked: no negative dimension, no overflowing count.
    fn dims(&self, tensor: &TensorProto) -> Result<(Vec<usize>, usize)> {
        let dims = tensor
            .dims
            .iter()
            .map(|&d| usize::try_from(d).ok())
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| {
                self.error(format!(
                    "tensor `{}` has a negative dimension in {:?}",
                    tensor.name(),
                    tensor.dims
                ))
            })?;
        let count = element_count(&dims).ok_or_else(|| {
            self.error(format!(
                "tensor `{}` claims dimensions {:?}, more elements than can be counted",
                tensor.name(),
                tensor.dims
            ))
        })?;
        Ok((dims, count))
    }

    /// `count` values from the typed field `typed`, or from the raw (or external) bytes
    /// decoded `size` bytes at a time. The data must hold exactly `count` values: the length
    /// is compared before any buffer is sized by the claimed shape.
    fn values<T, U: Copy>(
        &self,
        tensor: &TensorProto,
        count: usize,
        size: usize,
        typed: &[U],
        decode: impl Fn(&[u8]) -> T,
    ) -> Result<Vec<T>>
    where
        T: Copy + From<U>,
    {
        let mismatch = |held: String| {
            self.error(format!(
                "tensor `{}` claims dimensions {:?} ({count} values) but holds {held}",
                tensor.name(),
                tensor.dims
            ))
        };
        let external = tensor.data_location == Some(DataLocation::External as i32);
        let raw = match (external, tensor.raw_data.as_deref()) {
            (true, _) => Some(self.external_bytes(tensor, count.checked_mul(size))?),
            (false, Some(raw)) => Some(raw.to_vec()),
            (false, None) => None,
        };
        match raw {
            Some(raw) => {
                if Some(raw.len()) != count.checked_mul(size) {
                    return Err(mismatch(format!("{} bytes of data", raw.len())));
                }
                Ok(raw.chunks_exact(size).map(decode).collect())
            }
            None if typed.len() == count => Ok(typed.iter().map(|&v| T::from(v)).collect()),
            None => Err(mismatch(format!("{} values", typed.len()))),
        }
    }

    /// The bytes an external-data tensor points at: a file inside the model's folder (no
    /// absolute path, no `..`, no link leading out), `length` bytes from `offset`, which must
    /// be the `expected` size of the tensor.
    fn external_bytes(&self, tensor: &TensorProto, expected: Option<usize>) -> Result<Vec<u8>> {
        let name = tensor.name();
        let field = |key: &str| {
            tensor
                .external_data
                .iter()
                .find(|e| e.key() == key)
                .map(|e| e.value().to_string())
        };
        let location = field("location").ok_or_else(|| {
            self.error(format!(
                "tensor `{name}` has external data without a location"
            ))
        })?;
        let resolved = self.inside_folder(name, &location)?;
        let number = |key: &str| -> Result<Option<u64>> {
            field(key)
                .map(|v| {
                    v.parse::<u64>().map_err(|_| {
                        self.error(format!("tensor `{name}`: external data {key} `{v}`"))
                    })
                })
                .transpose()
        };
        let offset = number("offset")?.unwrap_or(0);
        let mut file =
            open_regular(&resolved).map_err(|e| Error::io(&resolved, "cannot read", e))?;
        let file_len = file
            .metadata()
            .map_err(|e| Error::io(&resolved, "cannot read", e))?
            .len();
        let length = number("length")?.unwrap_or(file_len.saturating_sub(offset));
        let fits = offset
            .checked_add(length)
            .is_some_and(|end| end <= file_len);
        if !fits || expected.map(|e| e as u64) != Some(length) {
            return Err(self.error(format!(
                "tensor `{name}`'s external data ({length} bytes at offset {offset} of \
                 `{location}`, a {file_len}-byte file) does not hold its {} bytes",
                expected.map_or("uncountable".to_string(), |e| e.to_string())
            )));
        }
        crate::io::reserve_read(&resolved, length, 1)?;
        let mut bytes = vec![0u8; length as usize];
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|e| Error::io(&resolved, "cannot read", e))?;
        Ok(bytes)
    }

    /// The file an external-data `location` names, when it is inside the model's folder
    /// (a relative path of plain names that no link leads out of).
    fn inside_folder(&self, name: &str, location: &str) -> Result<PathBuf> {
        let relative = Path::new(location);
        if !relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(self.error(format!(
                "tensor `{name}`'s external data `{location}` is not a plain path inside the \
                 model's folder; only such paths are read"
            )));
        }
        let folder = match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let folder = folder
            .canonicalize()
            .map_err(|e| Error::io(folder, "cannot read", e))?;
        let file_path = folder.join(relative);
        let resolved = file_path
            .canonicalize()
            .map_err(|e| Error::io(&file_path, "cannot read external data of", e))?;
        if !resolved.starts_with(&folder) {
            return Err(self.error(format!(
                "tensor `{name}`'s external data `{location}` leads outside the model's folder \
                 (to {}); only files inside it are read",
                resolved.display()
            )));
        }
        Ok(resolved)
    }
}

fn bad(path: &Path, why: String) -> Error {
    Error::BadWeights {
        path: path.display().to_string(),
        why,
    }
}

fn type_name(data_type: i32) -> String {
    DataType::try_from(data_type).map_or_else(
        |_| format!("data type {data_type}"),
        |t| t.as_str_name().to_lowercase(),
    )
}
