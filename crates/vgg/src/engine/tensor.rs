//! Activation layout: NHWC with the channel count padded to a multiple of 16
//! (one SIMD lane block). Padding channels always hold zeros, so kernels never
//! need channel tails; filters are zero-padded to match.

use super::EngineError;
use super::simd::Bf16;

/// `len` zeroed elements, or an error when the system refuses the memory (a budget raised
/// past what the machine has): never an abort in the allocator.
pub(crate) fn zeroed<T: Clone + Default>(len: usize) -> Result<Vec<T>, EngineError> {
    let mut buffer = Vec::new();
    buffer
        .try_reserve_exact(len)
        .map_err(|_| EngineError::OutOfMemory {
            bytes: (len as u64).saturating_mul(std::mem::size_of::<T>() as u64),
        })?;
    buffer.resize(len, T::default());
    Ok(buffer)
}

/// Scratch shared by a plan's layers, one buffer per element type; as `Scratch<usize>`,
/// the lengths one layer needs.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Scratch<F, B = F, U = F> {
    pub f32: F,
    pub bf16: B,
    pub u8: U,
}

/// The buffers themselves.
pub(crate) type ScratchBuffers = Scratch<Vec<f32>, Vec<Bf16>, Vec<u8>>;

impl Scratch<usize> {
    /// Room for both `self` and `other`, one at a time.
    pub(crate) fn max(self, other: Self) -> Self {
        Scratch {
            f32: self.f32.max(other.f32),
            bf16: self.bf16.max(other.bf16),
            u8: self.u8.max(other.u8),
        }
    }

    /// Zeroed buffers of these lengths.
    pub(crate) fn allocate(self) -> Result<ScratchBuffers, EngineError> {
        Ok(Scratch {
            f32: zeroed(self.f32)?,
            bf16: zeroed(self.bf16)?,
            u8: zeroed(self.u8)?,
        })
    }
}

/// Shape of an NHWC activation with padded channel stride `cp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    /// Real channels.
    pub c: usize,
    /// Channel stride (c rounded up to 16).
    pub cp: usize,
}

/// `v` followed by zeros up to `len` values: a per-channel vector for the padded channels.
pub(crate) fn zero_padded(v: &[f32], len: usize) -> Vec<f32> {
    let mut out = vec![0.0; len];
    out[..v.len()].copy_from_slice(v);
    out
}

/// `c` rounded up to a whole 16-lane block.
pub(crate) fn round16(c: usize) -> usize {
    c.div_ceil(16) * 16
}

impl Shape {
    pub(crate) fn new(n: usize, h: usize, w: usize, c: usize) -> Shape {
        Shape {
            n,
            h,
            w,
            c,
            cp: round16(c),
        }
    }

    /// Elements in the padded buffer.
    pub(crate) fn len(&self) -> usize {
        self.n * self.h * self.w * self.cp
    }

    /// Offset of pixel (n, y, x), channel 0.
    #[inline(always)]
    pub(crate) fn at(&self, n: usize, y: usize, x: usize) -> usize {
        ((n * self.h + y) * self.w + x) * self.cp
    }

    /// Shape after a 2×2 stride-2 max-pool (odd sizes floor, as PyTorch).
    pub(crate) fn pooled(&self) -> Shape {
        Shape {
            h: self.h / 2,
            w: self.w / 2,
            ..*self
        }
    }

    /// Same spatial size with `c` channels.
    pub(crate) fn with_channels(&self, c: usize) -> Shape {
        Shape::new(self.n, self.h, self.w, c)
    }
}

/// NCHW (unpadded) → padded NHWC; padding channels are zeroed.
pub(crate) fn nchw_to_nhwc(src: &[f32], s: Shape, dst: &mut [f32]) {
    let plane = s.h * s.w;
    for n in 0..s.n {
        for (i, px) in dst[n * plane * s.cp..(n + 1) * plane * s.cp]
            .chunks_exact_mut(s.cp)
            .enumerate()
        {
            for (c, v) in px.iter_mut().enumerate() {
                *v = if c < s.c {
                    src[(n * s.c + c) * plane + i]
                } else {
                    0.0
                };
            }
        }
    }
}

/// Padded NHWC → NCHW (unpadded).
pub(crate) fn nhwc_to_nchw(src: &[f32], s: Shape) -> Vec<f32> {
    let plane = s.h * s.w;
    let mut out = vec![0.0; s.n * s.c * plane];
    for n in 0..s.n {
        for i in 0..plane {
            for c in 0..s.c {
                out[(n * s.c + c) * plane + i] = src[(n * plane + i) * s.cp + c];
            }
        }
    }
    out
}
