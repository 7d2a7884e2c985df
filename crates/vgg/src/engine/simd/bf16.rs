//! bf16 operands with f32 accumulation: the number format, the two products the bf16
//! engine needs (the Winograd batched GEMM and the fully-connected dot products), their
//! safe wrappers and their portable emulation.
//!
//! Both products work on *pairs* of bf16 values, as `vdpbf16ps` (AVX512_BF16) does: each
//! of 16 f32 lanes adds `a[2l+1]·b[2l+1]` and then `a[2l]·b[2l]`. A product of two bf16
//! values is exact in f32, so the Winograd GEMM's emulation (widen to f32, multiply-add
//! in that order) gives the instruction's result bit for bit, denormals aside (the
//! instruction flushes them to zero); the dot products' emulations may add their terms in
//! another order (other lanes, another final sum). The emulation is the path on CPUs without AVX512_BF16 (hand-written with AVX2,
//! portable lane code below that) and the reference the instruction's path is tested
//! against. Without the instruction bf16 does the same arithmetic as f32, but reads half
//! the bytes of weights and transformed tiles.

use super::{DotRows, Isa, Kind, SimdTask, WinoGemm, run_task};

/// A bfloat16: the upper 16 bits of an f32 (8 exponent bits, 7 mantissa bits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(transparent)]
pub struct Bf16(pub u16);

impl Bf16 {
    /// Rounds to the nearest bf16, ties to even (as `vcvtneps2bf16`); NaN stays NaN.
    #[inline(always)]
    pub fn from_f32(x: f32) -> Bf16 {
        let bits = x.to_bits();
        let rounded = (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16;
        let quiet_nan = ((bits >> 16) | 0x40) as u16;
        // A select, not an early return, so conversion loops vectorise.
        Bf16(if x.is_nan() { quiet_nan } else { rounded })
    }

    /// The exact f32 value.
    #[inline(always)]
    pub fn to_f32(self) -> f32 {
        f32::from_bits((self.0 as u32) << 16)
    }
}

/// Converts `src` into `dst` (equal lengths), rounding each value to bf16.
pub fn convert_to_bf16(isa: Isa, src: &[f32], dst: &mut [Bf16]) {
    assert_eq!(src.len(), dst.len());
    run_task(isa, Convert(src, dst));
}

struct Convert<'a>(&'a [f32], &'a mut [Bf16]);

impl SimdTask for Convert<'_> {
    type Output = ();
    #[inline(always)]
    fn run<const FMA: bool>(self) {
        for (d, s) in self.1.iter_mut().zip(self.0) {
            *d = Bf16::from_f32(*s);
        }
    }
}

/// Operands of one bf16 Winograd batched-GEMM step (one transform position):
/// `m[p·kbn·16 + kb·16 + l] = Σ_c u(kb, c, l) · v[p·v_stride + c]`, as the f32 step but with
/// channel pairs interleaved in `u`: `u[((kb·c_len/2 + c/2)·16 + l)·2 + c%2]`. `c_len` and
/// `v_stride` are even, so every channel pair of `v` is one 32-bit word.
pub type WinoGemmBf16<'a> = WinoGemm<'a, Bf16>;

/// Runs one bf16 Winograd batched-GEMM step: `vdpbf16ps` where the CPU has it, else the
/// emulation compiled for `isa`.
pub fn wino_gemm_bf16(isa: Isa, g: WinoGemmBf16<'_>) {
    g.check();
    assert!(g.c_len.is_multiple_of(2) && g.v_stride.is_multiple_of(2));
    match isa.kind {
        // SAFETY: the bf16 unit was detected (Isa invariant); bounds checked by `check`.
        #[cfg(target_arch = "x86_64")]
        Kind::Avx512 if isa.bf16 => unsafe { super::avx512_bf16::wino_gemm(g) },
        // SAFETY: AVX2 and FMA were detected (an AVX-512 `Isa` implies them too).
        #[cfg(target_arch = "x86_64")]
        Kind::Avx512 | Kind::Avx2 => unsafe { super::avx2::wino_gemm_bf16(g) },
        _ => run_task(isa, WinoGemmTask(g)),
    }
}

/// Emulated [`WinoGemmBf16`], one tile and filter block at a time.
struct WinoGemmTask<'a>(WinoGemmBf16<'a>);

