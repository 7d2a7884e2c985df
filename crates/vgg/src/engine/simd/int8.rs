//! u8 × s8 products with i32 accumulation: the two products the int8 engine needs (the
//! convolutions' GEMM, over Winograd tiles or im2col rows, and the fully-connected dot
//! products), the quantisation of activations to u8, their safe wrappers and their portable
//! code.
//!
//! Both work on *quads*, as `vpdpbusd` (AVX512_VNNI, AVX-VNNI) does: each i32 lane adds four
//! u8·s8 products. Integer sums are exact, so every path — the instruction, the AVX2
//! emulation (`vpmaddubsw` + `vpmaddwd`) and the portable code — gives the same result bit
//! for bit; the tests hold them to that. The AVX2 emulation is exact only for weights in
//! ±[`AVX2_WEIGHT_LIMIT`] (see [`gemm_weight_limit`]), as OpenVINO's int8 on such CPUs
//! (NNCF's "overflow fix" gives up the same bit).

use super::{Isa, Kind, SimdTask, run_task};

/// The largest |weight| the AVX2 emulation of `vpdpbusd` sums exactly: `vpmaddubsw` adds two
/// u8·s8 products into an i16, and 2·255·64 = 32640 fits one, 2·255·127 does not.
pub const AVX2_WEIGHT_LIMIT: i8 = 64;

/// The largest |weight| [`gemm_u8i8`] sums exactly on `isa`: 127 with `vpdpbusd` and in the
/// portable code, [`AVX2_WEIGHT_LIMIT`] in the AVX2 emulation (7-bit weights, for twice
/// the speed of widening every value to 16 bits).
pub fn gemm_weight_limit(isa: Isa) -> i8 {
    match isa.kind {
        Kind::Avx512 | Kind::Avx2 if !isa.vnni => AVX2_WEIGHT_LIMIT,
        _ => 127,
    }
}

/// Operands of one int8 GEMM: `m[p·kbn·16 + kb·16 + l] = Σ_k u(kb, k, l) · v[p·v_stride + k]`
/// for `p < np`, `kb < kbn`, `l < 16`, with the weights packed by quads of `k`:
/// `u(kb, k, l) = u[((kb·k_len/4 + k/4)·16 + l)·4 + k%4]`. `k_len` and `v_stride` are
/// multiples of 4, so every quad of `v` is one 32-bit word. The weights lie within
/// ±[`gemm_weight_limit`] of the `Isa` it runs on (beyond, the AVX2 emulation saturates).
pub struct GemmU8I8<'a> {
    pub k_len: usize,
    pub kbn: usize,
    pub np: usize,
    pub u: &'a [i8],
    pub v: &'a [u8],
    pub v_stride: usize,
    pub m: &'a mut [i32],
}

impl GemmU8I8<'_> {
    fn check(&self) {
        assert!(self.kbn >= 1 && self.np >= 1 && self.k_len >= 4);
        assert!(self.k_len.is_multiple_of(4) && self.v_stride.is_multiple_of(4));
        assert!(self.u.len() >= self.kbn * self.k_len * 16);
        assert!(self.v_stride >= self.k_len);
        assert!(self.v.len() >= (self.np - 1) * self.v_stride + self.k_len);
        assert!(self.m.len() >= self.np * self.kbn * 16);
    }
}

/// Runs an int8 GEMM: `vpdpbusd` where the CPU has AVX512_VNNI or AVX-VNNI, its emulation
/// with AVX2, portable code elsewhere.
pub fn gemm_u8i8(isa: Isa, g: GemmU8I8<'_>) {
    g.check();
    match isa.kind {
        // SAFETY: AVX512_VNNI was detected (Isa invariant); bounds checked by `check`.
        #[cfg(target_arch = "x86_64")]
        Kind::Avx512 if isa.vnni => unsafe { super::avx512_vnni::gemm_u8i8(g) },
        // SAFETY: AVX-VNNI was detected (Isa invariant); bounds checked by `check`.
        #[cfg(target_arch = "x86_64")]
        Kind::Avx2 if isa.vnni => unsafe { super::avx_vnni::gemm_u8i8(g) },
        // SAFETY: AVX2 and FMA were detected (an AVX-512 `Isa` implies them too).
        #[cfg(target_arch = "x86_64")]
        Kind::Avx512 | Kind::Avx2 => unsafe { super::avx2::gemm_u8i8(g) },
        _ => run_task(isa, GemmTask(g)),
    }
}

