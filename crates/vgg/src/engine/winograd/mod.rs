//! 3×3 stride-1 pad-1 convolution by Winograd F(m×m, 3×3), m ∈ {4, 6}.
//!
//! Per block of tiles:
//! 1. input transform (parallel over tiles) into `V[p][t][c]`, one contiguous
//!    `α²·cp` row per tile so tasks own disjoint chunks;
//! 2. parallel over (64-output-channel group × tile range) tasks: α² batched
//!    GEMMs `M[t] = U[t] · V[t]` with the register-blocked micro-kernel into a
//!    task-local buffer, then the output transform with bias + ReLU (+ the
//!    following 2×2 max-pool) fused, written straight into the NHWC output.
//!
//! Splitting phase 2 over output-channel groups keeps the transformed filters
//! `U` (4–7× the size of the 3×3 weights) read once per block instead of once
//! per thread, which matters for the 512-channel layers at small batch.

mod transform;

use std::cell::RefCell;

use rayon::prelude::*;

use super::disjoint::DisjointWriter;
use super::simd::{self, Isa, SimdTask, WinoGemm};
use super::tensor::Shape;
use transform::{F43, F63, Lane, Wino, ZERO};

/// Output tile size of a Winograd variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// F(4×4, 3×3): 6×6 input tiles.
    F43,
    /// F(6×6, 3×3): 8×8 input tiles.
    F63,
}

impl Variant {
    /// Output tile edge m.
    pub fn m(self) -> usize {
        match self {
            Variant::F43 => 4,
            Variant::F63 => 6,
        }
    }

    /// Input tile edge α = m + 2.
    pub fn alpha(self) -> usize {
        self.m() + 2
    }
}

/// Filter blocks (of 16 output channels) per phase-2 task.
const GROUP_BLOCKS: usize = 4;

/// A compiled Winograd convolution layer.
pub(crate) struct WinogradConv {
    variant: Variant,
    cp: usize,
    k: usize,
    kp: usize,
    /// Transformed filters `U[t][kb][c][16]` (zero-padded channels).
    u: Vec<f32>,
    /// Bias padded to `kp` with zeros.
    bias: Vec<f32>,
    relu: bool,
}

