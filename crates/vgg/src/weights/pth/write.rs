//! Writing a state_dict as the zip `.pth` that `torch.save` has produced since torch 1.6, so
//! torchvision loads our weights with plain `torch.load` (also with `weights_only=True`):
//! `archive/data.pkl` is a protocol-2 pickle of an `OrderedDict` whose values are
//! `torch._utils._rebuild_tensor_v2` calls on persistent storages, `archive/data/<i>` holds
//! tensor `i`'s little-endian bytes, plus `archive/byteorder` and `archive/version`. Entries
//! are stored uncompressed with their data 64-byte aligned, as torch writes them.

use std::io::Write;
use std::path::Path;

use candle_core::{DType, Tensor};

use crate::error::{Error, Result};
use crate::io::write_atomically;

use super::pickle::opcodes as op;
use super::zip::{CENTRAL_SIG, EOCD_SIG, LOCAL_SIG};

/// Writes `tensors` (in order) to `path` as a zip `.pth`.
pub fn write(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let mut entries = vec![("archive/data.pkl".to_string(), pickle(tensors)?)];
    for (i, (_, tensor)) in tensors.iter().enumerate() {
        entries.push((format!("archive/data/{i}"), raw_bytes(tensor)?));
    }
    entries.push(("archive/byteorder".into(), b"little".to_vec()));
    entries.push(("archive/version".into(), b"3\n".to_vec()));
    let archive = zip(&entries).map_err(|why| Error::cannot_encode(path, why))?;
    write_atomically(path, |tmp| {
        std::fs::write(tmp, &archive).map_err(|e| Error::io(tmp, "cannot write", e))
    })
}

/// torch's storage class for a dtype.
fn storage_class(dtype: DType) -> Result<&'static str> {
    Ok(match dtype {
        DType::F32 => "FloatStorage",
        DType::F64 => "DoubleStorage",
        DType::F16 => "HalfStorage",
        DType::BF16 => "BFloat16Storage",
        DType::I64 => "LongStorage",
        DType::U8 => "ByteStorage",
        other => {
            return Err(Error::BadArgument(format!(
                "cannot write a {other:?} tensor to .pth (f32, f64, f16, bf16, i64 and u8 are supported)"
            )));
        }
    })
}

/// The tensor's elements in row-major order as little-endian bytes.
fn raw_bytes(tensor: &Tensor) -> Result<Vec<u8>> {
    let flat = tensor.flatten_all()?;
    Ok(match tensor.dtype() {
        DType::F32 => flat
            .to_vec1::<f32>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::F64 => flat
            .to_vec1::<f64>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::F16 => flat
            .to_vec1::<half::f16>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::BF16 => flat
            .to_vec1::<half::bf16>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::I64 => flat
            .to_vec1::<i64>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::U8 => flat.to_vec1::<u8>()?,
        other => storage_class(other).map(|_| Vec::new())?,
    })
}

/// `OrderedDict([(key, _rebuild_tensor_v2(storage_i, 0, size, stride, False, OrderedDict())), …])`.
fn pickle(tensors: &[(String, Tensor)]) -> Result<Vec<u8>> {
    let mut p = vec![op::PROTO, 2];
    global(&mut p, "collections", "OrderedDict");
    p.extend([op::EMPTY_TUPLE, op::REDUCE, op::MARK]);
    for (i, (key, tensor)) in tensors.iter().enumerate() {
        string(&mut p, key);
        global(&mut p, "torch._utils", "_rebuild_tensor_v2");
        p.push(op::MARK);
        // The storage, as a persistent id: ('storage', class, key, location, numel).
        p.push(op::MARK);
        string(&mut p, "storage");
        global(&mut p, "torch", storage_class(tensor.dtype())?);
        string(&mut p, &i.to_string());
        string(&mut p, "cpu");
        int(&mut p, tensor.elem_count());
        p.extend([op::TUPLE, op::BINPERSID]);
        int(&mut p, 0); // storage offset
        ints_tuple(&mut p, tensor.dims());
        ints_tuple(&mut p, &contiguous_strides(tensor.dims()));
        p.push(op::NEWFALSE); // requires_grad
        global(&mut p, "collections", "OrderedDict");
        p.extend([op::EMPTY_TUPLE, op::REDUCE, op::TUPLE, op::REDUCE]);
    }
    p.extend([op::SETITEMS, op::STOP]);
    Ok(p)
}

