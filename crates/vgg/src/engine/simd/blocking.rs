//! The register-blocking walks shared by the hand-written kernels: a GEMM (the Winograd step,
//! the int8 GEMM) swept panel by panel, and a run of dot products taken block by block. Each
//! kernel file supplies only its blocks ([`Panel`], [`DotBlock`], [`Quads256`]),
//! monomorphised per block shape; the walks are `#[inline(always)]`, so they compile inside
//! the caller's `#[target_feature]` function with its instruction set.
#![cfg(target_arch = "x86_64")]

use super::{DotRows, GemmU8I8, WinoGemm};
use core::arch::x86_64::*;

/// A GEMM's operands as the walks see them: `np` rows of `len` inputs (`v`, rows `vs` apart)
/// against `kbn` packed filter blocks of 16 output channels (`u`, blocks `len·16` elements
/// apart), into `m` (rows `kbn·16` apart, blocks 16 apart). The Winograd step
/// ([`WinoGemm`]) and the int8 GEMM ([`GemmU8I8`]) are both of this form.
pub(super) trait Gemm {
    type U;
    type V;
    type A;
    /// `(len, kbn, np, u, v, vs, m)`, for a GEMM that passed its bounds check.
    #[allow(clippy::type_complexity)]
    fn parts(
        &mut self,
    ) -> (
        usize,
        usize,
        usize,
        *const Self::U,
        *const Self::V,
        usize,
        *mut Self::A,
    );
}

impl<E> Gemm for WinoGemm<'_, E> {
    type U = E;
    type V = E;
    type A = f32;
    fn parts(&mut self) -> (usize, usize, usize, *const E, *const E, usize, *mut f32) {
        let (u, v) = (self.u.as_ptr(), self.v.as_ptr());
        (
            self.c_len,
            self.kbn,
            self.np,
            u,
            v,
            self.v_stride,
            self.m.as_mut_ptr(),
        )
    }
}

impl Gemm for GemmU8I8<'_> {
    type U = i8;
    type V = u8;
    type A = i32;
    fn parts(&mut self) -> (usize, usize, usize, *const i8, *const u8, usize, *mut i32) {
        let (u, v) = (self.u.as_ptr(), self.v.as_ptr());
        (
            self.k_len,
            self.kbn,
            self.np,
            u,
            v,
            self.v_stride,
            self.m.as_mut_ptr(),
        )
    }
}

/// A GEMM panel: `NP` rows × `KB` filter blocks of 16 output channels, summed over `len`
/// inputs in registers. `u` points at the first filter block, `v` at the first row, `m` at
/// the first output (see [`Gemm`] for the strides; `ms` is the output row stride).
pub(super) trait Panel<U, V, A> {
    /// # Safety
    /// The instruction set is available, and every address the panel reads or writes
    /// (as described above) is in bounds.
    unsafe fn panel<const KB: usize, const NP: usize>(
        len: usize,
        u: *const U,
        v: *const V,
        vs: usize,
        m: *mut A,
        ms: usize,
    );
}

/// All rows of `g` for `KB` filter blocks starting at `kb0`: full `NP`-row panels, then
/// the tail (at most 15 rows).
///
/// # Safety
/// `g` passed its bounds check, `kb0 + KB ≤ g.kbn`, `NP ≤ 16`, and `K`'s instruction set is
/// available.
#[inline(always)]
pub(super) unsafe fn sweep<
    G: Gemm,
    K: Panel<G::U, G::V, G::A>,
    const KB: usize,
    const NP: usize,
>(
    g: &mut G,
    kb0: usize,
) {
    unsafe {
        let (len, kbn, np, u, v0, vs, m0) = g.parts();
        let ms = kbn * 16;
        let u = u.add(kb0 * len * 16);
        let mut p = 0;
        while p < np {
            let n = (np - p).min(NP);
            let v = v0.add(p * vs);
            let m = m0.add(p * ms + kb0 * 16);
            macro_rules! tail {
                ($($r:literal)*) => {
                    match n {
                        $($r if $r < NP => K::panel::<KB, $r>(len, u, v, vs, m, ms),)*
                        _ => K::panel::<KB, NP>(len, u, v, vs, m, ms),
                    }
                };
            }
            tail!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
            p += n;
        }
    }
}

/// The AVX-512 kernels' blocking: 4 filter blocks × 6 rows = 24 zmm accumulators (the
/// remaining blocks as 3 × 8, 2 × 12 or 1 × 16).
///
/// # Safety
/// `g` passed its bounds check and `K`'s instruction set is available.
#[inline(always)]
pub(super) unsafe fn sweep_zmm<G: Gemm, K: Panel<G::U, G::V, G::A>>(g: &mut G) {
    unsafe {
        let kbn = g.parts().1;
        let mut kb = 0;
        while kb < kbn {
            let kbs = (kbn - kb).min(4);
            match kbs {
                4 => sweep::<G, K, 4, 6>(g, kb),
                3 => sweep::<G, K, 3, 8>(g, kb),
                2 => sweep::<G, K, 2, 12>(g, kb),
                _ => sweep::<G, K, 1, 16>(g, kb),
            }
            kb += kbs;
        }
    }
}