thread_local! {
    /// Per-thread GEMM result buffer; grows once, then reused across runs.
    static M_BUF: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl WinogradConv {
    /// Transforms and packs OIHW `weight` ([k, c, 3, 3]).
    pub(crate) fn new(
        variant: Variant,
        c: usize,
        k: usize,
        weight: &[f32],
        bias: &[f32],
        relu: bool,
    ) -> Self {
        let (cp, kp) = (super::tensor::round16(c), super::tensor::round16(k));
        let t_len = variant.alpha() * variant.alpha();
        let mut u = vec![0.0f32; t_len * kp * cp];
        for ko in 0..k {
            let (kb, l) = (ko / 16, ko % 16);
            for ci in 0..c {
                let g = &weight[(ko * c + ci) * 9..(ko * c + ci) * 9 + 9];
                for (t, val) in transform::filter_transform(variant.m(), g)
                    .into_iter()
                    .enumerate()
                {
                    u[((t * (kp / 16) + kb) * cp + ci) * 16 + l] = val;
                }
            }
        }
        let mut b = vec![0.0; kp];
        b[..k].copy_from_slice(bias);
        WinogradConv {
            variant,
            cp,
            k,
            kp,
            u,
            bias: b,
            relu,
        }
    }

    /// Output shape for input shape `s` (`pool`: fused 2×2 max-pool).
    pub(crate) fn out_shape(&self, s: Shape, pool: bool) -> Shape {
        let o = s.with_channels(self.k);
        if pool { o.pooled() } else { o }
    }

    fn positions(&self) -> usize {
        self.variant.alpha() * self.variant.alpha()
    }

    fn tile_grid(&self, s: Shape) -> (usize, usize) {
        (
            s.h.div_ceil(self.variant.m()),
            s.w.div_ceil(self.variant.m()),
        )
    }

    /// Tiles per block: enough that a block's `V` (~budget bytes) amortises one
    /// pass over `U`; the budget grows with `U` so big layers stream `U` ≤ 2×.
    fn block_tiles(&self, s: Shape) -> usize {
        let (ty, tx) = self.tile_grid(s);
        let tiles = s.n * ty * tx;
        let budget = (self.u.len() * 4 / 2).clamp(2 << 20, 16 << 20);
        let per_tile = self.positions() * self.cp * 4;
        let max = (budget / per_tile).max(1);
        let blocks = tiles.div_ceil(max);
        tiles.div_ceil(blocks)
    }

    /// Length of the shared `V` scratch buffer this layer needs for input `s`.
    pub(crate) fn scratch_len(&self, s: Shape) -> usize {
        self.block_tiles(s) * self.positions() * self.cp
    }

    /// Human-readable summary for `Plan::describe`.
    pub(crate) fn describe(&self, pool: bool) -> String {
        let alg = match self.variant {
            Variant::F43 => "winograd F(4x4,3x3)",
            Variant::F63 => "winograd F(6x6,3x3)",
        };
        let mut fused = String::from("bias");
        if self.relu {
            fused.push_str("+relu");
        }
        if pool {
            fused.push_str("+maxpool2x2");
        }
        format!("{alg}, fused {fused}")
    }

    /// Convolves `src` (shape `s`) into `dst` (shape `self.out_shape(s, pool)`),
    /// using `v_buf` (≥ `scratch_len(s)`) for transformed input tiles.
    pub(crate) fn run(
        &self,
        isa: Isa,
        src: &[f32],
        s: Shape,
        dst: &mut [f32],
        v_buf: &mut [f32],
        pool: bool,
    ) {
        assert_eq!(s.cp, self.cp, "input channel stride mismatch");
        let os = self.out_shape(s, pool);
        let (ty, tx) = self.tile_grid(s);
        let tiles = s.n * ty * tx;
        let pb = self.block_tiles(s);
        let row = self.positions() * self.cp;
        let out = DisjointWriter::new(&mut dst[..os.len()]);
        let mut p0 = 0;
        while p0 < tiles {
            let np = pb.min(tiles - p0);
            let v = &mut v_buf[..np * row];
            self.input_phase(isa, src, s, p0, v);
            self.gemm_output_phase(isa, v, (s, os, pool), p0, np, &out);
            p0 += np;
        }
    }

    /// Phase 1: transformed input tiles `p0..p0+np` into `v`.
    fn input_phase(&self, isa: Isa, src: &[f32], s: Shape, p0: usize, v: &mut [f32]) {
        let row = self.positions() * self.cp;
        let chunk = 4;
        let grid = self.tile_grid(s);
        v.par_chunks_mut(chunk * row)
            .enumerate()
            .for_each(|(i, v)| {
                let task = InputTiles {
                    src,
                    s,
                    grid,
                    first: p0 + i * chunk,
                    v,
                };
                match self.variant {
                    Variant::F43 => simd::run_task(isa, task.typed::<F43>()),
                    Variant::F63 => simd::run_task(isa, task.typed::<F63>()),
                }
            });
    }

    /// Phase 2: batched GEMMs and fused output transform, parallel over
    /// (output-channel group × tile range).
    fn gemm_output_phase(
        &self,
        isa: Isa,
        v: &[f32],
        (s, os, pool): (Shape, Shape, bool),
        p0: usize,
        np: usize,
        out: &DisjointWriter<'_>,
    ) {
        let kblocks = self.kp / 16;
        let groups = kblocks.div_ceil(GROUP_BLOCKS);
        let splits = (2 * rayon::current_num_threads()).div_ceil(groups).min(np);
        let per = np.div_ceil(splits);
        let t_len = self.positions();
        (0..groups * splits).into_par_iter().for_each(|job| {
            let (g, sp) = (job / splits, job % splits);
            let (a, b) = (sp * per, ((sp + 1) * per).min(np));
            if a >= b {
                return;
            }
            let kb0 = g * GROUP_BLOCKS;
            let kbn = GROUP_BLOCKS.min(kblocks - kb0);
            let n = b - a;
            M_BUF.with(|m| {
                let mut m = m.borrow_mut();
                let len = t_len * n * kbn * 16;
                if m.len() < len {
                    m.resize(len, 0.0);
                }
                let m = &mut m[..len];
                for (t, mt) in m.chunks_exact_mut(n * kbn * 16).enumerate() {
                    let u0 = (t * kblocks + kb0) * self.cp * 16;
                    simd::wino_gemm(
                        isa,
                        WinoGemm {
                            c_len: self.cp,
                            kbn,
                            np: n,
                            u: &self.u[u0..u0 + kbn * self.cp * 16],
                            v: &v[a * t_len * self.cp + t * self.cp..],
                            v_stride: t_len * self.cp,
                            m: mt,
                        },
                    );
                }
                let task = OutputTiles {
                    m,
                    n,
                    kb0,
                    kbn,
                    first: p0 + a,
                    grid: self.tile_grid(s),
                    os,
                    bias: &self.bias,
                    relu: self.relu,
                    pool,
                    out,
                };
                match self.variant {
                    Variant::F43 => simd::run_task(isa, task.typed::<F43>()),
                    Variant::F63 => simd::run_task(isa, task.typed::<F63>()),
                }
            });
        });
    }
}

/// Splits a global tile index into (image, tile row, tile column).
#[inline(always)]
fn tile_pos(p: usize, (ty, tx): (usize, usize)) -> (usize, usize, usize) {
    (p / (ty * tx), (p / tx) % ty, p % tx)
}

/// Phase-1 task: input transform of consecutive tiles starting at `first`.
struct InputTiles<'a> {
    src: &'a [f32],
    s: Shape,
    grid: (usize, usize),
    first: usize,
    v: &'a mut [f32],
}