fn global(p: &mut Vec<u8>, module: &str, name: &str) {
    p.push(op::GLOBAL);
    p.extend(format!("{module}\n{name}\n").bytes());
}

fn string(p: &mut Vec<u8>, s: &str) {
    p.push(op::BINUNICODE);
    p.extend((s.len() as u32).to_le_bytes());
    p.extend(s.bytes());
}

fn int(p: &mut Vec<u8>, value: usize) {
    match i32::try_from(value) {
        Ok(small) => {
            p.push(op::BININT);
            p.extend(small.to_le_bytes());
        }
        Err(_) => {
            p.extend([op::LONG1, 8]);
            p.extend((value as i64).to_le_bytes());
        }
    }
}

fn ints_tuple(p: &mut Vec<u8>, values: &[usize]) {
    if values.is_empty() {
        p.push(op::EMPTY_TUPLE);
        return;
    }
    p.push(op::MARK);
    values.iter().for_each(|&v| int(p, v));
    p.push(op::TUPLE);
}

fn contiguous_strides(dims: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * dims[i + 1];
    }
    strides
}

/// Alignment of entry data, as torch's writer uses.
const ALIGNMENT: usize = 64;

/// A zip archive of `entries`, stored uncompressed, data aligned to [`ALIGNMENT`] bytes
/// through padding in each local header's extra field.
fn zip(entries: &[(String, Vec<u8>)]) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let (offset, size) = (u32_field(out.len())?, u32_field(data.len())?);
        let crc = crc32fast::hash(data);
        let unpadded = out.len() + 30 + name.len() + 4;
        let extra_len = 4 + (ALIGNMENT - unpadded % ALIGNMENT) % ALIGNMENT;
        let common = |b: &mut Vec<u8>| {
            b.extend(20u16.to_le_bytes()); // version needed
            b.extend([0u8; 8]); // flags, method (stored), time, date
            b.extend(crc.to_le_bytes());
            b.extend(size.to_le_bytes()); // compressed
            b.extend(size.to_le_bytes()); // uncompressed
            b.extend((name.len() as u16).to_le_bytes());
        };
        out.extend(LOCAL_SIG);
        common(&mut out);
        out.extend((extra_len as u16).to_le_bytes());
        out.extend(name.bytes());
        out.extend(b"FB");
        out.extend(((extra_len - 4) as u16).to_le_bytes());
        out.resize(out.len() + extra_len - 4, 0);
        out.write_all(data).map_err(|e| e.to_string())?;

        central.extend(CENTRAL_SIG);
        central.extend(20u16.to_le_bytes()); // version made by
        common(&mut central);
        central.extend([0u8; 12]); // extra, comment, disk, internal and external attributes
        central.extend(offset.to_le_bytes());
        central.extend(name.bytes());
    }
    let (directory_offset, directory_len) = (u32_field(out.len())?, u32_field(central.len())?);
    let count = u16::try_from(entries.len()).map_err(|_| "more than 65535 tensors".to_string())?;
    out.extend(central);
    out.extend(EOCD_SIG);
    out.extend([0u8; 4]); // disk numbers
    out.extend(count.to_le_bytes());
    out.extend(count.to_le_bytes());
    out.extend(directory_len.to_le_bytes());
    out.extend(directory_offset.to_le_bytes());
    out.extend([0u8; 2]); // comment length
    Ok(out)
}

fn u32_field(value: usize) -> std::result::Result<u32, String> {
    u32::try_from(value).map_err(|_| "archives over 4 GiB (zip64) are not supported".to_string())
}
