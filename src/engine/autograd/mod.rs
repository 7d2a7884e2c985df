//! Training kernels as candle custom ops: 3×3 convolution, 2×2 max-pool,
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

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Layout, Result, Tensor, bail};

pub use conv::conv3x3;
pub use linear::linear;
pub use norm::batch_norm_train;
pub use pool::max_pool2x2;
pub use relu::relu;

/// Whether `tensors` can take the custom CPU path.
fn cpu_f32(tensors: &[&Tensor]) -> bool {
    tensors
        .iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// The f32 elements of a contiguous CPU tensor (the public functions make
/// every operand contiguous before applying an op).
fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
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

/// A strided read-only view of an f32 matrix.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Mat<'a> {
    fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Mat {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose, free: `gemm` takes any strides.
    fn t(self) -> Self {
        Mat {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Elements spanned from the first to one past the last.
    fn span(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            0
        } else {
            (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride + 1
        }
    }
}

/// `dst[m×n] = a · b`, or `dst += a · b` when `accumulate`; `dst` is dense
/// row-major. Runs on the current rayon pool's threads.
fn matmul(a: Mat<'_>, b: Mat<'_>, dst: &mut [f32], accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions differ");
    assert!(a.span() <= a.data.len() && b.span() <= b.data.len() && dst.len() >= m * n);
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    if m == 0 || n == 0 {
        return;
    }
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: every index `gemm` touches lies within the spans checked above, and
    // `dst` is an exclusive borrow, so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}
