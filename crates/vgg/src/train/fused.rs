//! In-place element-wise updates of CPU f32 tensors, for optimiser steps. Written as tensor
//! expressions, one SGD step over vgg16's 138 M parameters allocates and fills five
//! temporaries per parameter (seconds per step); done in place it is one parallel pass.

use std::cell::RefCell;

use candle_core::{CpuStorage, InplaceOp1, InplaceOp3, Layout, Tensor, bail};
use rayon::prelude::*;

use crate::error::Result;
use crate::ops::{contiguous_f32, cpu_f32};

/// Elements per parallel task: large enough that scheduling is negligible.
const CHUNK: usize = 1 << 16;

/// Whether `t` can be updated by the fused kernels (CPU, f32). Other devices keep the
/// tensor expressions, which run there as the device's own kernels.
pub(crate) fn supports(t: &Tensor) -> bool {
    cpu_f32(&[t])
}

/// `update(&mut dst[i], a[i], b[i])` for every element, in place on `dst`.
pub(crate) fn update3<F>(dst: &Tensor, a: &Tensor, b: &Tensor, update: F) -> Result<()>
where
    F: Fn(&mut f32, f32, f32) + Sync,
{
    let (a, b) = (a.contiguous()?, b.contiguous()?);
    dst.inplace_op3(&a, &b, &Zip(update))?;
    Ok(())
}

/// `update(&mut dst[i], a[i])` for every element, in place on `dst`.
pub(crate) fn update2<F>(dst: &Tensor, a: &Tensor, update: F) -> Result<()>
where
    F: Fn(&mut f32, f32) + Sync,
{
    update3(dst, a, a, |d, x, _| update(d, x))
}

/// The in-place operation behind [`update3`].
struct Zip<F>(F);

impl<F: Fn(&mut f32, f32, f32) + Sync> InplaceOp3 for Zip<F> {
    fn name(&self) -> &'static str {
        "fused-update"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        a: &CpuStorage,
        a_l: &Layout,
        b: &CpuStorage,
        b_l: &Layout,
    ) -> candle_core::Result<()> {
        let (a, b) = (contiguous_f32(a, a_l)?, contiguous_f32(b, b_l)?);
        let (CpuStorage::F32(values), Some((start, end))) = (dst, dst_l.contiguous_offsets())
        else {
            bail!("fused optimiser update needs a contiguous f32 destination")
        };
        let dst = &mut values[start..end];
        if dst.len() != a.len() || dst.len() != b.len() {
            bail!(
                "fused optimiser update: sizes {} {} {}",
                dst.len(),
                a.len(),
                b.len()
            )
        }
        dst.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
            .for_each(|(d, (a, b))| {
                for ((d, &a), &b) in d.iter_mut().zip(a).zip(b) {
                    (self.0)(d, a, b);
                }
            });
        Ok(())
    }
}

/// Runs `write` on the elements of the contiguous CPU f32 tensor `t`, in place: the
/// training plan writes its gradients into the same tensors every step.
pub(crate) fn overwrite<R>(t: &Tensor, write: impl FnOnce(&mut [f32]) -> R) -> Result<R> {
    let op = Overwrite {
        write: RefCell::new(Some(write)),
        result: RefCell::new(None),
    };
    t.inplace_op1(&op)?;
    op.result
        .into_inner()
        .ok_or_else(|| crate::error::Error::BadArgument("overwrite: the write did not run".into()))
}

/// The in-place operation behind [`overwrite`]; the closure runs once.
struct Overwrite<F, R> {
    write: RefCell<Option<F>>,
    result: RefCell<Option<R>>,
}

impl<F: FnOnce(&mut [f32]) -> R, R> InplaceOp1 for Overwrite<F, R> {
    fn name(&self) -> &'static str {
        "overwrite"
    }

    fn cpu_fwd(&self, dst: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let (CpuStorage::F32(values), Some((start, end))) = (dst, layout.contiguous_offsets())
        else {
            bail!("overwrite needs a contiguous f32 tensor")
        };
        if let Some(write) = self.write.borrow_mut().take() {
            *self.result.borrow_mut() = Some(write(&mut values[start..end]));
        }
        Ok(())
    }
}
