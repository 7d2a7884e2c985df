//! 3×3 stride-1 pad-1 convolution by Winograd F(m×m, 3×3), m ∈ {2, 4, 6}.
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
//!
//! In bf16 ([`Precision::Bf16`]) `U` and `V` are stored as bf16 (rounded after the
//! transforms, which stay f32) and the GEMMs accumulate their products in f32, so the
//! precision lost is one rounding of each transformed operand; `M` and the output
//! transform stay f32.

mod int8;
mod transform;

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use super::Precision;
use super::disjoint::DisjointWriter;
use super::simd::{self, Bf16, Isa, SimdTask, WinoGemm};
use super::tensor::{Scratch, ScratchBuffers, Shape, zero_padded};
use int8::Int8Filters;
use transform::{F23, F43, F63, Lane, Wino, ZERO};

/// Output tile size of a Winograd variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// F(2×2, 3×3): 4×4 input tiles.
    F23,
    /// F(4×4, 3×3): 6×6 input tiles.
    F43,
    /// F(6×6, 3×3): 8×8 input tiles.
    F63,
}

impl Variant {
    /// Output tile edge m.
    pub fn m(self) -> usize {
        match self {
            Variant::F23 => 2,
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

/// Tiles per phase-1 task.
const INPUT_CHUNK: usize = 4;

/// Transformed filters in the layer's precision (zero-padded channels).
enum Filters {
    /// `U[t][kb][c][16]`.
    F32(Vec<f32>),
    /// `U[t][kb][c/2][16][2]`: channel pairs interleaved, as `vdpbf16ps` reads them.
    Bf16(Vec<Bf16>),
    /// s8 per position and output channel (see [`int8`]).
    Int8(Int8Filters),
}

/// A compiled Winograd convolution layer.
pub(crate) struct WinogradConv {
    variant: Variant,
    cp: usize,
    k: usize,
    kp: usize,
    u: Filters,
    /// Bias padded to `kp` with zeros.
    bias: Vec<f32>,
    relu: bool,
}

thread_local! {
    /// Per-thread GEMM result buffer; grows once, then reused across runs.
    static M_BUF: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl WinogradConv {
    /// Transforms and packs OIHW `weight` ([k, c, 3, 3]) in `precision`.
    pub(crate) fn new(
        variant: Variant,
        precision: Precision,
        (c, k): (usize, usize),
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
        let u = match precision {
            Precision::F32 => Filters::F32(u),
            Precision::Bf16 => Filters::Bf16(pair_channels(&u, cp)),
            Precision::Int8 => Filters::Int8(Int8Filters::new(&u, t_len, cp, kp)),
        };
        WinogradConv {
            variant,
            cp,
            k,
            kp,
            u,
            bias: zero_padded(bias, kp),
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
        let (u_len, elem) = match &self.u {
            Filters::F32(u) => (u.len(), size_of::<f32>()),
            Filters::Bf16(u) => (u.len(), size_of::<Bf16>()),
            Filters::Int8(u) => (u.len(), size_of::<u8>()),
        };
        let budget = (u_len * elem / 2).clamp(2 << 20, 16 << 20);
        let per_tile = self.positions() * self.cp * elem;
        let max = (budget / per_tile).max(1);
        let blocks = tiles.div_ceil(max);
        tiles.div_ceil(blocks)
    }

    /// The shared `V` scratch (of the layer's element type; in int8 also one f32 scale per
    /// tile and position) this layer needs for input `s`.
    pub(crate) fn scratch_len(&self, s: Shape) -> Scratch<usize> {
        let tiles = self.block_tiles(s);
        let len = tiles * self.positions() * self.cp;
        let none = Scratch::default();
        match self.u {
            Filters::F32(_) => Scratch { f32: len, ..none },
            Filters::Bf16(_) => Scratch { bf16: len, ..none },
            Filters::Int8(_) => Scratch {
                f32: tiles * self.positions(),
                u8: len,
                ..none
            },
        }
    }

    /// Human-readable summary for `Plan::describe`.
    pub(crate) fn describe(&self, pool: bool) -> String {
        let alg = match self.variant {
            Variant::F23 => "winograd F(2x2,3x3)",
            Variant::F43 => "winograd F(4x4,3x3)",
            Variant::F63 => "winograd F(6x6,3x3)",
        };
        let products = match &self.u {
            Filters::F32(_) => "f32".to_string(),
            Filters::Bf16(_) => "bf16×bf16→f32".to_string(),
            Filters::Int8(u) => u.describe(),
        };
        let mut fused = String::from("bias");
        if self.relu {
            fused.push_str("+relu");
        }
        if pool {
            fused.push_str("+maxpool2x2");
        }
        format!("{alg} {products}, fused {fused}")
    }

    /// Convolves `src` (shape `s`) into `dst` (shape `self.out_shape(s, pool)`),
    /// using `scratch` (≥ `scratch_len(s)`) for transformed input tiles.
    pub(crate) fn run(
        &self,
        isa: Isa,
        src: &[f32],
        s: Shape,
        dst: &mut [f32],
        scratch: &mut ScratchBuffers,
        pool: bool,
    ) -> Result<(), Overflow> {
        match &self.u {
            Filters::F32(u) => self.run_typed(isa, u, (src, s), dst, &mut scratch.f32, pool),
            Filters::Bf16(u) => self.run_typed(isa, u, (src, s), dst, &mut scratch.bf16, pool),
            Filters::Int8(u) => self.run_int8(isa, u, (src, s), dst, scratch, pool),
        }
    }

    /// [`Self::run`] with filters `u` and tiles `v_buf` of element type `E`.
    fn run_typed<E: TileElem>(
        &self,
        isa: Isa,
        u: &[E],
        (src, s): (&[f32], Shape),
        dst: &mut [f32],
        v_buf: &mut [E],
        pool: bool,
    ) -> Result<(), Overflow> {
        let row = self.positions() * self.cp;
        let kblocks = self.kp / 16;
        self.for_each_block(s, dst, pool, |p0, np, out| {
            let v = &mut v_buf[..np * row];
            self.input_phase(isa, src, s, p0, v);
            let v = &*v;
            let products = |job: Job, m: &mut [f32]| {
                let stride = job.n * job.kbn * 16;
                for (t, mt) in m.chunks_exact_mut(stride).enumerate() {
                    let u0 = (t * kblocks + job.kb0) * self.cp * 16;
                    E::gemm(
                        isa,
                        WinoGemm {
                            c_len: self.cp,
                            kbn: job.kbn,
                            np: job.n,
                            u: &u[u0..u0 + job.kbn * self.cp * 16],
                            v: &v[job.a * row + t * self.cp..],
                            v_stride: row,
                            m: mt,
                        },
                    );
                }
            };
            self.gemm_output_phase(isa, (s, pool), p0, np, out, products);
        })
    }

    /// Calls `block(p0, np, out)` for each block of tiles `p0..p0+np` in order, `out` the
    /// output (shape `self.out_shape(s, pool)`) that the block's tasks write; an error if
    /// any output value, before the activation, was not finite.
    fn for_each_block(
        &self,
        s: Shape,
        dst: &mut [f32],
        pool: bool,
        mut block: impl FnMut(usize, usize, &Sink<'_>),
    ) -> Result<(), Overflow> {
        assert_eq!(s.cp, self.cp, "input channel stride mismatch");
        let os = self.out_shape(s, pool);
        let (ty, tx) = self.tile_grid(s);
        let tiles = s.n * ty * tx;
        let pb = self.block_tiles(s);
        let out = Sink {
            out: DisjointWriter::new(&mut dst[..os.len()]),
            overflowed: AtomicBool::new(false),
        };
        let mut p0 = 0;
        while p0 < tiles {
            let np = pb.min(tiles - p0);
            block(p0, np, &out);
            p0 += np;
        }
        match out.overflowed.into_inner() {
            true => Err(Overflow),
            false => Ok(()),
        }
    }

    /// Phase 1: transformed input tiles `p0..p0+np` into `v`.
    fn input_phase<E: TileElem>(&self, isa: Isa, src: &[f32], s: Shape, p0: usize, v: &mut [E]) {
        let row = self.positions() * self.cp;
        v.par_chunks_mut(INPUT_CHUNK * row)
            .enumerate()
            .for_each(|(i, v)| self.input_tiles(isa, src, s, p0 + i * INPUT_CHUNK, v));
    }

    /// The input transform of tiles `first..` (as many as `v` has rows) into `v`.
    fn input_tiles<E: TileElem>(&self, isa: Isa, src: &[f32], s: Shape, first: usize, v: &mut [E]) {
        let task = InputTiles {
            src,
            s,
            grid: self.tile_grid(s),
            first,
            v,
        };
        match self.variant {
            Variant::F23 => simd::run_task(isa, task.typed::<F23>()),
            Variant::F43 => simd::run_task(isa, task.typed::<F43>()),
            Variant::F63 => simd::run_task(isa, task.typed::<F63>()),
        }
    }

    /// Phase 2, parallel over (output-channel group × tile range) jobs: `products` fills
    /// each job's `M[t][p][kbn·16]`, then the fused output transform writes it to `out`.
    fn gemm_output_phase(
        &self,
        isa: Isa,
        (s, pool): (Shape, bool),
        p0: usize,
        np: usize,
        out: &Sink<'_>,
        products: impl Fn(Job, &mut [f32]) + Sync,
    ) {
        let kblocks = self.kp / 16;
        let groups = kblocks.div_ceil(GROUP_BLOCKS);
        let splits = (2 * rayon::current_num_threads()).div_ceil(groups).min(np);
        let per = np.div_ceil(splits);
        let t_len = self.positions();
        let os = self.out_shape(s, pool);
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
                products(Job { a, n, kb0, kbn }, m);
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
                    Variant::F23 => simd::run_task(isa, task.typed::<F23>()),
                    Variant::F43 => simd::run_task(isa, task.typed::<F43>()),
                    Variant::F63 => simd::run_task(isa, task.typed::<F63>()),
                }
            });
        });
    }
}

/// One phase-2 job: tiles `a..a+n` of the block, filter blocks `kb0..kb0+kbn`.
#[derive(Clone, Copy)]
struct Job {
    a: usize,
    n: usize,
    kb0: usize,
    kbn: usize,
}

/// Repacks f32 filters `U[t][kb][c][16]` as bf16 `U[t][kb][c/2][16][2]` (`cp` even).
fn pair_channels(u: &[f32], cp: usize) -> Vec<Bf16> {
    let mut out = vec![Bf16::default(); u.len()];
    for (block, dst) in u.chunks_exact(cp * 16).zip(out.chunks_exact_mut(cp * 16)) {
        for (j, pair) in dst.chunks_exact_mut(32).enumerate() {
            for (l, lanes) in pair.chunks_exact_mut(2).enumerate() {
                lanes[0] = Bf16::from_f32(block[2 * j * 16 + l]);
                lanes[1] = Bf16::from_f32(block[(2 * j + 1) * 16 + l]);
            }
        }
    }
    out
}

/// The element type of transformed tiles and filters: how a transformed value is stored
/// and which micro-kernel multiplies them (both accumulate in f32).
trait TileElem: Copy + Send + Sync {
    /// Stores one 16-lane transformed value into `dst[..16]`.
    fn store(dst: &mut [Self], lane: &Lane);
    fn gemm(isa: Isa, g: WinoGemm<'_, Self>);
}

impl TileElem for f32 {
    #[inline(always)]
    fn store(dst: &mut [f32], lane: &Lane) {
        dst[..16].copy_from_slice(lane);
    }

