//! AVX512_BF16 kernels (`vdpbf16ps`: 16 lanes, each adding two bf16 products into an f32).
//! Only reached through the safe wrappers in `simd/bf16.rs` after runtime detection.
#![cfg(target_arch = "x86_64")]

use super::avx512;
use super::blocking::{self, DotBlock, Panel, sweep_zmm};
use super::{Bf16, DotRowsBf16, WinoGemmBf16};
use core::arch::x86_64::*;

/// 32 bf16 values (16 channel pairs) from `p`.
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
unsafe fn load_pairs(p: *const Bf16) -> __m512bh {
    // SAFETY: the caller guarantees 64 readable bytes; `__m512bh` is 32 packed u16s.
    unsafe { core::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(p.cast())) }
}

/// The bf16 pair at `p` in every lane.
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
unsafe fn broadcast_pair(p: *const Bf16) -> __m512bh {
    // SAFETY: the caller guarantees 4 readable bytes.
    unsafe {
        let pair = p.cast::<i32>().read_unaligned();
        core::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(pair))
    }
}

/// bf16 Winograd batched-GEMM step (see [`WinoGemmBf16`]); the same register blocking as
/// the f32 kernel (4 filter blocks × 6 tiles = 24 accumulators), but each instruction
/// consumes a pair of input channels, so the loop runs over `c_len / 2` pairs.
#[target_feature(enable = "avx512f,avx512bf16")]
pub unsafe fn wino_gemm(mut g: WinoGemmBf16<'_>) {
    unsafe { sweep_zmm::<_, Avx512Bf16>(&mut g) }
}

/// The `vdpbf16ps` blocks.
struct Avx512Bf16;

impl Panel<Bf16, Bf16, f32> for Avx512Bf16 {
    /// Per channel pair: one zmm of 16 lanes × 2 channels per filter block, the tile's
    /// pair broadcast, one `vdpbf16ps` per accumulator.
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[inline]
    unsafe fn panel<const KB: usize, const NP: usize>(
        c_len: usize,
        u: *const Bf16,
        v: *const Bf16,
        vs: usize,
        m: *mut f32,
        ms: usize,
    ) {
        unsafe {
            let pairs = c_len / 2;
            let mut acc = [[_mm512_setzero_ps(); KB]; NP];
            for j in 0..pairs {
                let w: [__m512bh; KB] =
                    core::array::from_fn(|k| load_pairs(u.add((k * pairs + j) * 32)));
                for (p, row) in acc.iter_mut().enumerate() {
                    let x = broadcast_pair(v.add(p * vs + 2 * j));
                    for (a, w) in row.iter_mut().zip(&w) {
                        *a = _mm512_dpbf16_ps(*a, *w, x);
                    }
                }
            }
            avx512::store_panel(&acc, m, ms);
        }
    }
}

/// bf16 fully-connected dot products (see [`DotRowsBf16`]): blocks of 4 weight rows × up
/// to 4 batch rows, one accumulator each, 32 inputs per instruction.
#[target_feature(enable = "avx512f,avx512bf16")]
pub unsafe fn dot_rows(d: DotRowsBf16<'_>) {
    unsafe { blocking::dot_rows::<Bf16, Avx512Bf16>(d) }
}

impl DotBlock<Bf16> for Avx512Bf16 {
    const MAX_BATCH: usize = 4;

    /// `inp` is a multiple of 32.
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[inline]
    unsafe fn block<const R: usize, const B: usize>(
        w: *const Bf16,
        x: *const Bf16,
        y: *mut f32,
        inp: usize,
        batch: usize,
    ) {
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); B]; R];
            for i in (0..inp).step_by(32) {
                let xs: [__m512bh; B] = core::array::from_fn(|b| load_pairs(x.add(b * inp + i)));
                for (r, row) in acc.iter_mut().enumerate() {
                    let wv = load_pairs(w.add(r * inp + i));
                    for (a, xv) in row.iter_mut().zip(&xs) {
                        *a = _mm512_dpbf16_ps(*a, wv, *xv);
                    }
                }
            }
            avx512::store_sums(&acc, y, batch);
        }
    }
}

/// `iters` × 12 independent `vdpbf16ps zmm` (32 multiply-adds each): the bf16 units' peak.
#[target_feature(enable = "avx512f,avx512bf16")]
pub unsafe fn dpbf16_peak(iters: usize) -> f32 {
    let pairs = |x: f32| {
        let bits = (x.to_bits() >> 16) as i32;
        // SAFETY: `__m512i` and `__m512bh` are the same 64 bytes.
        unsafe { core::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(bits << 16 | bits)) }
    };
    let (a, b) = (pairs(1e-3), pairs(0.5));
    let mut acc = [_mm512_setzero_ps(); 12];
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm512_dpbf16_ps(*x, a, b);
        }
    }
    acc.iter().map(|x| _mm512_reduce_add_ps(*x)).sum()
}
