//! AVX2 + FMA kernels. Only reached through the safe wrappers in `simd/mod.rs`
//! after runtime detection of `avx2` + `fma`.
#![cfg(target_arch = "x86_64")]

use super::{SimdTask, WinoGemm};
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