    fn gemm(isa: Isa, g: WinoGemm<'_, f32>) {
        simd::wino_gemm(isa, g);
    }
}

impl TileElem for Bf16 {
    #[inline(always)]
    fn store(dst: &mut [Bf16], lane: &Lane) {
        for (d, x) in dst[..16].iter_mut().zip(lane) {
            *d = Bf16::from_f32(*x);
        }
    }

    fn gemm(isa: Isa, g: WinoGemm<'_, Bf16>) {
        simd::wino_gemm_bf16(isa, g);
    }
}

/// Splits a global tile index into (image, tile row, tile column).
#[inline(always)]
fn tile_pos(p: usize, (ty, tx): (usize, usize)) -> (usize, usize, usize) {
    (p / (ty * tx), (p / tx) % ty, p % tx)
}

/// Phase-1 task: input transform of consecutive tiles starting at `first`.
struct InputTiles<'a, E> {
    src: &'a [f32],
    s: Shape,
    grid: (usize, usize),
    first: usize,
    v: &'a mut [E],
}

impl<E> InputTiles<'_, E> {
    fn typed<W: Wino>(self) -> Typed<Self, W> {
        Typed(self, std::marker::PhantomData)
    }
}

/// A task bound to a Winograd variant at compile time (so loops over α unroll).
struct Typed<T, W>(T, std::marker::PhantomData<W>);