impl SimdTask for WinoGemmTask<'_> {
    type Output = ();
    #[inline(always)]
    fn run<const FMA: bool>(self) {
        let g = self.0;
        let ms = g.kbn * 16;
        for p in 0..g.np {
            let v = &g.v[p * g.v_stride..p * g.v_stride + g.c_len];
            for kb in 0..g.kbn {
                let u = &g.u[kb * g.c_len * 16..(kb + 1) * g.c_len * 16];
                let mut acc = [0.0f32; 16];
                for (x, w) in v.chunks_exact(2).zip(u.chunks_exact(32)) {
                    dot_pair::<FMA>(&mut acc, w, [x[0], x[1]]);
                }
                g.m[p * ms + kb * 16..p * ms + kb * 16 + 16].copy_from_slice(&acc);
            }
        }
    }
}

/// One `vdpbf16ps` step on 16 lanes: `acc[l] += w[2l+1]·x[1]`, then `+= w[2l]·x[0]`.
#[inline(always)]
fn dot_pair<const FMA: bool>(acc: &mut [f32; 16], w: &[Bf16], x: [Bf16; 2]) {
    let (x0, x1) = (x[0].to_f32(), x[1].to_f32());
    for (l, a) in acc.iter_mut().enumerate() {
        let odd = super::madd::<FMA>(w[2 * l + 1].to_f32(), x1, *a);
        *a = super::madd::<FMA>(w[2 * l].to_f32(), x0, odd);
    }
}

/// Operands of bf16 fully-connected dot products: `y[r·batch + b] = w_r · x_b` for every
/// weight row `r`, rows of `inp` values (a multiple of 32: callers zero-pad both sides).
pub type DotRowsBf16<'a> = DotRows<'a, Bf16>;

/// Computes [`DotRowsBf16`]; like [`super::dot_rows`], each weight row is streamed once
/// for up to 4 batch rows, at half the bytes of f32 weights.
pub fn dot_rows_bf16(isa: Isa, d: DotRowsBf16<'_>) {
    assert!(d.inp >= 32 && d.inp.is_multiple_of(32) && d.batch >= 1);
    assert!(d.w.len().is_multiple_of(d.inp));
    assert!(d.x.len() >= d.batch * d.inp && d.y.len() >= d.w.len() / d.inp * d.batch);
    match isa.kind {
        // SAFETY: the bf16 unit was detected (Isa invariant); bounds checked above.
        #[cfg(target_arch = "x86_64")]
        Kind::Avx512 if isa.bf16 => unsafe { super::avx512_bf16::dot_rows(d) },
        // SAFETY: AVX2 and FMA were detected (an AVX-512 `Isa` implies them too).
        #[cfg(target_arch = "x86_64")]
        Kind::Avx512 | Kind::Avx2 => unsafe { super::avx2::dot_rows_bf16(d) },
        _ => run_task(isa, DotRowsTask(d)),
    }
}

/// Emulated [`DotRowsBf16`]: 16 lanes of pair products per 32 inputs, summed at the end.
struct DotRowsTask<'a>(DotRowsBf16<'a>);

impl SimdTask for DotRowsTask<'_> {
    type Output = ();
    #[inline(always)]
    fn run<const FMA: bool>(self) {
        let d = self.0;
        for (r, w) in d.w.chunks_exact(d.inp).enumerate() {
            for b in 0..d.batch {
                let x = &d.x[b * d.inp..(b + 1) * d.inp];
                let mut acc = [0.0f32; 16];
                for (wc, xc) in w.chunks_exact(32).zip(x.chunks_exact(32)) {
                    for (l, a) in acc.iter_mut().enumerate() {
                        let odd =
                            super::madd::<FMA>(wc[2 * l + 1].to_f32(), xc[2 * l + 1].to_f32(), *a);
                        *a = super::madd::<FMA>(wc[2 * l].to_f32(), xc[2 * l].to_f32(), odd);
                    }
                }
                d.y[r * d.batch + b] = acc.iter().sum();
            }
        }
    }
}

#[cfg(any(test, feature = "kernel-checks"))]
pub(crate) mod tests {
    use super::super::lcg;
    use super::*;

    fn bf16s(n: usize, seed: &mut u64) -> Vec<Bf16> {
        (0..n).map(|_| Bf16::from_f32(lcg(seed))).collect()
    }