impl<'a> InputTiles<'a> {
    fn typed<W: Wino>(self) -> Typed<Self, W> {
        Typed(self, std::marker::PhantomData)
    }
}

/// A task bound to a Winograd variant at compile time (so loops over α unroll).
struct Typed<T, W>(T, std::marker::PhantomData<W>);

impl<W: Wino> SimdTask for Typed<InputTiles<'_>, W> {
    type Output = ();

    // The column pass indexes `d[y][x]` across rows; an iterator over `d` would not help.
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    fn run<const FMA: bool>(self) {
        let InputTiles {
            src,
            s,
            grid,
            first,
            v,
        } = self.0;
        let (a, m) = (W::A, W::M);
        let row = a * a * s.cp;
        for (i, vt) in v.chunks_exact_mut(row).enumerate() {
            let (n, ty, tx) = tile_pos(first + i, grid);
            let (y0, x0) = ((ty * m) as isize - 1, (tx * m) as isize - 1);
            for cb in 0..s.cp / 16 {
                let mut d = [[ZERO; 8]; 8];
                for (y, drow) in d.iter_mut().enumerate().take(a) {
                    let yy = y0 + y as isize;
                    if yy < 0 || yy >= s.h as isize {
                        continue;
                    }
                    for (x, lane) in drow.iter_mut().enumerate().take(a) {
                        let xx = x0 + x as isize;
                        if xx >= 0 && xx < s.w as isize {
                            let o = s.at(n, yy as usize, xx as usize) + cb * 16;
                            *lane = src[o..o + 16].try_into().unwrap();
                        }
                    }
                }
                for drow in d.iter_mut().take(a) {
                    *drow = W::input_1d(drow);
                }
                for x in 0..a {
                    let col: [Lane; 8] =
                        std::array::from_fn(|y| if y < a { d[y][x] } else { ZERO });
                    let r = W::input_1d(&col);
                    for (y, lane) in r.iter().enumerate().take(a) {
                        let o = (y * a + x) * s.cp + cb * 16;
                        vt[o..o + 16].copy_from_slice(lane);
                    }
                }
            }
        }
    }
}

/// Phase-2 output task: inverse transform of `n` tiles for filter blocks
/// `kb0..kb0+kbn`, bias, optional ReLU and 2×2 max-pool, stored into `out`.
struct OutputTiles<'a, 'w> {
    /// GEMM results `M[t][p][kbn·16]`.
    m: &'a [f32],
    n: usize,
    kb0: usize,
    kbn: usize,
    first: usize,
    grid: (usize, usize),
    os: Shape,
    bias: &'a [f32],
    relu: bool,
    pool: bool,
    out: &'a DisjointWriter<'w>,
}