/// Portable [`GemmU8I8`], one row and filter block at a time.
struct GemmTask<'a>(GemmU8I8<'a>);

impl SimdTask for GemmTask<'_> {
    type Output = ();
    #[inline(always)]
    fn run<const FMA: bool>(self) {
        let g = self.0;
        let ms = g.kbn * 16;
        for p in 0..g.np {
            let v = &g.v[p * g.v_stride..p * g.v_stride + g.k_len];
            for kb in 0..g.kbn {
                let u = &g.u[kb * g.k_len * 16..(kb + 1) * g.k_len * 16];
                let mut acc = [0i32; 16];
                for (x, w) in v.chunks_exact(4).zip(u.chunks_exact(64)) {
                    for (l, a) in acc.iter_mut().enumerate() {
                        *a += (0..4)
                            .map(|q| i32::from(x[q]) * i32::from(w[4 * l + q]))
                            .sum::<i32>();
                    }
                }
                g.m[p * ms + kb * 16..p * ms + kb * 16 + 16].copy_from_slice(&acc);
            }
        }
    }
}

/// Operands of int8 fully-connected dot products: `y[r·batch + b] = w_r · x_b` for every
/// weight row `r`, rows of `inp` values (a multiple of 64: callers zero-pad both sides).
pub struct DotRowsU8I8<'a> {
    pub w: &'a [i8],
    pub inp: usize,
    pub x: &'a [u8],
    pub batch: usize,
    pub y: &'a mut [i32],
}

/// Computes [`DotRowsU8I8`]; each weight row is streamed once for all batch rows, at a
/// quarter of the bytes of f32 weights.
pub fn dot_rows_u8i8(isa: Isa, d: DotRowsU8I8<'_>) {
    assert!(d.inp >= 64 && d.inp.is_multiple_of(64) && d.batch >= 1);
    assert!(d.w.len().is_multiple_of(d.inp));
    assert!(d.x.len() >= d.batch * d.inp && d.y.len() >= d.w.len() / d.inp * d.batch);
    match isa.kind {
        // SAFETY: AVX512_VNNI was detected (Isa invariant); bounds checked above.
        #[cfg(target_arch = "x86_64")]
        Kind::Avx512 if isa.vnni => unsafe { super::avx512_vnni::dot_rows_u8i8(d) },
        // SAFETY: AVX-VNNI was detected (Isa invariant); bounds checked above.
        #[cfg(target_arch = "x86_64")]
        Kind::Avx2 if isa.vnni => unsafe { super::avx_vnni::dot_rows_u8i8(d) },
        _ => run_task(isa, DotRowsTask(d)),
    }
}

/// Portable [`DotRowsU8I8`] on 16-lane accumulators (LLVM turns the widened products into
/// `vpmaddwd` with AVX2).
struct DotRowsTask<'a>(DotRowsU8I8<'a>);

impl SimdTask for DotRowsTask<'_> {
    type Output = ();
    #[inline(always)]
    fn run<const FMA: bool>(self) {
        let d = self.0;
        for (r, w) in d.w.chunks_exact(d.inp).enumerate() {
            for b in 0..d.batch {
                let x = &d.x[b * d.inp..(b + 1) * d.inp];
                let mut acc = [0i32; 16];
                for (wc, xc) in w.chunks_exact(16).zip(x.chunks_exact(16)) {
                    for l in 0..16 {
                        acc[l] += i32::from(wc[l]) * i32::from(xc[l]);
                    }
                }
                d.y[r * d.batch + b] = acc.iter().sum();
            }
        }
    }
}

/// Rounds `x · inv_scale` to the nearest u8 (halves up), saturating: negative values and
/// NaN become 0, values past 255 become 255.
pub fn quantize_u8(isa: Isa, x: &[f32], inv_scale: f32, out: &mut [u8]) {
    assert_eq!(x.len(), out.len());
    run_task(isa, Quantize(x, inv_scale, out));
}

struct Quantize<'a>(&'a [f32], f32, &'a mut [u8]);

impl SimdTask for Quantize<'_> {
    type Output = ();
    #[inline(always)]
    fn run<const FMA: bool>(self) {
        let Quantize(x, inv, out) = self;
        for (o, v) in out.iter_mut().zip(x) {
            // `as` saturates: below 0 (and NaN) gives 0, past 255 gives 255.
            *o = (v * inv + 0.5) as u8;
        }
    }
}

