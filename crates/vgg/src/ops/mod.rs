//! The reference model's and training's kernels, as candle custom ops: 3×3 convolution, 2×2 max-pool,
//! batch norm, linear layers and ReLU, with backward passes that also run on our CPU
//! kernels.
//!
//! candle's own CPU backward is the bottleneck of training: the conv gradient
//! goes through a naive `conv_transpose2d`, the PyTorch-compatible max-pool
//! (argmax + gather) and batch norm are chains of strided broadcasts and
//! reductions, and a linear layer's weight gradient is added transposed. These
//! ops keep candle's autograd (they are `CustomOp`s) but compute forward and
//! backward with `gemm` calls and fused per-channel passes. On any device other
//! than the CPU, or any dtype other than f32, they fall back to candle's ops.

mod conv;
mod linear;
mod norm;
mod pool;
mod relu;
pub mod tensor_pool;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Tensor, bail};
use rayon::prelude::*;

use crate::engine::gemm::{Mat, matmul_on};

pub use conv::conv3x3;
pub(crate) use conv::with_scratch;
pub use linear::linear;
pub use norm::batch_norm_train;
pub use pool::max_pool2x2;
pub use relu::relu;

/// Whether `tensors` can take the custom CPU path.
pub(crate) fn cpu_f32(tensors: &[&Tensor]) -> bool {
    tensors
        .iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// Runs `read` on the elements of `x` as f32: in place for a contiguous f32 CPU tensor (the
/// network's input, every forward pass), from a copy otherwise.
pub fn with_f32_values<R>(x: &Tensor, read: impl FnOnce(&[f32]) -> R) -> Result<R> {
    if cpu_f32(&[x]) && x.is_contiguous() {
        let (storage, layout) = x.storage_and_layout();
        if let candle_core::Storage::Cpu(cpu) = &*storage {
            return Ok(read(contiguous_f32(cpu, layout)?));
        }
    }
    let values = x.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    Ok(read(&values))
}

/// The gradients of an affine op `y = x ⊛ W + b` (convolution, linear layer), each computed
/// only when some variable depends on it (the network's input, for one, needs none).
fn affine_grads(
    (x, weight, bias): (&Tensor, &Tensor, &Tensor),
    grad: &Tensor,
    input_grad: &impl CustomOp2,
    weight_grad: &impl CustomOp2,
    bias_grad: &impl CustomOp1,
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let grad = grad.contiguous()?;
    let dx = x
        .track_op()
        .then(|| grad.apply_op2_no_bwd(weight, input_grad))
        .transpose()?;
    let dw = weight
        .track_op()
        .then(|| grad.apply_op2_no_bwd(x, weight_grad))
        .transpose()?;
    let db = bias
        .track_op()
        .then(|| grad.apply_op1_no_bwd(bias_grad))
        .transpose()?;
    Ok((dx, dw, db))
}

/// The f32 elements of a contiguous CPU tensor (the public functions make
/// every operand contiguous before applying an op).
pub(crate) fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        bail!(
            "autograd kernels expect f32 storage, got {:?}",
            storage.dtype()
        )
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("autograd kernels expect a contiguous layout, got {layout:?}")
    };
    Ok(&data[start..end])
}

/// `dst[m×n] = a · b`, or `dst += a · b` when `accumulate`; `dst` is dense
/// row-major. Runs on the current rayon pool's threads.
fn matmul(a: Mat<'_>, b: Mat<'_>, dst: &mut [f32], accumulate: bool) {
    matmul_on(a, b, dst, accumulate, rayon::current_num_threads());
}

/// Inner-dimension length of one piece in [`matmul_long_inner`].
const INNER_PIECE: usize = 2048;
/// Largest output (elements) that [`matmul_long_inner`] splits; larger ones keep `gemm`'s
/// own parallelism over output blocks, which has enough of them.
const SPLIT_OUTPUT_MAX: usize = 1 << 18;

/// [`matmul`] for products whose inner dimension dwarfs a small output (a weight gradient:
/// a sum over every pixel of the batch). `gemm` parallelises over output blocks and finds
/// too few here, so pieces of the inner dimension run in parallel, each on one thread,
/// and their partial products are added in piece order: the result does not depend on
/// how the pieces were scheduled.
fn matmul_long_inner(a: Mat<'_>, b: Mat<'_>, dst: &mut [f32], accumulate: bool) {
    let (m, inner, n) = (a.rows, a.cols, b.cols);
    let pieces = inner.div_ceil(INNER_PIECE);
    if pieces < 2 || m * n > SPLIT_OUTPUT_MAX {
        return matmul(a, b, dst, accumulate);
    }
    let partials: Vec<Vec<f32>> = (0..pieces)
        .into_par_iter()
        .map(|piece| {
            let range = piece * INNER_PIECE..((piece + 1) * INNER_PIECE).min(inner);
            let mut partial = vec![0.0; m * n];
            matmul_on(
                a.columns(range.clone()),
                b.rows(range),
                &mut partial,
                false,
                1,
            );
            partial
        })
        .collect();
    let dst = &mut dst[..m * n];
    if !accumulate {
        dst.fill(0.0);
    }
    for partial in partials {
        dst.iter_mut().zip(partial).for_each(|(d, p)| *d += p);
    }
}
