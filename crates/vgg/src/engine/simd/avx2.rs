//! AVX2 + FMA kernels (f32, and the emulations of the bf16 and int8 products). Only reached
//! through the safe wrappers in `simd/mod.rs`, `simd/bf16.rs` and `simd/int8.rs` after runtime
//! detection of `avx2` + `fma`.
#![cfg(target_arch = "x86_64")]

use super::blocking::{self, DotBlock, Panel, Quads256, sweep, ymm_panel};
use super::{Bf16, DotRowsBf16, GemmU8I8, SimdTask, WinoGemm, WinoGemmBf16};
use core::arch::x86_64::*;

/// Compiles portable lane code with AVX2 + FMA enabled.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn run_task<T: SimdTask>(task: T) -> T::Output {
    task.run::<true>()
}

/// Winograd batched-GEMM step (see [`WinoGemm`]).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn wino_gemm(mut g: WinoGemm<'_>) {
    unsafe { blocked_gemm::<f32, Avx2>(&mut g) }
}

/// Emulated bf16 Winograd batched-GEMM step (see [`WinoGemmBf16`]) in the f32 kernel's
/// blocking. Each lane adds its odd channel's product, then its even one's, each product
/// exact and each sum rounded once, as `vdpbf16ps` does.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn wino_gemm_bf16(mut g: WinoGemmBf16<'_>) {
    unsafe { blocked_gemm::<Bf16, Avx2>(&mut g) }
}

/// A 16-channel filter block is two ymm registers; 2 blocks × 3 tiles (or 1 block × 6
/// tiles) = 12 accumulators leaves room for operands in the 16 ymm.
///
/// # Safety
/// `g` passed its bounds check; AVX2 and FMA are available.
#[inline(always)]
unsafe fn blocked_gemm<E, K: Panel<E, E, f32>>(g: &mut WinoGemm<'_, E>) {
    unsafe {
        let mut kb = 0;
        while kb < g.kbn {
            if g.kbn - kb >= 2 {
                sweep::<_, K, 2, 3>(g, kb);
                kb += 2;
            } else {
                sweep::<_, K, 1, 6>(g, kb);
                kb += 1;
            }
        }
    }
}

/// The AVX2 blocks: f32, and the emulation of the bf16 ones.
struct Avx2;

impl Panel<f32, f32, f32> for Avx2 {
    /// Two ymm per filter block and input channel, broadcast tiles, FMA.
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
                let w: [[__m256; 2]; KB] = core::array::from_fn(|k| {
                    let base = u.add((k * c_len + ci) * 16);
                    [_mm256_loadu_ps(base), _mm256_loadu_ps(base.add(8))]
                });
                for (p, row) in acc.iter_mut().enumerate() {
                    let x = _mm256_set1_ps(*v.add(p * vs + ci));
                    for (a, w) in row.iter_mut().zip(&w) {
                        a[0] = _mm256_fmadd_ps(w[0], x, a[0]);
                        a[1] = _mm256_fmadd_ps(w[1], x, a[1]);
                    }
                }
            }
            store_panel(&acc, m, ms);
        }
    }
}

impl Panel<Bf16, Bf16, f32> for Avx2 {
    /// Per channel pair: the odd channel's pass, then the even one's, each widening the
    /// filter pairs and the tile's value to f32.
    #[target_feature(enable = "avx2,fma")]
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
            let mut acc = [[[_mm256_setzero_ps(); 2]; KB]; NP];
            for j in 0..pairs {
                for half in [1, 0] {
                    let w: [[__m256; 2]; KB] = core::array::from_fn(|k| {
                        let base = u.add((k * pairs + j) * 32);
                        let lo = _mm256_loadu_si256(base.cast());
                        let hi = _mm256_loadu_si256(base.add(16).cast());
                        [widen(lo)[half], widen(hi)[half]]
                    });
                    for (p, row) in acc.iter_mut().enumerate() {
                        let x = _mm256_set1_ps(pair_half(v.add(p * vs + 2 * j), half));
                        for (a, w) in row.iter_mut().zip(&w) {
                            a[0] = _mm256_fmadd_ps(w[0], x, a[0]);
                            a[1] = _mm256_fmadd_ps(w[1], x, a[1]);
                        }
                    }
                }
            }
            store_panel(&acc, m, ms);
        }
    }
}