/// Quantises each row of `row_len` values of `x` symmetrically and stores it offset into u8:
/// per row, `scale = max |x| / 127` and `q = round(x · (1 / scale) + 128)` (one fused
/// multiply-add, ties to even) in `[1, 255]`; NaN becomes 0. A row whose largest magnitude
/// is 0 or so small that `1 / scale` would overflow gets scale 1 (its values all round to
/// 128). The Winograd int8 convolution's tiles, whose transformed values are signed (see
/// `winograd/int8.rs`).
pub fn quantize_rows_offset(isa: Isa, x: &[f32], row_len: usize, q: &mut [u8], scales: &mut [f32]) {
    assert!(row_len >= 16 && row_len.is_multiple_of(16));
    assert_eq!(x.len(), q.len());
    assert_eq!(x.len(), scales.len() * row_len);
    match isa.kind {
        // SAFETY: AVX2 and FMA were detected (an AVX-512 `Isa` implies them too); lengths
        // checked above.
        #[cfg(target_arch = "x86_64")]
        Kind::Avx512 | Kind::Avx2 => unsafe {
            super::avx2::quantize_rows_offset(x, row_len, q, scales)
        },
        _ => run_task(isa, QuantizeRowsOffset(x, row_len, q, scales)),
    }
}

/// Levels on each side of zero of [`quantize_rows_offset`].
const ROW_LEVELS: f32 = 127.0;

/// What [`quantize_rows_offset`] adds to each rounded value, so that it fits a u8.
pub const ROW_OFFSET: u8 = 128;

/// The scale of a row whose largest magnitude is `max`: 1 where `1 / scale` would not be
/// finite (a zero or subnormal-sized row), so that no value leaves `[1, 255]`.
#[inline(always)]
pub(super) fn row_scale(max: f32) -> f32 {
    if max >= ROW_LEVELS * f32::MIN_POSITIVE {
        max / ROW_LEVELS
    } else {
        1.0
    }
}

/// Portable [`quantize_rows_offset`].
struct QuantizeRowsOffset<'a>(&'a [f32], usize, &'a mut [u8], &'a mut [f32]);

impl SimdTask for QuantizeRowsOffset<'_> {
    type Output = ();
    #[inline(always)]
    fn run<const FMA: bool>(self) {
        let QuantizeRowsOffset(x, row_len, q, scales) = self;
        let rows = x.chunks_exact(row_len).zip(q.chunks_exact_mut(row_len));
        for ((x, q), scale) in rows.zip(scales) {
            let max = x
                .iter()
                .fold(0.0f32, |m, v| if v.abs() > m { v.abs() } else { m });
            *scale = row_scale(max);
            let inv = 1.0 / *scale;
            for (q, v) in q.iter_mut().zip(x) {
                // Fused, as the AVX2 kernel's `vfmadd`, for the same result everywhere. `as`
                // maps NaN to 0; everything else lies in [1, 255].
                *q = v.mul_add(inv, f32::from(ROW_OFFSET)).round_ties_even() as u8;
            }
        }
    }
}

#[cfg(any(test, feature = "kernel-checks"))]
pub(crate) mod tests {
    use super::*;

