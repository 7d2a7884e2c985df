//! AVX-512 kernels. Only reached through the safe wrappers in `simd/mod.rs`
//! after runtime detection of `avx512f` + `fma`.
#![cfg(target_arch = "x86_64")]

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
    unsafe {
        let mut kb = 0;
        while kb < g.kbn {
            let kbs = (g.kbn - kb).min(4);
            match kbs {
                4 => sweep::<4, 6>(&mut g, kb),
                3 => sweep::<3, 8>(&mut g, kb),
                2 => sweep::<2, 12>(&mut g, kb),
                _ => sweep::<1, 16>(&mut g, kb),
            }
            kb += kbs;
        }
    }
}

/// All tiles of `g` for `KB` filter blocks starting at `kb0`: full `NP` panels, then the tail.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn sweep<const KB: usize, const NP: usize>(g: &mut WinoGemm<'_>, kb0: usize) {
    unsafe {
        let ms = g.kbn * 16;
        let u = g.u.as_ptr().add(kb0 * g.c_len * 16);
        let (c, vs) = (g.c_len, g.v_stride);
        let mut p = 0;
        while p < g.np {
            let n = (g.np - p).min(NP);
            let v = g.v.as_ptr().add(p * vs);
            let m = g.m.as_mut_ptr().add(p * ms + kb0 * 16);
            macro_rules! tail {
            ($($r:literal)*) => {
                match n {
                    $($r => panel::<KB, $r>(c, u, v, vs, m, ms),)*
                    _ => panel::<KB, NP>(c, u, v, vs, m, ms),
                }
            };
        }
            tail!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
            p += n;
        }
    }
}

/// `NP` tiles × `KB` filter blocks, accumulated over all input channels in registers.
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
            let mut w = [_mm512_setzero_ps(); KB];
            for (k, w) in w.iter_mut().enumerate() {
                *w = _mm512_loadu_ps(u.add((k * c_len + ci) * 16));
            }
            for (p, row) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_ps(*v.add(p * vs + ci));
                for (a, w) in row.iter_mut().zip(&w) {
                    *a = _mm512_fmadd_ps(*w, x, *a);
                }
            }
        }
        for (p, row) in acc.iter().enumerate() {
            for (k, a) in row.iter().enumerate() {
                _mm512_storeu_ps(m.add(p * ms + k * 16), *a);
            }
        }
    }
}

/// Fully-connected dot products (see [`DotRows`]): blocks of 4 weight rows ×
/// up to 4 batch rows, one zmm accumulator each, masked loads for the tail.
#[target_feature(enable = "avx512f")]
pub unsafe fn dot_rows(d: DotRows<'_>) {
    unsafe {
        let rows = d.w.len() / d.inp;
        let mut r = 0;
        while r < rows {
            let nr = if rows - r >= 4 { 4 } else { 1 };
            let mut b = 0;
            while b < d.batch {
                let nb = (d.batch - b).min(4);
                let (w, x) = (d.w.as_ptr().add(r * d.inp), d.x.as_ptr().add(b * d.inp));
                let y = d.y.as_mut_ptr().add(r * d.batch + b);
                match (nr, nb) {
                    (4, 4) => dot_block::<4, 4>(w, x, y, d.inp, d.batch),
                    (4, 3) => dot_block::<4, 3>(w, x, y, d.inp, d.batch),
                    (4, 2) => dot_block::<4, 2>(w, x, y, d.inp, d.batch),
                    (4, _) => dot_block::<4, 1>(w, x, y, d.inp, d.batch),
                    (_, 4) => dot_block::<1, 4>(w, x, y, d.inp, d.batch),
                    (_, 3) => dot_block::<1, 3>(w, x, y, d.inp, d.batch),
                    (_, 2) => dot_block::<1, 2>(w, x, y, d.inp, d.batch),
                    _ => dot_block::<1, 1>(w, x, y, d.inp, d.batch),
                }
                b += nb;
            }
            r += nr;
        }
    }
}

/// `R` weight rows × `B` batch rows; `y` has row stride `batch`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn dot_block<const R: usize, const B: usize>(
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
        for (r, row) in acc.iter().enumerate() {
            for (b, a) in row.iter().enumerate() {
                *y.add(r * batch + b) = _mm512_reduce_add_ps(*a);
            }
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