    #[cfg_attr(test, test)]
    pub(crate) fn rounding_is_to_nearest_even() {
        // 1 + 2^-8 is halfway between bf16 1.0 and 1 + 2^-7: ties go to the even 1.0.
        assert_eq!(Bf16::from_f32(1.0 + 1.0 / 256.0).to_f32(), 1.0);
        assert_eq!(
            Bf16::from_f32(1.0 + 3.0 / 256.0).to_f32(),
            1.0 + 4.0 / 256.0
        );
        assert_eq!(Bf16::from_f32(-2.5).to_f32(), -2.5);
        assert_eq!(Bf16::from_f32(f32::MAX).to_f32(), f32::INFINITY);
        assert!(Bf16::from_f32(f32::NAN).to_f32().is_nan());
        let x = 0.123_456_78f32;
        assert!((Bf16::from_f32(x).to_f32() - x).abs() <= x * 2f32.powi(-9));
        let mut out = vec![Bf16::default(); 3];
        convert_to_bf16(Isa::detect(), &[1.0, -0.5, 3.0], &mut out);
        assert_eq!(
            out.iter().map(|b| b.to_f32()).collect::<Vec<_>>(),
            [1.0, -0.5, 3.0]
        );
    }

    /// Every path (the instruction where present, the emulations) agrees with an f64 sum of
    /// the exact bf16 products, and bit for bit with the portable emulation: each lane adds
    /// the same exact products in the same order.
    #[cfg_attr(test, test)]
    pub(crate) fn wino_gemm_bf16_paths_match_reference() {
        let mut seed = 11;
        for c_len in [2, 6, 16, 38] {
            for kbn in 1..=4 {
                for np in [1, 2, 5, 6, 7, 13, 17] {
                    let vs = c_len + 4;
                    let u = bf16s(kbn * c_len * 16, &mut seed);
                    let v = bf16s(np * vs, &mut seed);
                    let mut want = vec![0.0; np * kbn * 16];
                    for p in 0..np {
                        for kb in 0..kbn {
                            for l in 0..16 {
                                let s: f64 = (0..c_len)
                                    .map(|c| {
                                        let w = u[((kb * c_len / 2 + c / 2) * 16 + l) * 2 + c % 2];
                                        w.to_f32() as f64 * v[p * vs + c].to_f32() as f64
                                    })
                                    .sum();
                                want[(p * kbn + kb) * 16 + l] = s as f32;
                            }
                        }
                    }
                    let mut portable = vec![f32::NAN; np * kbn * 16];
                    for isa in Isa::available().into_iter().rev() {
                        let mut m = vec![f32::NAN; np * kbn * 16];
                        let g = WinoGemmBf16 {
                            c_len,
                            kbn,
                            np,
                            u: &u,
                            v: &v,
                            v_stride: vs,
                            m: &mut m,
                        };
                        wino_gemm_bf16(isa, g);
                        if isa == Isa::scalar() {
                            portable.clone_from(&m);
                        }
                        assert_eq!(m, portable, "{} c={c_len} kbn={kbn} np={np}", isa.name());
                        for (a, b) in m.iter().zip(&want) {
                            assert!(
                                (a - b).abs() < 1e-5,
                                "{} c={c_len} kbn={kbn} np={np}",
                                isa.name()
                            );
                        }
                    }
                }
            }
        }
    }

    #[cfg_attr(test, test)]
    pub(crate) fn dot_rows_bf16_paths_match_reference() {
        let mut seed = 13;
        for inp in [32, 64, 96, 4096] {
            for rows in [1, 3, 4, 9] {
                for batch in [1, 2, 4, 5, 8] {
                    let w = bf16s(rows * inp, &mut seed);
                    let x = bf16s(batch * inp, &mut seed);
                    for isa in Isa::available() {
                        let mut y = vec![f32::NAN; rows * batch];
                        let d = DotRowsBf16 {
                            w: &w,
                            inp,
                            x: &x,
                            batch,
                            y: &mut y,
                        };
                        dot_rows_bf16(isa, d);
                        for r in 0..rows {
                            for b in 0..batch {
                                let want: f64 = (0..inp)
                                    .map(|i| {
                                        w[r * inp + i].to_f32() as f64
                                            * x[b * inp + i].to_f32() as f64
                                    })
                                    .sum();
                                let scale: f64 = (0..inp)
                                    .map(|i| {
                                        (w[r * inp + i].to_f32() * x[b * inp + i].to_f32()).abs()
                                            as f64
                                    })
                                    .sum();
                                let got = y[r * batch + b] as f64;
                                let tolerance = 2e-6 * scale + 1e-6;
                                assert!(
                                    (got - want).abs() < tolerance,
                                    "{} inp={inp} rows={rows} batch={batch} r={r} b={b}: \
                                     {got} against {want} ± {tolerance}",
                                    isa.name()
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
