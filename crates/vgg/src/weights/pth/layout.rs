//! Strided views checked against their storages, and decoding of stored dtypes.

use half::{bf16, f16};

use super::{DType, PthError, TensorEntry};

/// Most dimensions a tensor may have (torch itself caps at 64).
pub(super) const MAX_DIMS: usize = 64;
/// How many elements zero-stride (expanded) views may have beyond their
/// storages' sizes, per view and over the whole checkpoint: such views are
/// legal but their element count is not backed by file bytes, so a tiny file
/// could otherwise make every read produce gigabytes.
pub(super) const MAX_EXPANDED_ELEMENTS: u64 = 1 << 24;
/// Bytes per read when converting a contiguous tensor of another dtype.
pub(super) const CHUNK_BYTES: usize = 1 << 20;

/// A validated strided view.
pub(super) struct Layout {
    pub(super) numel: usize,
    /// Largest element index the view touches (meaningless when empty).
    pub(super) last: u64,
    pub(super) contiguous: bool,
}

impl Layout {
    /// Checks that the view lies within `limit` elements and that its element
    /// count is backed by the file (or small).
    pub(super) fn check(
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
pub(super) fn is_contiguous(shape: &[usize], strides: &[usize]) -> bool {
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
pub(super) type Decoder<T> = fn(&[u8], &mut Vec<T>);

pub(super) fn f32_decoder(dtype: DType) -> Option<Decoder<f32>> {
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

pub(super) fn i64_decoder(dtype: DType) -> Option<Decoder<i64>> {
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
pub(super) fn le8(chunk: &[u8]) -> [u8; 8] {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(chunk);
    bytes
}

/// Walks a strided view in row-major order over `span`, the bytes from its
/// first element to its last.
pub(super) fn gather<T>(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguity_ignores_unit_dimensions() {
        assert!(is_contiguous(&[2, 3], &[3, 1]));
        assert!(is_contiguous(&[1, 3], &[99, 1]));
        assert!(is_contiguous(&[], &[]));
        assert!(!is_contiguous(&[4, 3], &[1, 4]));
    }
}
