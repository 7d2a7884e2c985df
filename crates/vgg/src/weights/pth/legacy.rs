//! The legacy container (before torch 1.6): five pickles, then the raw storages.

use std::collections::HashMap;
use std::io::BufReader;

use super::pickle::{self, Pickle, Value};
use super::reader::Parsed;
use super::source::{Extent, Source, SourceReader};
use super::storage::{StorageRef, storage_key};
use super::{DType, PthError, PthFormat};

/// The legacy format's magic number 0x1950a86a20f9469cfc6c, as the
/// little-endian bytes pickle's `LONG1` stores.
pub(super) const LEGACY_MAGIC: [u8; 10] =
    [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
pub(super) const LEGACY_PROTOCOL_VERSION: i64 = 1001;

pub(super) fn load_at(source: &Source, offset: u64) -> Result<Pickle, PthError> {
    let reader = BufReader::new(SourceReader {
        source,
        pos: offset,
    });
    pickle::load(reader, offset, source.len())
}

pub(super) fn parse_legacy(source: &Source) -> Result<Parsed, PthError> {
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
pub(super) fn legacy_extents(
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
