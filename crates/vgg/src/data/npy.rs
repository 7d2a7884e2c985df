//! Reading NumPy `.npy` arrays (format versions 1–3) as f32, with every claim of the header
//! checked before anything is allocated: the element count must not overflow, the data
//! must be exactly as long as the shape says, and the array must fit the memory budget.
//! (candle's reader allocates what the header claims first, so a 12 KB file claiming
//! 100000×3×224×224 aborted the process.)

use std::io::Read;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};
use crate::limits::{array_bytes, element_count, reserve};

const MAGIC: &[u8] = b"\x93NUMPY";
/// Headers are a few hundred bytes; version 2's four-byte length could claim 4 GiB.
const MAX_HEADER: usize = 1 << 20;

/// The element types we read, all little-endian (or single-byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Element {
    F16,
    F32,
    F64,
}

impl Element {
    fn parse(descr: &str) -> std::result::Result<Self, String> {
        let accepted = "float16, float32 or float64 (descr '<f2', '<f4', '<f8')";
        match descr {
            "<f2" => Ok(Element::F16),
            "<f4" => Ok(Element::F32),
            "<f8" => Ok(Element::F64),
            ">f2" | ">f4" | ">f8" => Err(format!(
                "the array is big-endian (descr '{descr}'); save it little-endian, e.g. \
                 np.save(path, a.astype('<f4'))"
            )),
            "|b1" => Err(format!(
                "the array is bool (descr '|b1'); expected {accepted}"
            )),
            other => Err(format!(
                "unsupported dtype (descr '{other}'); expected {accepted}"
            )),
        }
    }

    fn size(self) -> usize {
        match self {
            Element::F16 => 2,
            Element::F32 => 4,
            Element::F64 => 8,
        }
    }
}

/// Reads the `.npy` file at `path` as an f32 tensor (f16 and f64 are converted).
pub fn read_f32(path: &Path) -> Result<Tensor> {
    let bad = |why: String| Error::BadWeights {
        path: path.display().to_string(),
        why: format!("not a readable .npy array: {why}"),
    };
    let file = crate::io::open_regular(path).map_err(|e| Error::io(path, "cannot read", e))?;
    let length = file
        .metadata()
        .map_err(|e| Error::io(path, "cannot read", e))?
        .len();
    let (shape, values) = decode(std::io::BufReader::new(file), length, &|| {
        path.display().to_string()
    })
    .map_err(|e| match e {
        Decode::Invalid(why) => bad(why),
        Decode::Io(e) => Error::io(path, "cannot read", e),
        Decode::Refused(e) => e,
    })?;
    Ok(Tensor::from_vec(values, shape, &Device::Cpu)?)
}

/// Decodes a whole `.npy` file held in memory (the fuzz target's entry).
pub fn parse(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f32>)> {
    decode(bytes, bytes.len() as u64, &|| "the array".into()).map_err(|e| match e {
        Decode::Invalid(why) => Error::BadArgument(format!("not a readable .npy array: {why}")),
        Decode::Io(e) => Error::BadArgument(format!("not a readable .npy array: {e}")),
        Decode::Refused(e) => e,
    })
}

enum Decode {
    Invalid(String),
    Io(std::io::Error),
    Refused(Error),
}

impl From<std::io::Error> for Decode {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Decode::Invalid("the file ends inside its header".into())
        } else {
            Decode::Io(e)
        }
    }
}

/// Reads a `.npy` stream of `length` bytes in all; `name` names it in a refusal.
fn decode(
    mut reader: impl Read,
    length: u64,
    name: &dyn Fn() -> String,
) -> std::result::Result<(Vec<usize>, Vec<f32>), Decode> {
    let mut prefix = [0u8; 8];
    reader.read_exact(&mut prefix)?;
    if &prefix[..6] != MAGIC {
        return Err(Decode::Invalid("no \\x93NUMPY magic at the start".into()));
    }
    let header_len = match prefix[6] {
        1 => {
            let mut len = [0u8; 2];
            reader.read_exact(&mut len)?;
            u16::from_le_bytes(len) as usize
        }
        2 | 3 => {
            let mut len = [0u8; 4];
            reader.read_exact(&mut len)?;
            u32::from_le_bytes(len) as usize
        }
        v => {
            return Err(Decode::Invalid(format!(
                "format version {v}; expected 1, 2 or 3"
            )));
        }
    };
    if header_len > MAX_HEADER {
        return Err(Decode::Invalid(format!(
            "a {header_len}-byte header (at most {MAX_HEADER} accepted)"
        )));
    }
    let mut header = vec![0u8; header_len];
    reader.read_exact(&mut header)?;
    let header =
        String::from_utf8(header).map_err(|_| Decode::Invalid("the header is not text".into()))?;
    let (element, shape) = parse_header(&header).map_err(Decode::Invalid)?;

    let count = element_count(&shape);
    let need = array_bytes(&shape, element.size());
    let offset = (8 + if prefix[6] == 1 { 2 } else { 4 } + header_len) as u64;
    let data = length.saturating_sub(offset);
    let described = || format!("shape {shape:?} of {}-byte values", element.size());
    match need {
        Some(need) if need == data => {}
        Some(need) => {
            return Err(Decode::Invalid(format!(
                "its header claims {} ({need} bytes) but the file holds {data} bytes of data",
                described()
            )));
        }
        None => return Err(Decode::Invalid(format!("{} overflows", described()))),
    }
    let count = count.ok_or_else(|| Decode::Invalid(format!("{} overflows", described())))?;
    // The file's bytes and the f32 values decoded from them.
    reserve(array_bytes(&shape, 4 + element.size()), || {
        format!("the array {} ({})", name(), described())
    })
    .map_err(Decode::Refused)?;
    let mut bytes = vec![0u8; count * element.size()];
    reader.read_exact(&mut bytes)?;
    Ok((shape, to_f32(element, &bytes)))
}