impl<'a, 'w> OutputTiles<'a, 'w> {
    fn typed<W: Wino>(self) -> Typed<Self, W> {
        Typed(self, std::marker::PhantomData)
    }

    /// Bias + optional ReLU on one lane.
    #[inline(always)]
    fn activate(&self, x: &Lane, bias: &Lane) -> Lane {
        let mut r = ZERO;
        for l in 0..16 {
            let y = x[l] + bias[l];
            r[l] = if self.relu { y.max(0.0) } else { y };
        }
        r
    }

    /// Stores an `m×m` output tile whose top-left pixel is (y0, x0).
    #[inline(always)]
    fn store(&self, y: &[[Lane; 8]; 8], m: usize, n: usize, y0: usize, x0: usize, ch: usize) {
        let os = self.os;
        if self.pool {
            for py in 0..m / 2 {
                for px in 0..m / 2 {
                    let (oy, ox) = (y0 / 2 + py, x0 / 2 + px);
                    if oy >= os.h || ox >= os.w {
                        continue;
                    }
                    let mut r = y[2 * py][2 * px];
                    for (dy, dx) in [(0, 1), (1, 0), (1, 1)] {
                        let z = &y[2 * py + dy][2 * px + dx];
                        for l in 0..16 {
                            r[l] = r[l].max(z[l]);
                        }
                    }
                    // SAFETY: each (pixel, channel block) belongs to exactly one task.
                    unsafe { self.out.write(os.at(n, oy, ox) + ch, &r) };
                }
            }
        } else {
            for (dy, yrow) in y.iter().enumerate().take(m) {
                for (dx, lane) in yrow.iter().enumerate().take(m) {
                    let (oy, ox) = (y0 + dy, x0 + dx);
                    if oy < os.h && ox < os.w {
                        // SAFETY: each (pixel, channel block) belongs to exactly one task.
                        unsafe { self.out.write(os.at(n, oy, ox) + ch, lane) };
                    }
                }
            }
        }
    }
}

impl<W: Wino> SimdTask for Typed<OutputTiles<'_, '_>, W> {
    type Output = ();

    #[inline(always)]
    fn run<const FMA: bool>(self) {
        let o = &self.0;
        let (a, mm) = (W::A, W::M);
        let stride = o.n * o.kbn * 16;
        for p in 0..o.n {
            let (n, ty, tx) = tile_pos(o.first + p, o.grid);
            for kb in 0..o.kbn {
                let mut t = [[ZERO; 8]; 8];
                for (i, trow) in t.iter_mut().enumerate().take(a) {
                    let mut mrow = [ZERO; 8];
                    for (j, lane) in mrow.iter_mut().enumerate().take(a) {
                        let off = (i * a + j) * stride + (p * o.kbn + kb) * 16;
                        *lane = o.m[off..off + 16].try_into().unwrap();
                    }
                    *trow = W::output_1d(&mrow);
                }
                let ch = (o.kb0 + kb) * 16;
                let bias: Lane = o.bias[ch..ch + 16].try_into().unwrap();
                let mut y = [[ZERO; 8]; 8];
                for x in 0..mm {
                    let col: [Lane; 8] =
                        std::array::from_fn(|i| if i < a { t[i][x] } else { ZERO });
                    let r = W::output_1d(&col);
                    for (yy, lane) in r.iter().enumerate().take(mm) {
                        y[yy][x] = o.activate(lane, &bias);
                    }
                }
                o.store(&y, mm, n, ty * mm, tx * mm, ch);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_tiles_cover_all_tiles() {
        let w = vec![0.01f32; 512 * 512 * 9];
        let conv = WinogradConv::new(Variant::F43, 512, 512, &w, &[0.0; 512], true);
        let s = Shape::new(8, 28, 28, 512);
        let pb = conv.block_tiles(s);
        assert!((1..=8 * 49).contains(&pb));
        assert_eq!(conv.scratch_len(s), pb * 36 * 512);
    }
}