    fn bytes<T>(n: usize, seed: &mut u64, f: impl Fn(u8) -> T) -> Vec<T> {
        (0..n)
            .map(|_| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                f((*seed >> 33) as u8)
            })
            .collect()
    }

    /// Weights within ±`limit` and inputs; extreme values too: 255 × −limit products in
    /// every lane must not saturate anywhere.
    fn operands(n: usize, seed: &mut u64, extreme: bool, limit: i8) -> (Vec<i8>, Vec<u8>) {
        if extreme {
            (vec![-limit; n], vec![255; n])
        } else {
            let w = bytes(n, seed, |b| (b as i8).clamp(-limit, limit));
            (w, bytes(n, seed, |b| b))
        }
    }

    /// [`GemmU8I8`] by its definition.
    fn reference(u: &[i8], v: &[u8], [k_len, kbn, np, vs]: [usize; 4]) -> Vec<i32> {
        let mut want = vec![0i32; np * kbn * 16];
        for p in 0..np {
            for kb in 0..kbn {
                for l in 0..16 {
                    want[(p * kbn + kb) * 16 + l] = (0..k_len)
                        .map(|k| {
                            let w = u[((kb * k_len / 4 + k / 4) * 16 + l) * 4 + k % 4];
                            i32::from(w) * i32::from(v[p * vs + k])
                        })
                        .sum();
                }
            }
        }
        want
    }

    #[cfg_attr(test, test)]
    pub(crate) fn gemm_paths_match_reference_exactly() {
        let mut seed = 17;
        for extreme in [false, true] {
            for k_len in [4, 12, 64, 148] {
                for kbn in 1..=5 {
                    for np in [1, 2, 3, 5, 6, 7, 13] {
                        let vs = k_len + 8;
                        for isa in Isa::available() {
                            let limit = gemm_weight_limit(isa);
                            let (u, _) = operands(kbn * k_len * 16, &mut seed, extreme, limit);
                            let (_, v) = operands(np * vs, &mut seed, extreme, limit);
                            let want = reference(&u, &v, [k_len, kbn, np, vs]);
                            let mut m = vec![i32::MIN; np * kbn * 16];
                            let g = GemmU8I8 {
                                k_len,
                                kbn,
                                np,
                                u: &u,
                                v: &v,
                                v_stride: vs,
                                m: &mut m,
                            };
                            gemm_u8i8(isa, g);
                            assert_eq!(m, want, "{} k={k_len} kbn={kbn} np={np}", isa.name());
                        }
                    }
                }
            }
        }
    }

    #[cfg_attr(test, test)]
    pub(crate) fn dot_rows_paths_match_reference_exactly() {
        let mut seed = 19;
        for extreme in [false, true] {
            for inp in [64, 128, 4096] {
                for rows in [1, 3, 4, 9] {
                    for batch in [1, 2, 4, 5, 8] {
                        let (w, _) = operands(rows * inp, &mut seed, extreme, i8::MAX);
                        let (_, x) = operands(batch * inp, &mut seed, extreme, i8::MAX);
                        for isa in Isa::available() {
                            let mut y = vec![i32::MIN; rows * batch];
                            let d = DotRowsU8I8 {
                                w: &w,
                                inp,
                                x: &x,
                                batch,
                                y: &mut y,
                            };
                            dot_rows_u8i8(isa, d);
                            for r in 0..rows {
                                for b in 0..batch {
                                    let want: i32 = (0..inp)
                                        .map(|i| {
                                            i32::from(w[r * inp + i]) * i32::from(x[b * inp + i])
                                        })
                                        .sum();
                                    assert_eq!(y[r * batch + b], want, "{}", isa.name());
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[cfg_attr(test, test)]
    pub(crate) fn row_quantisation_paths_agree_exactly() {
        let mut seed = 23;
        let mut x = bytes(48 * 6, &mut seed, |b| (f32::from(b) - 128.0) * 0.37);
        x[48..96].fill(0.0);
        x[100] = f32::NAN;
        // Exact ties after scaling: the row's max is 127, so x / scale = x.
        for (i, v) in x[144..192].iter_mut().enumerate() {
            *v = i as f32 - 23.5;
        }
        x[191] = 127.0;
        // A row too small for a finite `1 / scale`: scale 1, everything rounds to 128.
        x[192..240].fill(1e-39);
        let mut want = None;
        for isa in Isa::available() {
            let (mut q, mut scales) = (vec![7u8; x.len()], vec![0.0; 6]);
            quantize_rows_offset(isa, &x, 48, &mut q, &mut scales);
            assert_eq!(q[48..96], [128; 48], "{}: a zero row", isa.name());
            assert_eq!(scales[1], 1.0);
            assert_eq!(q[100], 0, "{}: NaN", isa.name());
            assert_eq!(
                (q[144], q[145], q[191]),
                (104, 106, 255),
                "{}: ties to even",
                isa.name()
            );
            assert_eq!(q[192..240], [128; 48], "{}: a tiny row", isa.name());
            assert_eq!(scales[4], 1.0);
            let got = (q, scales);
            assert_eq!(
                want.get_or_insert_with(|| got.clone()),
                &got,
                "{}",
                isa.name()
            );
        }
    }

    #[cfg_attr(test, test)]
    pub(crate) fn quantize_rounds_and_saturates() {
        let x = [
            -3.0,
            0.0,
            0.24,
            0.26,
            1.0,
            63.7,
            200.0,
            f32::NAN,
            f32::INFINITY,
        ];
        for isa in Isa::available() {
            let mut q = vec![7u8; x.len()];
            quantize_u8(isa, &x, 4.0, &mut q);
            assert_eq!(q, [0, 0, 1, 1, 4, 255, 255, 0, 255], "{}", isa.name());
        }
    }
}
