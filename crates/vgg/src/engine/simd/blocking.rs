//! The register-blocking walks shared by the hand-written kernels: a Winograd GEMM step
//! swept panel by panel, and a run of dot products taken block by block. Each kernel file
//! supplies only its blocks ([`WinoPanel`], [`DotBlock`]), monomorphised per block shape;
//! the walks are `#[inline(always)]`, so they compile inside the caller's
//! `#[target_feature]` function with its instruction set.
#![cfg(target_arch = "x86_64")]

use super::{DotRows, WinoGemm};

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