impl<W: Wino, E: TileElem> SimdTask for Typed<InputTiles<'_, E>, W> {
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
        // Every tile overwrites the leading α×α lanes, the only ones read: zeroed once, not
        // per tile and channel block (that 4 KB memset ran more instructions than the loads).
        let mut d = [[ZERO; 8]; 8];
        for (i, vt) in v.chunks_exact_mut(row).enumerate() {
            let (n, ty, tx) = tile_pos(first + i, grid);
            let (y0, x0) = ((ty * m) as isize - 1, (tx * m) as isize - 1);
            for cb in 0..s.cp / 16 {
                for (y, drow) in d.iter_mut().enumerate().take(a) {
                    let yy = y0 + y as isize;
                    let inside = yy >= 0 && yy < s.h as isize;
                    for (x, lane) in drow.iter_mut().enumerate().take(a) {
                        let xx = x0 + x as isize;
                        *lane = if inside && xx >= 0 && xx < s.w as isize {
                            let o = s.at(n, yy as usize, xx as usize) + cb * 16;
                            src[o..o + 16].try_into().unwrap()
                        } else {
                            ZERO
                        };
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
                        E::store(&mut vt[(y * a + x) * s.cp + cb * 16..], lane);
                    }
                }
            }
        }
    }
}

/// The output that phase 2's tasks write, and whether any of them met a value that is not
/// finite.
struct Sink<'w> {
    out: DisjointWriter<'w>,
    overflowed: AtomicBool,
}

