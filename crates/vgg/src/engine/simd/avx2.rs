//! AVX2 + FMA kernels. Only reached through the safe wrappers in `simd/mod.rs`
//! after runtime detection of `avx2` + `fma`.
#![cfg(target_arch = "x86_64")]

use super::{Bf16, DotRowsBf16, SimdTask, WinoGemm, WinoGemmBf16};
use core::arch::x86_64::*;

/// Compiles portable lane code with AVX2 + FMA enabled.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn run_task<T: SimdTask>(task: T) -> T::Output {
    task.run::<true>()
}

/// Winograd batched-GEMM step (see [`WinoGemm`]).
///
/// A 16-channel filter block is two ymm registers; 2 blocks × 3 tiles (or
/// 1 block × 6 tiles) = 12 accumulators leaves room for operands in the 16 ymm.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn wino_gemm(mut g: WinoGemm<'_>) {
    unsafe {
        let mut kb = 0;
        while kb < g.kbn {
            if g.kbn - kb >= 2 {
                sweep::<2, 3>(&mut g, kb);
                kb += 2;
            } else {
                sweep::<1, 6>(&mut g, kb);
                kb += 1;
            }
        }
    }
}

/// All tiles of `g` for `KB` filter blocks starting at `kb0`.
#[target_feature(enable = "avx2,fma")]
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
            match n {
                1 => panel::<KB, 1>(c, u, v, vs, m, ms),
                2 => panel::<KB, 2>(c, u, v, vs, m, ms),
                3 => panel::<KB, 3>(c, u, v, vs, m, ms),
                4 => panel::<KB, 4>(c, u, v, vs, m, ms),
                5 => panel::<KB, 5>(c, u, v, vs, m, ms),
                _ => panel::<KB, NP>(c, u, v, vs, m, ms),
            }
            p += n;
        }
    }
}

/// `NP` tiles × `KB` filter blocks (2 ymm each), accumulated in registers.
#[target_feature(enable = "avx2,fma")]
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
        let mut acc = [[[_mm256_setzero_ps(); 2]; KB]; NP];
        for ci in 0..c_len {
            let mut w = [[_mm256_setzero_ps(); 2]; KB];
            for (k, w) in w.iter_mut().enumerate() {
                let base = u.add((k * c_len + ci) * 16);
                *w = [_mm256_loadu_ps(base), _mm256_loadu_ps(base.add(8))];
            }
            for (p, row) in acc.iter_mut().enumerate() {
                let x = _mm256_set1_ps(*v.add(p * vs + ci));
                for (a, w) in row.iter_mut().zip(&w) {
                    a[0] = _mm256_fmadd_ps(w[0], x, a[0]);
                    a[1] = _mm256_fmadd_ps(w[1], x, a[1]);
                }
            }
        }
        for (p, row) in acc.iter().enumerate() {
            for (k, a) in row.iter().enumerate() {
                let dst = m.add(p * ms + k * 16);
                _mm256_storeu_ps(dst, a[0]);
                _mm256_storeu_ps(dst.add(8), a[1]);
            }
        }
    }
}

/// Channel pairs of bf16 widened to f32: `[even channel, odd channel]` of 8 lanes (a bf16
/// is the upper half of an f32, so widening is a shift or a mask).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn widen(pairs: __m256i) -> [__m256; 2] {
    let even = _mm256_slli_epi32::<16>(pairs);
    let odd = _mm256_and_si256(pairs, _mm256_set1_epi32(0xffff_0000_u32 as i32));
    [_mm256_castsi256_ps(even), _mm256_castsi256_ps(odd)]
}

/// One channel of the bf16 pair at `p`, widened: `half` 0 is the even channel, 1 the odd.
#[inline(always)]
unsafe fn pair_half(p: *const Bf16, half: usize) -> f32 {
    // SAFETY: the caller guarantees 4 readable bytes.
    let pair = unsafe { p.cast::<u32>().read_unaligned() };
    f32::from_bits(if half == 0 {
        pair << 16
    } else {
        pair & 0xffff_0000
    })
}

/// Emulated bf16 Winograd batched-GEMM step (see [`WinoGemmBf16`]) in the f32 kernel's
/// blocking. Each lane adds its odd channel's product, then its even one's, each product
/// exact and each sum rounded once, as `vdpbf16ps` does.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn wino_gemm_bf16(mut g: WinoGemmBf16<'_>) {
    unsafe {
        let mut kb = 0;
        while kb < g.kbn {
            if g.kbn - kb >= 2 {
                sweep_bf16::<2, 3>(&mut g, kb);
                kb += 2;
            } else {
                sweep_bf16::<1, 6>(&mut g, kb);
                kb += 1;
            }
        }
    }
}

