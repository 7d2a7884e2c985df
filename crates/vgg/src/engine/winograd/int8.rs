//! Winograd F(2×2, 3×3) in int8: u8 × s8 products with i32 sums in the Winograd domain,
//! 2.25× fewer than the direct convolution's.
//!
//! A transformed tile `V = Bᵀ d B` is signed and up to 4× wider than `d`, so one
//! calibrated activation scale would waste two of its eight bits. Each tile instead gets
//! its own scale per position, over its channels, taken from the tile as it is
//! transformed: the GEMM sums over channels only, so a scale that is constant over them
//! factors out of the sum (`M = s_v · s_u · Σ_c Vq·Uq`). On one layer this loses what the
//! direct int8 convolution does (`scripts/int8_winograd_error.py`: relative RMS error
//! 1.06% against 0.92% at 64 channels, 1.63% against 1.70% with the AVX2 path's 7-bit
//! weights). F(4,3)'s larger transform entries lose 5–10%, which is why int8 runs F(2,3).
//!
//! The products use the direct kernel's u8 × s8 GEMM: a tile value `Vq` in ±127 is stored
//! as the u8 `Vq + 128`, and what the offset adds, `128 · Σ_c Uq`, is subtracted from each
//! sum before it is rescaled.

use std::cell::RefCell;

use rayon::prelude::*;

use super::super::quant::quantize_rows;
use super::super::simd::{self, GemmU8I8, Isa, ROW_OFFSET, SimdTask};
use super::super::tensor::{ScratchBuffers, Shape};
use super::{INPUT_CHUNK, Job, WinogradConv};

/// Transformed filters in s8, one scale per position and output channel.
pub(super) struct Int8Filters {
    /// `u[t][kb][c/4][16][4]`: per position and block of 16 output channels, packed by
    /// quads of input channels for [`GemmU8I8`].
    u: Vec<i8>,
    /// `scale[t·kp + k]`.
    scale: Vec<f32>,
    /// `offset[t·kp + k] = 128 · Σ_c u`: what the tiles' u8 offset adds to a sum.
    offset: Vec<i32>,
    /// The weights' range, ±this (see [`simd::gemm_weight_limit`]).
    limit: i8,
}

impl Int8Filters {
    /// Quantises the f32 transformed filters `U[t][kb][c][16]` (`t_len` positions, `cp`
    /// input and `kp` output channels).
    pub(super) fn new(u: &[f32], t_len: usize, cp: usize, kp: usize) -> Self {
        let limit = simd::gemm_weight_limit(Isa::detect());
        // One row of `cp` weights per (position, output channel).
        let mut rows = vec![0.0f32; u.len()];
        for (r, row) in rows.chunks_exact_mut(cp).enumerate() {
            let (t, k) = (r / kp, r % kp);
            let block = &u[(t * kp / 16 + k / 16) * cp * 16..];
            for (c, w) in row.iter_mut().enumerate() {
                *w = block[c * 16 + k % 16];
            }
        }
        let (q, scale) = quantize_rows(&rows, cp, limit);
        let mut packed = vec![0i8; u.len()];
        let mut offset = Vec::with_capacity(t_len * kp);
        for (r, row) in q.chunks_exact(cp).enumerate() {
            let (t, k) = (r / kp, r % kp);
            let block = &mut packed[(t * kp / 16 + k / 16) * cp * 16..];
            for (c, w) in row.iter().enumerate() {
                block[(c / 4 * 16 + k % 16) * 4 + c % 4] = *w;
            }
            let sum: i32 = row.iter().map(|w| i32::from(*w)).sum();
            offset.push(i32::from(ROW_OFFSET) * sum);
        }
        Int8Filters {
            u: packed,
            scale,
            offset,
            limit,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.u.len()
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "u8×s8→i32 (tiles scaled per tile and position, weights in ±{} per position and channel)",
            self.limit
        )
    }
}

thread_local! {
    /// Per-thread f32 tiles of one phase-1 task, before they are quantised.
    static TILE_BUF: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Per-thread i32 sums of one position's GEMM.
    static SUM_BUF: RefCell<Vec<i32>> = const { RefCell::new(Vec::new()) };
}