/// A Winograd convolution met a value that is not finite: its transforms overflowed
/// float32 (their sums reach ~100× the input's magnitude, which a direct convolution of
/// the same input may not), which the ReLU would otherwise turn into 0. Outputs past the
/// map's edge, computed and not stored, count too: they come from the same inputs.
#[derive(Debug)]
pub(crate) struct Overflow;

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
    out: &'a Sink<'w>,
}

impl<'a, 'w> OutputTiles<'a, 'w> {
    fn typed<W: Wino>(self) -> Typed<Self, W> {
        Typed(self, std::marker::PhantomData)
    }

    /// Bias + optional ReLU on one lane; `seen` stays 0 while every value is finite.
    #[inline(always)]
    fn activate(&self, x: &Lane, bias: &Lane, seen: &mut Lane) -> Lane {
        let mut r = ZERO;
        for l in 0..16 {
            let y = x[l] + bias[l];
            // y·0 is ±0 for a finite y and NaN for an infinite or NaN one, which `max`
            // would hide: the sum keeps the NaN for a vector multiply and add.
            seen[l] += y * 0.0;
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
                    unsafe { self.out.out.write(os.at(n, oy, ox) + ch, &r) };
                }
            }
        } else {
            for (dy, yrow) in y.iter().enumerate().take(m) {
                for (dx, lane) in yrow.iter().enumerate().take(m) {
                    let (oy, ox) = (y0 + dy, x0 + dx);
                    if oy < os.h && ox < os.w {
                        // SAFETY: each (pixel, channel block) belongs to exactly one task.
                        unsafe { self.out.out.write(os.at(n, oy, ox) + ch, lane) };
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
        // As in the input task: each tile overwrites the lanes it reads (α×α of `t` and
        // `mrow`, m×m of `y`), so they are zeroed once.
        let (mut t, mut mrow, mut y) = ([[ZERO; 8]; 8], [ZERO; 8], [[ZERO; 8]; 8]);
        let mut seen = ZERO;
        for p in 0..o.n {
            let (n, ty, tx) = tile_pos(o.first + p, o.grid);
            for kb in 0..o.kbn {
                for (i, trow) in t.iter_mut().enumerate().take(a) {
                    for (j, lane) in mrow.iter_mut().enumerate().take(a) {
                        let off = (i * a + j) * stride + (p * o.kbn + kb) * 16;
                        *lane = o.m[off..off + 16].try_into().unwrap();
                    }
                    *trow = W::output_1d(&mrow);
                }
                let ch = (o.kb0 + kb) * 16;
                let bias: Lane = o.bias[ch..ch + 16].try_into().unwrap();
                for x in 0..mm {
                    let col: [Lane; 8] =
                        std::array::from_fn(|i| if i < a { t[i][x] } else { ZERO });
                    let r = W::output_1d(&col);
                    for (yy, lane) in r.iter().enumerate().take(mm) {
                        y[yy][x] = o.activate(lane, &bias, &mut seen);
                    }
                }
                o.store(&y, mm, n, ty * mm, tx * mm, ch);
            }
        }
        if seen.iter().any(|v| v.is_nan()) {
            o.out.overflowed.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_tiles_cover_all_tiles() {
        let w = vec![0.01f32; 512 * 512 * 9];
        let s = Shape::new(8, 28, 28, 512);
        for precision in [Precision::F32, Precision::Bf16] {
            let conv =
                WinogradConv::new(Variant::F43, precision, (512, 512), &w, &[0.0; 512], true);
            let pb = conv.block_tiles(s);
            assert!((1..=8 * 49).contains(&pb));
            let need = conv.scratch_len(s);
            assert_eq!(need.f32 + need.bf16, pb * 36 * 512);
        }
        let conv = WinogradConv::new(
            Variant::F23,
            Precision::Int8,
            (512, 512),
            &w,
            &[0.0; 512],
            true,
        );
        let pb = conv.block_tiles(s);
        assert!((1..=8 * 196).contains(&pb));
        let need = conv.scratch_len(s);
        assert_eq!((need.u8, need.f32, need.bf16), (pb * 16 * 512, pb * 16, 0));
    }
}