/// Stores a panel's accumulators: tile `p`, filter block `k` at `m + p·ms + k·16`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn store_panel<const KB: usize, const NP: usize>(
    acc: &[[[__m256; 2]; KB]; NP],
    m: *mut f32,
    ms: usize,
) {
    unsafe {
        for (p, row) in acc.iter().enumerate() {
            for (k, a) in row.iter().enumerate() {
                let dst = m.add(p * ms + k * 16);
                _mm256_storeu_ps(dst, a[0]);
                _mm256_storeu_ps(dst.add(8), a[1]);
            }
        }
    }
}

/// Channel pairs of bf16 widened to f32: `[even channel, odd channel]` of 8 lanes (a bf16
/// is the upper half of an f32, so widening is a shift or a mask).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn widen(pairs: __m256i) -> [__m256; 2] {
    let even = _mm256_slli_epi32::<16>(pairs);
    let odd = _mm256_and_si256(pairs, _mm256_set1_epi32(0xffff_0000_u32 as i32));
    [_mm256_castsi256_ps(even), _mm256_castsi256_ps(odd)]
}

/// One channel of the bf16 pair at `p`, widened: `half` 0 is the even channel, 1 the odd.
#[inline(always)]
unsafe fn pair_half(p: *const Bf16, half: usize) -> f32 {
    // SAFETY: the caller guarantees 4 readable bytes.
    let pair = unsafe { p.cast::<u32>().read_unaligned() };
    f32::from_bits(if half == 0 {
        pair << 16
    } else {
        pair & 0xffff_0000
    })
}

/// Emulated bf16 fully-connected dot products (see [`DotRowsBf16`]): blocks of 4 weight
/// rows × up to 2 batch rows, reading half the bytes of f32 weights (what bounds the FC
/// layers at small batch).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot_rows_bf16(d: DotRowsBf16<'_>) {
    unsafe { blocking::dot_rows::<Bf16, Avx2>(d) }
}

impl DotBlock<Bf16> for Avx2 {
    const MAX_BATCH: usize = 2;

    /// 16 inputs (8 pairs) per step; `inp` is a multiple of 32.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn block<const R: usize, const B: usize>(
        w: *const Bf16,
        x: *const Bf16,
        y: *mut f32,
        inp: usize,
        batch: usize,
    ) {
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); B]; R];
            for i in (0..inp).step_by(16) {
                let xs: [[__m256; 2]; B] =
                    core::array::from_fn(|b| widen(_mm256_loadu_si256(x.add(b * inp + i).cast())));
                for (r, row) in acc.iter_mut().enumerate() {
                    let [even, odd] = widen(_mm256_loadu_si256(w.add(r * inp + i).cast()));
                    for (a, [x_even, x_odd]) in row.iter_mut().zip(&xs) {
                        *a = _mm256_fmadd_ps(odd, *x_odd, *a);
                        *a = _mm256_fmadd_ps(even, *x_even, *a);
                    }
                }
            }
            for (r, row) in acc.iter().enumerate() {
                for (b, a) in row.iter().enumerate() {
                    // SAFETY: `__m256` is 8 packed f32s.
                    let lanes: [f32; 8] = core::mem::transmute(*a);
                    *y.add(r * batch + b) = lanes.iter().sum();
                }
            }
        }
    }
}

/// Emulated int8 GEMM (see [`GemmU8I8`]) in the AVX-VNNI kernel's blocking, each `vpdpbusd`
/// replaced by `vpmaddubsw` (u8·s8 pairs summed into i16, saturating) and `vpmaddwd` by
/// ones (the pairs summed into i32). Exact for weights in ±[`super::AVX2_WEIGHT_LIMIT`]: a pair
/// sum then stays within ±2·255·64 = ±32640, inside i16; the plan quantises weights to
/// that range on CPUs that take this path.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn gemm_u8i8(mut g: GemmU8I8<'_>) {
    unsafe {
        for kb in 0..g.kbn {
            sweep::<_, Avx2, 1, 5>(&mut g, kb);
        }
    }
}

