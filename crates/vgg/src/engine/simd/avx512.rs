//! AVX-512 kernels. Only reached through the safe wrappers in `simd/mod.rs`
//! after runtime detection of `avx512f` + `fma`.
#![cfg(target_arch = "x86_64")]

use super::blocking::{self, DotBlock, Panel, sweep_zmm};
use super::{DotRows, SimdTask, WinoGemm};
use core::arch::x86_64::*;

/// Compiles portable lane code with AVX-512 enabled.
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
pub unsafe fn run_task<T: SimdTask>(task: T) -> T::Output {
    task.run::<true>()
}

/// Winograd batched-GEMM step (see [`WinoGemm`]).
///
/// Register blocking: 4 filter blocks (64 output channels, 4 zmm loaded per
/// input channel) × 6 tiles (6 broadcasts) = 24 accumulators, so each input
/// channel costs 10 loads for 24 FMAs and the FMA ports stay the bottleneck.
/// Narrower filter-block tails use more tiles to keep ~24 accumulators.
#[target_feature(enable = "avx512f")]
pub unsafe fn wino_gemm(mut g: WinoGemm<'_>) {
    unsafe { sweep_zmm::<_, Avx512>(&mut g) }
}

/// The AVX-512 f32 blocks.
struct Avx512;

impl Panel<f32, f32, f32> for Avx512 {
    /// One zmm per filter block and input channel, broadcast tiles, FMA.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn panel<const KB: usize, const NP: usize>(
        c_len: usize,
        u: *const f32,
        v: *const f32,
        vs: usize,
        m: *mut f32,
        ms: usize,
    ) {
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); KB]; NP];
            for ci in 0..c_len {
                let w: [__m512; KB] =
                    core::array::from_fn(|k| _mm512_loadu_ps(u.add((k * c_len + ci) * 16)));
                for (p, row) in acc.iter_mut().enumerate() {
                    let x = _mm512_set1_ps(*v.add(p * vs + ci));
                    for (a, w) in row.iter_mut().zip(&w) {
                        *a = _mm512_fmadd_ps(*w, x, *a);
                    }
                }
            }
            store_panel(&acc, m, ms);
        }
    }
}

/// Fully-connected dot products (see [`DotRows`]): blocks of 4 weight rows ×
/// up to 4 batch rows, one zmm accumulator each, masked loads for the tail.
#[target_feature(enable = "avx512f")]
pub unsafe fn dot_rows(d: DotRows<'_>) {
    unsafe { blocking::dot_rows::<f32, Avx512>(d) }
}

impl DotBlock<f32> for Avx512 {
    const MAX_BATCH: usize = 4;

    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn block<const R: usize, const B: usize>(
        w: *const f32,
        x: *const f32,
        y: *mut f32,
        inp: usize,
        batch: usize,
    ) {
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); B]; R];
            let full = inp / 16 * 16;
            let mut step = |i: usize, mask: __mmask16| {
                let xs: [__m512; B] =
                    core::array::from_fn(|b| _mm512_maskz_loadu_ps(mask, x.add(b * inp + i)));
                for (r, row) in acc.iter_mut().enumerate() {
                    let wv = _mm512_maskz_loadu_ps(mask, w.add(r * inp + i));
                    for (a, xv) in row.iter_mut().zip(&xs) {
                        *a = _mm512_fmadd_ps(wv, *xv, *a);
                    }
                }
            };
            for i in (0..full).step_by(16) {
                step(i, 0xffff);
            }
            if full < inp {
                step(full, (1u16 << (inp - full)) - 1);
            }
            store_sums(&acc, y, batch);
        }
    }
}

/// Stores a panel's accumulators: tile `p`, filter block `k` at `m + p·ms + k·16`.
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn store_panel<const KB: usize, const NP: usize>(
    acc: &[[__m512; KB]; NP],
    m: *mut f32,
    ms: usize,
) {
    for (p, row) in acc.iter().enumerate() {
        for (k, a) in row.iter().enumerate() {
            // SAFETY: the caller's panel owns these outputs.
            unsafe { _mm512_storeu_ps(m.add(p * ms + k * 16), *a) };
        }
    }
}

/// Stores each accumulator's lane sum: weight row `r`, batch row `b` at `y + r·batch + b`.
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn store_sums<const B: usize, const R: usize>(
    acc: &[[__m512; B]; R],
    y: *mut f32,
    batch: usize,
) {
    for (r, row) in acc.iter().enumerate() {
        for (b, a) in row.iter().enumerate() {
            // SAFETY: the caller's block owns these results.
            unsafe { *y.add(r * batch + b) = _mm512_reduce_add_ps(*a) };
        }
    }
}

/// `iters` × 12 independent `vfmadd231ps zmm` (16 multiply-adds each): the FMA units' peak.
#[target_feature(enable = "avx512f")]
pub unsafe fn fma_peak(iters: usize) -> f32 {
    let (a, b) = (_mm512_set1_ps(0.999), _mm512_set1_ps(1e-3));
    let mut acc = [_mm512_setzero_ps(); 12];
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm512_fmadd_ps(*x, a, b);
        }
    }
    acc.iter().map(|x| _mm512_reduce_add_ps(*x)).sum()
}
