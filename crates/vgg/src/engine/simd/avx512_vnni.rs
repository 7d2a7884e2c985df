//! AVX512_VNNI kernels (`vpdpbusd`: 16 i32 lanes, each adding four u8·s8 products). Only
//! reached through the safe wrappers in `simd/int8.rs` after runtime detection.
#![cfg(target_arch = "x86_64")]

use super::blocking::{Panel, sweep_zmm};
use super::{DotRowsU8I8, GemmU8I8};
use core::arch::x86_64::*;

/// int8 GEMM (see [`GemmU8I8`]) in the f32 kernel's blocking: up to 4 filter blocks × 6
/// rows of accumulators, each instruction consuming a quad of inputs.
#[target_feature(enable = "avx512f,avx512vnni")]
pub unsafe fn gemm_u8i8(mut g: GemmU8I8<'_>) {
    unsafe { sweep_zmm::<_, Avx512Vnni>(&mut g) }
}

/// The `vpdpbusd` zmm blocks.
struct Avx512Vnni;

impl Panel<i8, u8, i32> for Avx512Vnni {
    /// `NP` rows × `KB` filter blocks: per quad of inputs, one zmm of 16 channels × 4
    /// weights per block, the row's quad broadcast, one `vpdpbusd` per accumulator.
    #[target_feature(enable = "avx512f,avx512vnni")]
    #[inline]
    unsafe fn panel<const KB: usize, const NP: usize>(
        k_len: usize,
        u: *const i8,
        v: *const u8,
        vs: usize,
        m: *mut i32,
        ms: usize,
    ) {
        unsafe {
            let quads = k_len / 4;
            let mut acc = [[_mm512_setzero_si512(); KB]; NP];
            for j in 0..quads {
                let w: [__m512i; KB] = core::array::from_fn(|k| {
                    _mm512_loadu_si512(u.add((k * quads + j) * 64).cast())
                });
                for (p, row) in acc.iter_mut().enumerate() {
                    let x = _mm512_set1_epi32(v.add(p * vs + 4 * j).cast::<i32>().read_unaligned());
                    for (a, w) in row.iter_mut().zip(&w) {
                        *a = _mm512_dpbusd_epi32(*a, x, *w);
                    }
                }
            }
            for (p, row) in acc.iter().enumerate() {
                for (k, a) in row.iter().enumerate() {
                    _mm512_storeu_si512(m.add(p * ms + k * 16).cast(), *a);
                }
            }
        }
    }
}

/// int8 fully-connected dot products (see [`DotRowsU8I8`]): one weight row at a time
/// against up to 4 batch rows, 64 products per instruction.
#[target_feature(enable = "avx512f,avx512vnni")]
pub unsafe fn dot_rows_u8i8(d: DotRowsU8I8<'_>) {
    unsafe {
        let rows = d.w.len() / d.inp;
        for r in 0..rows {
            let w = d.w.as_ptr().add(r * d.inp);
            let mut b = 0;
            while b < d.batch {
                let x = d.x.as_ptr().add(b * d.inp);
                let y = d.y.as_mut_ptr().add(r * d.batch + b);
                match d.batch - b {
                    1 => dot_block::<1>(w, x, y, d.inp),
                    2 => dot_block::<2>(w, x, y, d.inp),
                    3 => dot_block::<3>(w, x, y, d.inp),
                    _ => dot_block::<4>(w, x, y, d.inp),
                }
                b += 4;
            }
        }
    }
}

/// One weight row against `B` consecutive batch rows; `inp` is a multiple of 64.
#[target_feature(enable = "avx512f,avx512vnni")]
#[inline]
unsafe fn dot_block<const B: usize>(w: *const i8, x: *const u8, y: *mut i32, inp: usize) {
    unsafe {
        let mut acc = [_mm512_setzero_si512(); B];
        for i in (0..inp).step_by(64) {
            let wv = _mm512_loadu_si512(w.add(i).cast());
            for (b, a) in acc.iter_mut().enumerate() {
                let xv = _mm512_loadu_si512(x.add(b * inp + i).cast());
                *a = _mm512_dpbusd_epi32(*a, xv, wv);
            }
        }
        for (b, a) in acc.iter().enumerate() {
            *y.add(b) = _mm512_reduce_add_epi32(*a);
        }
    }
}

/// `iters` × 12 independent `vpdpbusd zmm` (64 multiply-adds each): the VNNI units' peak.
#[target_feature(enable = "avx512f,avx512vnni")]
pub unsafe fn dpbusd_peak(iters: usize) -> i32 {
    let (a, b) = (_mm512_set1_epi8(1), _mm512_set1_epi8(1));
    let mut acc = [_mm512_setzero_si512(); 12];
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm512_dpbusd_epi32(*x, a, b);
        }
    }
    acc.iter()
        .map(|x| _mm512_reduce_add_epi32(*x))
        .fold(0, i32::wrapping_add)
}
