//! The one safe wrapper around the `gemm` crate's matrix product (AVX-512 kernels with its
//! `x86-v4` feature), shared by the inference engine and the training ops: strided views
//! in, bounds checked once, no `unsafe` for callers.

use std::ops::Range;

/// A strided read-only view of an f32 matrix.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> Mat<'a> {
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Mat {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose, free: `gemm` takes any strides.
    pub fn t(self) -> Self {
        Mat {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Columns `range` of this matrix.
    pub fn columns(&self, range: Range<usize>) -> Mat<'a> {
        Mat {
            data: &self.data[range.start * self.col_stride..],
            cols: range.len(),
            ..*self
        }
    }

    /// Rows `range` of this matrix.
    pub fn rows(&self, range: Range<usize>) -> Mat<'a> {
        Mat {
            data: &self.data[range.start * self.row_stride..],
            rows: range.len(),
            ..*self
        }
    }

    /// Elements spanned from the first to one past the last.
    pub fn span(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            0
        } else {
            (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride + 1
        }
    }
}

/// `dst[m×n] = a · b`, or `dst += a · b` when `accumulate` (`dst` dense row-major), on
/// `threads` rayon workers (1: the calling thread only). The one place that calls `gemm`.
pub fn matmul_on(a: Mat<'_>, b: Mat<'_>, dst: &mut [f32], accumulate: bool, threads: usize) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    #[test]
    fn matmul_accumulates_like_naive() {
        let (m, n, k) = (37, 19, 23);
        let mut seed = 3;
        let a: Vec<f32> = (0..m * k).map(|_| lcg(&mut seed)).collect();
        let b: Vec<f32> = (0..k * n).map(|_| lcg(&mut seed)).collect();
        let mut c = vec![1.0; m * n];
        matmul_on(
            Mat::row_major(&a, m, k),
            Mat::row_major(&b, k, n),
            &mut c,
            true,
            2,
        );
        for i in 0..m {
            for j in 0..n {
                let want: f32 = 1.0 + (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum::<f32>();
                assert!((c[i * n + j] - want).abs() < 1e-4);
            }
        }
    }
}
