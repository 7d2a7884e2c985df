//! Just enough of the zip format to find the entries of a `torch.save`
//! archive in place.
//!
//! torch writes every entry STORED (uncompressed) and aligns tensor data, so a
//! tensor can be read straight from the file once its data offset is known.
//! That needs only the central directory and the local headers; a general zip
//! library would add decompressors we must refuse anyway. Zip64 records are
//! understood because torch writes them for archives over 4 GiB.
//!
//! [`parse_zip`] finds the state_dict pickle and the storages in such an archive; the
//! signatures are shared with the writer ([`super::write`]).

use std::collections::HashMap;

use super::pickle;
use super::reader::Parsed;
use super::source::{Extent, Source};
use super::{PthError, PthFormat};

pub(super) fn parse_zip(source: &Source) -> Result<Parsed, PthError> {
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
    if len > MAX_PICKLE_BYTES {
        return Err(PthError::LimitExceeded {
            what: "data.pkl size",
            limit: MAX_PICKLE_BYTES,
        });
    }
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

pub(super) const EOCD_SIG: [u8; 4] = *b"PK\x05\x06";
const EOCD64_LOCATOR_SIG: [u8; 4] = *b"PK\x06\x07";
const EOCD64_SIG: [u8; 4] = *b"PK\x06\x06";
pub(super) const CENTRAL_SIG: [u8; 4] = *b"PK\x01\x02";
pub(super) const LOCAL_SIG: [u8; 4] = *b"PK\x03\x04";
const EOCD_LEN: usize = 22;
const EOCD64_LEN: usize = 56;
const LOCATOR_LEN: u64 = 20;
const CENTRAL_LEN: usize = 46;
const LOCAL_LEN: usize = 30;
const MAX_COMMENT: u64 = 0xffff;
/// Largest central directory accepted (about a million entries).
const MAX_CENTRAL_DIRECTORY: u64 = 256 << 20;
const ZIP64_EXTRA_ID: u16 = 0x0001;

/// One central-directory record.
pub(super) struct ZipEntry {
    pub(super) name: String,
    method: u16,
    flags: u16,
    compressed_size: u64,
    size: u64,
    header_offset: u64,
}

/// The archive's entries, by name and in directory order.
pub(super) struct ZipDirectory {
    entries: Vec<ZipEntry>,
    by_name: HashMap<String, usize>,
}

/// Largest `data.pkl` read: a state_dict's pickle holds names and shapes only (torchvision's
/// vgg16 has 13 KB; a training checkpoint with optimiser state a few hundred KB).
const MAX_PICKLE_BYTES: u64 = 64 << 20;

impl ZipDirectory {
    /// Reads the central directory, checking every claimed size and offset
    /// against the source's length.
    pub(super) fn read(source: &Source) -> Result<Self, PthError> {
        let (offset, size, count) = find_central_directory(source)?;
        let bytes = source.read_vec(offset, size, "zip central directory")?;
        let mut entries = Vec::new();
        let mut pos = 0usize;
        for _ in 0..count {
            let (entry, next) = parse_central_record(&bytes, pos)?;
            entries.push(entry);
            pos = next;
        }
        let by_name = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        Ok(ZipDirectory { entries, by_name })
    }

    pub(super) fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    pub(super) fn entries(&self) -> &[ZipEntry] {
        &self.entries
    }

    pub(super) fn get(&self, name: &str) -> Option<&ZipEntry> {
        self.by_name.get(name).and_then(|&i| self.entries.get(i))
    }

    /// Absolute offset and length of an entry's data, which must be stored
    /// uncompressed and unencrypted and lie within the source.
    pub(super) fn data_range(
        &self,
        source: &Source,
        entry: &ZipEntry,
    ) -> Result<(u64, u64), PthError> {
        if entry.method != 0 {
            return Err(PthError::CompressedEntry {
                name: entry.name.clone(),
                method: entry.method,
            });
        }
        if entry.flags & 1 != 0 || entry.compressed_size != entry.size {
            return Err(PthError::Zip(format!(
                "entry {} is encrypted or its sizes disagree",
                entry.name
            )));
        }
        let mut header = [0u8; LOCAL_LEN];
        source.read_at(entry.header_offset, &mut header, "zip local header")?;
        if header[..4] != LOCAL_SIG {
            return Err(PthError::Zip(format!(
                "entry {} has no local header",
                entry.name
            )));
        }
        let name_len = u64::from(u16_at(&header, 26).unwrap_or(0));
        let extra_len = u64::from(u16_at(&header, 28).unwrap_or(0));
        let start = entry.header_offset + LOCAL_LEN as u64 + name_len + extra_len;
        match start.checked_add(entry.size) {
            Some(end) if end <= source.len() => Ok((start, entry.size)),
            _ => Err(PthError::Truncated {
                what: "zip entry data",
                offset: start,
                needed: entry.size,
                available: source.len().saturating_sub(start),
            }),
        }
    }
}

/// Offset, size and entry count of the central directory, from the end of
/// central directory record (and its zip64 counterpart when fields overflow).
fn find_central_directory(source: &Source) -> Result<(u64, u64, u64), PthError> {
    let tail_len = source.len().min(EOCD_LEN as u64 + MAX_COMMENT);
    let tail_start = source.len() - tail_len;
    let tail = source.read_vec(tail_start, tail_len, "zip end of central directory")?;
    let at = tail
        .windows(4)
        .rposition(|w| w == EOCD_SIG)
        .filter(|&at| at + EOCD_LEN <= tail.len())
        .ok_or_else(|| {
            PthError::Zip("no end of central directory record (truncated file?)".into())
        })?;
    let field16 = |o| u16_at(&tail, at + o).map(u64::from).unwrap_or(0);
    let field32 = |o| u32_at(&tail, at + o).map(u64::from).unwrap_or(0);
    if field16(4) != 0 || field16(6) != 0 {
        return Err(PthError::Zip(
            "multi-disk archives are not supported".into(),
        ));
    }
    let (count, size, offset) = (field16(10), field32(12), field32(16));
    if count == 0xffff || size == 0xffff_ffff || offset == 0xffff_ffff {
        return zip64_central_directory(source, tail_start + at as u64);
    }
    check_central_directory(source, offset, size, count)
}

fn zip64_central_directory(source: &Source, eocd: u64) -> Result<(u64, u64, u64), PthError> {
    let missing = || PthError::Zip("zip64 end of central directory locator missing".into());
    let mut locator = [0u8; LOCATOR_LEN as usize];
    let locator_at = eocd.checked_sub(LOCATOR_LEN).ok_or_else(missing)?;
    source.read_at(locator_at, &mut locator, "zip64 locator")?;
    if locator[..4] != EOCD64_LOCATOR_SIG {
        return Err(missing());
    }
    let record_at = u64_at(&locator, 8).ok_or_else(missing)?;
    let mut record = [0u8; EOCD64_LEN];
    source.read_at(record_at, &mut record, "zip64 end of central directory")?;
    if record[..4] != EOCD64_SIG {
        return Err(PthError::Zip(
            "zip64 end of central directory record missing".into(),
        ));
    }
    let field = |o| u64_at(&record, o).ok_or_else(missing);
    let (count, size, offset) = (field(32)?, field(40)?, field(48)?);
    check_central_directory(source, offset, size, count)
}

fn check_central_directory(
    source: &Source,
    offset: u64,
    size: u64,
    count: u64,
) -> Result<(u64, u64, u64), PthError> {
    let fits = offset
        .checked_add(size)
        .is_some_and(|end| end <= source.len());
    if !fits || size > MAX_CENTRAL_DIRECTORY {
        return Err(PthError::Zip(format!(
            "central directory of {size} bytes at offset {offset} does not fit a {}-byte file",
            source.len()
        )));
    }
    // Each record takes at least 46 bytes, so the count is checked against
    // the directory size before anything is sized by it.
    if count > size / CENTRAL_LEN as u64 {
        return Err(PthError::Zip(format!(
            "central directory claims {count} entries in {size} bytes"
        )));
    }
    Ok((offset, size, count))
}

/// Parses the record at `pos`, returning it and the offset of the next one.
fn parse_central_record(dir: &[u8], pos: usize) -> Result<(ZipEntry, usize), PthError> {
    let short = || PthError::Zip("central directory record is truncated".into());
    let record = dir.get(pos..).ok_or_else(short)?;
    if record.get(..4) != Some(&CENTRAL_SIG[..]) {
        return Err(PthError::Zip(format!(
            "bad central directory record at {pos}"
        )));
    }
    let field16 = |o| u16_at(record, o).ok_or_else(short);
    let field32 = |o| u32_at(record, o).map(u64::from).ok_or_else(short);
    let (name_len, extra_len, comment_len) = (
        usize::from(field16(28)?),
        usize::from(field16(30)?),
        usize::from(field16(32)?),
    );
    let name_end = CENTRAL_LEN + name_len;
    let extra_end = name_end + extra_len;
    let name = record.get(CENTRAL_LEN..name_end).ok_or_else(short)?;
    let extra = record.get(name_end..extra_end).ok_or_else(short)?;
    let mut entry = ZipEntry {
        name: String::from_utf8_lossy(name).into_owned(),
        method: field16(10)?,
        flags: field16(8)?,
        compressed_size: field32(20)?,
        size: field32(24)?,
        header_offset: field32(42)?,
    };
    apply_zip64_extra(&mut entry, extra)?;
    Ok((entry, pos + extra_end + comment_len))
}

/// Replaces saturated 32-bit fields with their zip64 extra-field values,
/// which appear in the fixed order size, compressed size, header offset.
fn apply_zip64_extra(entry: &mut ZipEntry, mut extra: &[u8]) -> Result<(), PthError> {
    while let (Some(id), Some(len)) = (u16_at(extra, 0), u16_at(extra, 2)) {
        let end = 4 + usize::from(len);
        let data = extra.get(4..end).ok_or_else(|| {
            PthError::Zip(format!("entry {} has a truncated extra field", entry.name))
        })?;
        if id == ZIP64_EXTRA_ID {
            let mut values = data.chunks_exact(8).map(|c| u64_at(c, 0).unwrap_or(0));
            for field in [
                &mut entry.size,
                &mut entry.compressed_size,
                &mut entry.header_offset,
            ] {
                if *field == 0xffff_ffff {
                    *field = values.next().ok_or_else(|| {
                        PthError::Zip(format!("entry {} lacks its zip64 sizes", entry.name))
                    })?;
                }
            }
        }
        extra = extra.get(end..).unwrap_or_default();
    }
    Ok(())
}

fn array_at<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    array_at(bytes, at).map(u16::from_le_bytes)
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    array_at(bytes, at).map(u32::from_le_bytes)
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    array_at(bytes, at).map(u64::from_le_bytes)
}