fn to_f32(element: Element, bytes: &[u8]) -> Vec<f32> {
    match element {
        Element::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Element::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Element::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
    }
}

/// Parses the header's Python dict literal, e.g.
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 224, 224), }`.
fn parse_header(header: &str) -> std::result::Result<(Element, Vec<usize>), String> {
    let body = header
        .trim()
        .strip_prefix('{')
        .and_then(|h| h.strip_suffix('}'))
        .ok_or("the header is not a dict")?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    for item in split_top_level(body) {
        let (key, value) = item.split_once(':').ok_or("a header entry without `:`")?;
        let value = value.trim();
        match key.trim().trim_matches(|c| c == '\'' || c == '"') {
            "descr" => descr = Some(value.trim_matches(|c| c == '\'' || c == '"').to_string()),
            "fortran_order" => fortran = Some(value == "True"),
            "shape" => shape = Some(parse_shape(value)?),
            other => return Err(format!("unknown header key `{other}`")),
        }
    }
    let element = Element::parse(&descr.ok_or("the header has no descr")?)?;
    if fortran.ok_or("the header has no fortran_order")? {
        return Err("the array is in Fortran order; save np.ascontiguousarray(a)".into());
    }
    Ok((element, shape.ok_or("the header has no shape")?))
}

/// Splits `a: 1, b: (2, 3), ` at the commas outside parentheses, dropping empty items.
fn split_top_level(body: &str) -> Vec<&str> {
    let (mut items, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in body.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&body[start..]);
    items.into_iter().filter(|s| !s.trim().is_empty()).collect()
}

fn parse_shape(value: &str) -> std::result::Result<Vec<usize>, String> {
    let inner = value
        .strip_prefix('(')
        .and_then(|v| v.strip_suffix(')'))
        .ok_or_else(|| format!("the shape `{value}` is not a tuple"))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            d.parse::<usize>()
                .map_err(|_| format!("the shape `{value}` holds `{d}`, not a size"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}\n");
        let mut bytes = MAGIC.to_vec();
        bytes.extend([1, 0]);
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header.as_bytes());
        bytes.extend(data);
        bytes
    }

    #[test]
    fn reads_f32_f64_and_f16() {
        let f32s: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(
            parse(&npy("<f4", "(2,)", &f32s)).unwrap(),
            (vec![2], vec![1.5, -2.0])
        );
        let f64s: Vec<u8> = [0.25f64].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(parse(&npy("<f8", "(1, 1)", &f64s)).unwrap().1, vec![0.25]);
        let f16s = half::f16::from_f32(3.0).to_le_bytes();
        assert_eq!(parse(&npy("<f2", "(1,)", &f16s)).unwrap().1, vec![3.0]);
        assert_eq!(
            parse(&npy("<f4", "()", &f32s[..4])).unwrap().0,
            Vec::<usize>::new()
        );
    }

    #[test]
    fn claims_are_checked_before_allocating() {
        let small = vec![0u8; 12288];
        for (shape, needle) in [
            ("(100000, 3, 224, 224)", "but the file holds 12288 bytes"),
            ("(4611686018427387904, 3, 32, 32)", "overflows"),
            ("(1, 3, 4294967296, 4294967296)", "overflows"),
            ("(1, 3, 32, 31)", "but the file holds"),
        ] {
            let err = parse(&npy("<f4", shape, &small)).unwrap_err().to_string();
            assert!(err.contains(needle), "{shape}: {err}");
        }
    }

    #[test]
    fn unsupported_arrays_say_why() {
        let data = vec![0u8; 16];
        for (descr, needle) in [
            (">f4", "big-endian"),
            ("|b1", "bool"),
            ("<i8", "unsupported dtype"),
        ] {
            let err = parse(&npy(descr, "(2,)", &data)).unwrap_err().to_string();
            assert!(err.contains(needle), "{descr}: {err}");
        }
        assert!(parse(b"\x93NUMPY\x01").is_err());
        assert!(parse(b"PK\x03\x04").is_err());
    }
}