/// All tiles of `g` for `KB` filter blocks starting at `kb0`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn sweep_bf16<const KB: usize, const NP: usize>(g: &mut WinoGemmBf16<'_>, kb0: usize) {
    unsafe {
        let ms = g.kbn * 16;
        let u = g.u.as_ptr().add(kb0 * g.c_len * 16);
        let (pairs, vs) = (g.c_len / 2, g.v_stride);
        let mut p = 0;
        while p < g.np {
            let n = (g.np - p).min(NP);
            let v = g.v.as_ptr().add(p * vs);
            let m = g.m.as_mut_ptr().add(p * ms + kb0 * 16);
            match n {
                1 => panel_bf16::<KB, 1>(pairs, u, v, vs, m, ms),
                2 => panel_bf16::<KB, 2>(pairs, u, v, vs, m, ms),
                3 => panel_bf16::<KB, 3>(pairs, u, v, vs, m, ms),
                4 => panel_bf16::<KB, 4>(pairs, u, v, vs, m, ms),
                5 => panel_bf16::<KB, 5>(pairs, u, v, vs, m, ms),
                _ => panel_bf16::<KB, NP>(pairs, u, v, vs, m, ms),
            }
            p += n;
        }
    }
}

/// `NP` tiles × `KB` filter blocks (2 ymm each), accumulated in registers: per channel
/// pair, the odd channel's pass, then the even one's.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn panel_bf16<const KB: usize, const NP: usize>(
    pairs: usize,
    u: *const Bf16,
    v: *const Bf16,
    vs: usize,
    m: *mut f32,
    ms: usize,
) {
    unsafe {
        let mut acc = [[[_mm256_setzero_ps(); 2]; KB]; NP];
        for j in 0..pairs {
            for half in [1, 0] {
                let w: [[__m256; 2]; KB] = core::array::from_fn(|k| {
                    let base = u.add((k * pairs + j) * 32);
                    let lo = _mm256_loadu_si256(base.cast());
                    let hi = _mm256_loadu_si256(base.add(16).cast());
                    [widen(lo)[half], widen(hi)[half]]
                });
                for (p, row) in acc.iter_mut().enumerate() {
                    let x = _mm256_set1_ps(pair_half(v.add(p * vs + 2 * j), half));
                    for (a, w) in row.iter_mut().zip(&w) {
                        a[0] = _mm256_fmadd_ps(w[0], x, a[0]);
                        a[1] = _mm256_fmadd_ps(w[1], x, a[1]);
                    }
                }
            }
        }
        for (p, row) in acc.iter().enumerate() {
            for (k, a) in row.iter().enumerate() {
                let dst = m.add(p * ms + k * 16);
                _mm256_storeu_ps(dst, a[0]);
                _mm256_storeu_ps(dst.add(8), a[1]);
            }
        }
    }
}

/// Emulated bf16 fully-connected dot products (see [`DotRowsBf16`]): blocks of 4 weight
/// rows × up to 2 batch rows, reading half the bytes of f32 weights (what bounds the FC
/// layers at small batch).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot_rows_bf16(d: DotRowsBf16<'_>) {
    unsafe {
        let rows = d.w.len() / d.inp;
        let mut r = 0;
        while r < rows {
            let nr = if rows - r >= 4 { 4 } else { 1 };
            let mut b = 0;
            while b < d.batch {
                let nb = (d.batch - b).min(2);
                let (w, x) = (d.w.as_ptr().add(r * d.inp), d.x.as_ptr().add(b * d.inp));
                let y = d.y.as_mut_ptr().add(r * d.batch + b);
                match (nr, nb) {
                    (4, 2) => dot_block_bf16::<4, 2>(w, x, y, d.inp, d.batch),
                    (4, _) => dot_block_bf16::<4, 1>(w, x, y, d.inp, d.batch),
                    (_, 2) => dot_block_bf16::<1, 2>(w, x, y, d.inp, d.batch),
                    _ => dot_block_bf16::<1, 1>(w, x, y, d.inp, d.batch),
                }
                b += nb;
            }
            r += nr;
        }
    }
}

/// `R` weight rows × `B` batch rows, 16 inputs (8 pairs) per step; `inp` a multiple of 32.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn dot_block_bf16<const R: usize, const B: usize>(
    w: *const Bf16,
    x: *const Bf16,
    y: *mut f32,
    inp: usize,
    batch: usize,
) {
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); B]; R];
        for i in (0..inp).step_by(16) {
            let xs: [[__m256; 2]; B] =
                core::array::from_fn(|b| widen(_mm256_loadu_si256(x.add(b * inp + i).cast())));
            for (r, row) in acc.iter_mut().enumerate() {
                let [even, odd] = widen(_mm256_loadu_si256(w.add(r * inp + i).cast()));
                for (a, [x_even, x_odd]) in row.iter_mut().zip(&xs) {
                    *a = _mm256_fmadd_ps(odd, *x_odd, *a);
                    *a = _mm256_fmadd_ps(even, *x_even, *a);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (b, a) in row.iter().enumerate() {
                let mut lanes = [0f32; 8];
                _mm256_storeu_ps(lanes.as_mut_ptr(), *a);
                *y.add(r * batch + b) = lanes.iter().sum();
            }
        }
    }
}