impl WinogradConv {
    /// [`WinogradConv::run`] with int8 filters `f`: tiles transformed in f32 and quantised
    /// per tile and position into `scratch.u8` (their scales in `scratch.f32`), the GEMMs
    /// in u8 × s8, the sums rescaled to f32 for the shared output transform.
    pub(super) fn run_int8(
        &self,
        isa: Isa,
        f: &Int8Filters,
        (src, s): (&[f32], Shape),
        dst: &mut [f32],
        scratch: &mut ScratchBuffers,
        pool: bool,
    ) -> Result<(), super::Overflow> {
        debug_assert!(
            f.limit <= simd::gemm_weight_limit(isa),
            "weights too wide for {isa:?}"
        );
        let t_len = self.positions();
        let row = t_len * self.cp;
        let kblocks = self.kp / 16;
        self.for_each_block(s, dst, pool, |p0, np, out| {
            let v = &mut scratch.u8[..np * row];
            let v_scale = &mut scratch.f32[..np * t_len];
            v.par_chunks_mut(INPUT_CHUNK * row)
                .zip(v_scale.par_chunks_mut(INPUT_CHUNK * t_len))
                .enumerate()
                .for_each(|(i, (v, v_scale))| {
                    TILE_BUF.with(|tiles| {
                        let mut tiles = tiles.borrow_mut();
                        if tiles.len() < v.len() {
                            tiles.resize(v.len(), 0.0);
                        }
                        let tiles = &mut tiles[..v.len()];
                        self.input_tiles(isa, src, s, p0 + i * INPUT_CHUNK, tiles);
                        simd::quantize_rows_offset(isa, tiles, self.cp, v, v_scale);
                    });
                });
            let (v, v_scale) = (&*v, &*v_scale);
            let products = |job: Job, m: &mut [f32]| {
                let stride = job.n * job.kbn * 16;
                SUM_BUF.with(|sums| {
                    let mut sums = sums.borrow_mut();
                    if sums.len() < stride {
                        sums.resize(stride, 0);
                    }
                    let sums = &mut sums[..stride];
                    for (t, mt) in m.chunks_exact_mut(stride).enumerate() {
                        let u0 = (t * kblocks + job.kb0) * self.cp * 16;
                        let g = GemmU8I8 {
                            k_len: self.cp,
                            kbn: job.kbn,
                            np: job.n,
                            u: &f.u[u0..u0 + job.kbn * self.cp * 16],
                            v: &v[job.a * row + t * self.cp..],
                            v_stride: row,
                            m: sums,
                        };
                        simd::gemm_u8i8(isa, g);
                        let k0 = t * self.kp + job.kb0 * 16;
                        let filters = (
                            &f.scale[k0..k0 + job.kbn * 16],
                            &f.offset[k0..k0 + job.kbn * 16],
                        );
                        let tiles = (job.a..job.a + job.n).map(|p| v_scale[p * t_len + t]);
                        simd::run_task(isa, Rescale(sums, filters, tiles, mt));
                    }
                });
            };
            self.gemm_output_phase(isa, (s, pool), p0, np, out, products);
        })
    }
}

/// i32 sums of one position → f32: `(sum − offset[k]) · filter_scale[k] · tile_scale`,
/// rows of `scale.len()` channels, one row per tile.
struct Rescale<'a, T>(&'a [i32], (&'a [f32], &'a [i32]), T, &'a mut [f32]);

impl<T: Iterator<Item = f32>> SimdTask for Rescale<'_, T> {
    type Output = ();

    #[inline(always)]
    fn run<const FMA: bool>(self) {
        let Rescale(sums, (scale, offset), tiles, out) = self;
        let width = scale.len();
        let rows = sums.chunks_exact(width).zip(out.chunks_exact_mut(width));
        for ((sums, out), tile_scale) in rows.zip(tiles) {
            for (((o, s), f), z) in out.iter_mut().zip(sums).zip(scale).zip(offset) {
                *o = (s - z) as f32 * (f * tile_scale);
            }
        }
    }
}
