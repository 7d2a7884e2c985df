//! AVX-VNNI kernels (`vpdpbusd` on ymm, the VEX form that CPUs without AVX-512 have: 8 i32
//! lanes, each adding four u8·s8 products). Only reached through the safe wrappers in
//! `simd/int8.rs` after runtime detection.
#![cfg(target_arch = "x86_64")]

use super::blocking::{Panel, Quads256, sweep, ymm_panel};
use super::{DotRowsU8I8, GemmU8I8};
use core::arch::x86_64::*;

/// int8 GEMM (see [`GemmU8I8`]): one filter block (two ymm of 8 channels) × 6 rows = 12
/// accumulators, beside the two weights and the broadcast input in the 16 registers.
#[target_feature(enable = "avx2,avxvnni")]
pub unsafe fn gemm_u8i8(mut g: GemmU8I8<'_>) {
    unsafe {
        for kb in 0..g.kbn {
            sweep::<_, AvxVnni, 1, 6>(&mut g, kb);
        }
    }
}

/// The `vpdpbusd` ymm blocks.
struct AvxVnni;

impl Quads256 for AvxVnni {
    #[target_feature(enable = "avx2,avxvnni")]
    #[inline]
    unsafe fn dot4(acc: __m256i, x: __m256i, w: __m256i) -> __m256i {
        _mm256_dpbusd_avx_epi32(acc, x, w)
    }
}

impl Panel<i8, u8, i32> for AvxVnni {
    #[target_feature(enable = "avx2,avxvnni")]
    #[inline]
    unsafe fn panel<const KB: usize, const NP: usize>(
        k_len: usize,
        u: *const i8,
        v: *const u8,
        vs: usize,
        m: *mut i32,
        ms: usize,
    ) {
        unsafe { ymm_panel::<Self, KB, NP>(k_len, u, v, vs, m, ms) }
    }
}

/// int8 fully-connected dot products (see [`DotRowsU8I8`]): each weight row against every
/// batch row, 32 products per instruction.
#[target_feature(enable = "avx2,avxvnni")]
pub unsafe fn dot_rows_u8i8(d: DotRowsU8I8<'_>) {
    unsafe {
        for (r, w) in d.w.chunks_exact(d.inp).enumerate() {
            for b in 0..d.batch {
                let x = d.x.as_ptr().add(b * d.inp);
                let mut acc = _mm256_setzero_si256();
                for i in (0..d.inp).step_by(32) {
                    let wv = _mm256_loadu_si256(w.as_ptr().add(i).cast());
                    let xv = _mm256_loadu_si256(x.add(i).cast());
                    acc = _mm256_dpbusd_avx_epi32(acc, xv, wv);
                }
                // SAFETY: `__m256i` is 8 packed i32s.
                let lanes: [i32; 8] = core::mem::transmute(acc);
                d.y[r * d.batch + b] = lanes.iter().sum();
            }
        }
    }
}
