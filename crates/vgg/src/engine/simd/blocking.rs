//! The register-blocking walks shared by the hand-written kernels: a Winograd GEMM step (and
//! the int8 GEMM) swept panel by panel, and a run of dot products taken block by block. Each
//! kernel file supplies only its blocks ([`WinoPanel`], [`Int8Panel`], [`DotBlock`]),
//! monomorphised per block shape;
//! the walks are `#[inline(always)]`, so they compile inside the caller's
//! `#[target_feature]` function with its instruction set.
#![cfg(target_arch = "x86_64")]

use super::{DotRows, GemmU8I8, WinoGemm};
use core::arch::x86_64::*;

/// A Winograd GEMM panel: `NP` tiles × `KB` filter blocks of 16 output channels, summed
/// over `c_len` input channels in registers. `u` points at the first filter block (blocks
/// `c_len·16` elements apart), `v` at the first tile (tiles `vs` apart), `m` at the first
/// output (tiles `ms` apart, blocks 16 apart).
pub(super) trait WinoPanel<E> {
    /// # Safety
    /// The instruction set is available, and every address the panel reads or writes
    /// (as described above) is in bounds.
    unsafe fn panel<const KB: usize, const NP: usize>(
        c_len: usize,
        u: *const E,
        v: *const E,
        vs: usize,
        m: *mut f32,
        ms: usize,
    );
}

/// All tiles of `g` for `KB` filter blocks starting at `kb0`: full `NP`-tile panels, then
/// the tail (at most 15 tiles).
///
/// # Safety
/// `g` passed its bounds check, `kb0 + KB ≤ g.kbn`, `NP ≤ 16`, and `K`'s instruction set is
/// available.
#[inline(always)]
pub(super) unsafe fn sweep<E, K: WinoPanel<E>, const KB: usize, const NP: usize>(
    g: &mut WinoGemm<'_, E>,
    kb0: usize,
) {
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
                        $($r if $r < NP => K::panel::<KB, $r>(c, u, v, vs, m, ms),)*
                        _ => K::panel::<KB, NP>(c, u, v, vs, m, ms),
                    }
                };
            }
            tail!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
            p += n;
        }
    }
}

/// An int8 GEMM panel: `NP` rows × `KB` filter blocks of 16 output channels, summed over
/// `k_len` inputs (quads) in registers; the layout of [`WinoPanel`] with u8 rows, s8 filters
/// and i32 sums.
pub(super) trait Int8Panel {
    /// # Safety
    /// The instruction set is available, and every address the panel reads or writes is in
    /// bounds.
    unsafe fn panel<const KB: usize, const NP: usize>(
        k_len: usize,
        u: *const i8,
        v: *const u8,
        vs: usize,
        m: *mut i32,
        ms: usize,
    );
}

/// All rows of `g` for `KB` filter blocks starting at `kb0`: full `NP`-row panels, then the
/// tail (at most 15 rows).
///
/// # Safety
/// `g` passed its bounds check, `kb0 + KB ≤ g.kbn`, `NP ≤ 16`, and `K`'s instruction set is
/// available.
#[inline(always)]
pub(super) unsafe fn sweep_u8i8<K: Int8Panel, const KB: usize, const NP: usize>(
    g: &mut GemmU8I8<'_>,
    kb0: usize,
) {
    unsafe {
        let ms = g.kbn * 16;
        let u = g.u.as_ptr().add(kb0 * g.k_len * 16);
        let (k, vs) = (g.k_len, g.v_stride);
        let mut p = 0;
        while p < g.np {
            let n = (g.np - p).min(NP);
            let v = g.v.as_ptr().add(p * vs);
            let m = g.m.as_mut_ptr().add(p * ms + kb0 * 16);
            macro_rules! tail {
                ($($r:literal)*) => {
                    match n {
                        $($r if $r < NP => K::panel::<KB, $r>(k, u, v, vs, m, ms),)*
                        _ => K::panel::<KB, NP>(k, u, v, vs, m, ms),
                    }
                };
            }
            tail!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
            p += n;
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

/// An [`Int8Panel`] on ymm registers with `O`'s quad products: per quad of inputs, a filter
/// block's 16 channels × 4 weights in two ymm, the row's quad broadcast, one `O::dot4` per
/// accumulator.
///
/// # Safety
/// As [`Int8Panel::panel`]; inlined into the caller's `#[target_feature]` function, which
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
