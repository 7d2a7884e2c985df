//! Storage references: the persistent ids through which tensors name their storages.

use super::pickle::{self, Value};
use super::source::Extent;
use super::{DType, PthError};

/// A storage reference decoded from a persistent id:
/// `('storage', <T>Storage, key, location, numel[, view_metadata])`.
pub(super) struct StorageRef {
    pub(super) key: String,
    pub(super) dtype: DType,
    pub(super) numel: u64,
    /// Legacy storage views: `(view_key, offset, size)` in elements of the root.
    pub(super) view: Option<(u64, u64)>,
}

impl StorageRef {
    pub(super) fn parse(pid: &Value) -> Result<Self, String> {
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
    pub(super) fn window(&self, extent: Extent) -> Result<(u64, u64), PthError> {
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

pub(super) fn parse_view(view: &Value) -> Result<Option<(u64, u64)>, String> {
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

pub(super) fn storage_key(key: &Value) -> Option<String> {
    match key {
        Value::Int(i) => Some(i.to_string()),
        other => other.as_str().map(str::to_owned),
    }
}

pub(super) fn non_negative(value: &Value) -> Option<u64> {
    value.as_int().and_then(|i| u64::try_from(i).ok())
}