impl Quads256 for Avx2 {
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn dot4(acc: __m256i, x: __m256i, w: __m256i) -> __m256i {
        let pairs = _mm256_maddubs_epi16(x, w);
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }
}

impl Panel<i8, u8, i32> for Avx2 {
    #[target_feature(enable = "avx2,fma")]
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

/// [`super::int8::quantize_rows_offset`] on 8 lanes: a `vmaxps` pass for each row's
/// largest magnitude, then `vcvtps2dq` (ties to even, as the portable code) and two
/// saturating packs to u8 (NaN converts to i32::MIN, which the packs saturate to 0).
///
/// # Safety
/// AVX2 and FMA are available; `row_len` is a multiple of 16, `x` and `q` hold
/// `scales.len()` rows.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn quantize_rows_offset(x: &[f32], row_len: usize, q: &mut [u8], scales: &mut [f32]) {
    use super::int8::{ROW_OFFSET, row_scale};
    unsafe {
        let magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX));
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for (r, scale) in scales.iter_mut().enumerate() {
            let (x, q) = (x.as_ptr().add(r * row_len), q.as_mut_ptr().add(r * row_len));
            let mut m = _mm256_setzero_ps();
            for i in (0..row_len).step_by(8) {
                // `vmaxps` returns its second operand when either is NaN: NaNs are skipped.
                m = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x.add(i)), magnitude), m);
            }
            let lanes: [f32; 8] = core::mem::transmute(m);
            *scale = row_scale(lanes.iter().fold(0.0f32, |a, b| a.max(*b)));
            let inv = _mm256_set1_ps(1.0 / *scale);
            let offset = _mm256_set1_ps(f32::from(ROW_OFFSET));
            for i in (0..row_len).step_by(16) {
                let lo =
                    _mm256_cvtps_epi32(_mm256_fmadd_ps(_mm256_loadu_ps(x.add(i)), inv, offset));
                let hi =
                    _mm256_cvtps_epi32(_mm256_fmadd_ps(_mm256_loadu_ps(x.add(i + 8)), inv, offset));
                // Words [lo0-3 hi0-3 | lo4-7 hi4-7], bytes likewise in each lane's low half;
                // `order` brings the four dwords of bytes back to lo0-7 hi0-7.
                let words = _mm256_packus_epi32(lo, hi);
                let bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(words, words), order);
                _mm_storeu_si128(q.add(i).cast(), _mm256_castsi256_si128(bytes));
            }
        }
    }
}

/// `iters` × 12 independent emulated `vpdpbusd ymm` steps (`vpmaddubsw`, `vpmaddwd`,
/// `vpaddd`: 32 u8·s8 multiply-adds each), the int8 GEMM's inner step: its peak on this CPU.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot4_peak(iters: usize) -> i32 {
    let w = _mm256_set1_epi8(1);
    let mut acc = [_mm256_set1_epi8(1); 12];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            // Each step reads its own accumulator as the u8 operand, so no product can be
            // hoisted out of the loop; 12 chains hide the 7-cycle latency.
            // SAFETY: AVX2 is enabled on this function.
            *a = unsafe { Avx2::dot4(*a, *a, w) };
        }
    }
    let total = acc
        .into_iter()
        .fold(_mm256_setzero_si256(), |s, a| _mm256_add_epi32(s, a));
    // SAFETY: `__m256i` is 8 packed i32s.
    let lanes: [i32; 8] = unsafe { core::mem::transmute(total) };
    lanes.iter().fold(0, |s, v| s.wrapping_add(*v))
}

/// `iters` × 12 independent `vfmadd231ps ymm` (8 multiply-adds each): the FMA units' peak.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn fma_peak(iters: usize) -> f32 {
    let (a, b) = (_mm256_set1_ps(0.999), _mm256_set1_ps(1e-3));
    let mut acc = [_mm256_setzero_ps(); 12];
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm256_fmadd_ps(*x, a, b);
        }
    }
    let total = acc
        .into_iter()
        .fold(_mm256_setzero_ps(), |s, x| _mm256_add_ps(s, x));
    // SAFETY: `__m256` is 8 packed f32s.
    let lanes: [f32; 8] = unsafe { core::mem::transmute(total) };
    lanes.iter().sum()
}