/// One step of an int8 product on ymm registers: `acc` plus, in each of its 8 i32 lanes,
/// the 4 products of the lane's u8 quad of `x` with the s8 quad of `w` (`vpdpbusd`, or its
/// emulation).
pub(super) trait Quads256 {
    /// # Safety
    /// The instruction set is available.
    unsafe fn dot4(acc: __m256i, x: __m256i, w: __m256i) -> __m256i;
}

/// An int8 [`Panel`] on ymm registers with `O`'s quad products: per quad of inputs, a filter
/// block's 16 channels × 4 weights in two ymm, the row's quad broadcast, one `O::dot4` per
/// accumulator.
///
/// # Safety
/// As [`Panel::panel`]; inlined into the caller's `#[target_feature]` function, which
/// enables `O`'s instructions.
#[inline(always)]
pub(super) unsafe fn ymm_panel<O: Quads256, const KB: usize, const NP: usize>(
    k_len: usize,
    u: *const i8,
    v: *const u8,
    vs: usize,
    m: *mut i32,
    ms: usize,
) {
    unsafe {
        let quads = k_len / 4;
        let mut acc = [[[_mm256_setzero_si256(); 2]; KB]; NP];
        for j in 0..quads {
            let w: [[__m256i; 2]; KB] = core::array::from_fn(|k| {
                core::array::from_fn(|h| {
                    _mm256_loadu_si256(u.add((k * quads + j) * 64 + h * 32).cast())
                })
            });
            for (p, row) in acc.iter_mut().enumerate() {
                let x = _mm256_set1_epi32(v.add(p * vs + 4 * j).cast::<i32>().read_unaligned());
                for (block, w) in row.iter_mut().zip(&w) {
                    for (a, w) in block.iter_mut().zip(w) {
                        *a = O::dot4(*a, x, *w);
                    }
                }
            }
        }
        for (p, row) in acc.iter().enumerate() {
            for (k, block) in row.iter().enumerate() {
                for (h, a) in block.iter().enumerate() {
                    _mm256_storeu_si256(m.add(p * ms + k * 16 + h * 8).cast(), *a);
                }
            }
        }
    }
}

/// `R` weight rows × `B` batch rows of dot products over `inp` values; `y` has row
/// stride `batch`.
pub(super) trait DotBlock<E> {
    /// The most batch rows one block takes (its accumulators must fit the registers).
    const MAX_BATCH: usize;

    /// # Safety
    /// The instruction set is available; `w` holds `R` rows and `x` `B` rows of `inp`
    /// values, `y` the `R × B` results at stride `batch`.
    unsafe fn block<const R: usize, const B: usize>(
        w: *const E,
        x: *const E,
        y: *mut f32,
        inp: usize,
        batch: usize,
    );
}

/// Computes [`DotRows`] in blocks of 4 weight rows (single rows for the tail) × up to
/// `K::MAX_BATCH` (≤ 4) batch rows: each block streams its weight rows once.
///
/// # Safety
/// `d` passed its bounds check and `K`'s instruction set is available.
#[inline(always)]
pub(super) unsafe fn dot_rows<E, K: DotBlock<E>>(d: DotRows<'_, E>) {
    unsafe {
        let rows = d.w.len() / d.inp;
        let mut r = 0;
        while r < rows {
            let nr = if rows - r >= 4 { 4 } else { 1 };
            let mut b = 0;
            while b < d.batch {
                let nb = (d.batch - b).min(K::MAX_BATCH);
                let (w, x) = (d.w.as_ptr().add(r * d.inp), d.x.as_ptr().add(b * d.inp));
                let y = d.y.as_mut_ptr().add(r * d.batch + b);
                let (inp, batch) = (d.inp, d.batch);
                match (nr, nb) {
                    (4, 4) => K::block::<4, 4>(w, x, y, inp, batch),
                    (4, 3) => K::block::<4, 3>(w, x, y, inp, batch),
                    (4, 2) => K::block::<4, 2>(w, x, y, inp, batch),
                    (4, _) => K::block::<4, 1>(w, x, y, inp, batch),
                    (_, 4) => K::block::<1, 4>(w, x, y, inp, batch),
                    (_, 3) => K::block::<1, 3>(w, x, y, inp, batch),
                    (_, 2) => K::block::<1, 2>(w, x, y, inp, batch),
                    _ => K::block::<1, 1>(w, x, y, inp, batch),
                }
                b += nb;
            }
            r += nr;
        }
    }
}
