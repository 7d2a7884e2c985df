//! Runtime-dispatched SIMD kernels.
//!
//! All `unsafe` SIMD code of the engine lives in this module tree. Callers get
//! safe functions that take an [`Isa`] token; an `Isa` can only be obtained from
//! runtime CPU-feature detection, so holding one proves the instructions it
//! selects are available.
//!
//! Two kinds of kernels exist:
//! * hand-written register-blocked micro-kernels (the Winograd batched GEMM),
//!   one per instruction set in `avx512.rs`, `avx2.rs`, `scalar.rs`, and their bf16
//!   forms (`bf16.rs`: the format and wrappers; `avx512_bf16.rs`: `vdpbf16ps`; `avx2.rs`
//!   and portable code: the exact emulation), and the int8 ones (`int8.rs`: the products and
//!   wrappers; `avx512_vnni.rs` and `avx_vnni.rs`: `vpdpbusd` on zmm and ymm; `avx2.rs`: the
//!   exact emulation);
//! * portable "lane" code (Winograd tile transforms, FC dot products) written
//!   once on `[f32; 16]` arrays and compiled per instruction set through
//!   [`SimdTask`], where LLVM vectorises it with the enabled features.
//!
//! An AVX-512 CPU with AVX512_BF16 or AVX512_VNNI (an AVX2 CPU with AVX-VNNI) has two `Isa`s,
//! with and without those units; they differ only in the bf16 and int8 products (f32
//! kernels dispatch on the instruction-set family).

mod avx2;
mod avx512;
mod avx512_bf16;
mod avx512_vnni;
mod avx_vnni;
mod bf16;
mod blocking;
mod int8;
mod peak;
mod portable;
mod scalar;

pub use bf16::{Bf16, DotRowsBf16, WinoGemmBf16, convert_to_bf16, dot_rows_bf16, wino_gemm_bf16};
pub use int8::{
    AVX2_WEIGHT_LIMIT, DotRowsU8I8, GemmU8I8, ROW_OFFSET, dot_rows_u8i8, gemm_u8i8,
    gemm_weight_limit, quantize_rows_offset, quantize_u8,
};
pub use peak::peak_gflops;

/// Instruction-set family selected at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Avx512,
    Avx2,
    Scalar,
}

/// Every feature that some `#[target_feature]` of `avx512.rs` enables: all must be detected
/// before its kernels run (AVX-512F alone is not enough: the kernels also use VL, AVX2, FMA).
const AVX512_FEATURES: &[&str] = &["avx512f", "avx512vl", "avx2", "fma"];
/// Every feature that some `#[target_feature]` of `avx512_bf16.rs` enables (`vdpbf16ps`).
const AVX512_BF16_FEATURES: &[&str] = &["avx512f", "avx512bf16"];
/// Every feature that some `#[target_feature]` of `avx512_vnni.rs` enables (`vpdpbusd`).
const AVX512_VNNI_FEATURES: &[&str] = &["avx512f", "avx512vnni"];
/// Every feature that some `#[target_feature]` of `avx_vnni.rs` enables (`vpdpbusd` on ymm).
const AVX_VNNI_FEATURES: &[&str] = &["avx2", "avxvnni"];
/// Every feature that some `#[target_feature]` of `avx2.rs` enables.
const AVX2_FEATURES: &[&str] = &["avx2", "fma"];

/// Whether this CPU has `feature` (one of the names in the lists above; anything else is
/// reported missing, so a kernel that enables a new feature stays off until it is added).
#[cfg(target_arch = "x86_64")]
fn cpu_has(feature: &str) -> bool {
    match feature {
        "avx512f" => is_x86_feature_detected!("avx512f"),
        "avx512vl" => is_x86_feature_detected!("avx512vl"),
        "avx512bf16" => is_x86_feature_detected!("avx512bf16"),
        "avx512vnni" => is_x86_feature_detected!("avx512vnni"),
        "avxvnni" => is_x86_feature_detected!("avxvnni"),
        "avx2" => is_x86_feature_detected!("avx2"),
        "fma" => is_x86_feature_detected!("fma"),
        _ => false,
    }
}

/// Proof that an instruction set is usable on this CPU (only created by detection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Isa {
    kind: Kind,
    /// AVX512_BF16 (`vdpbf16ps`) is there too; only ever set with [`Kind::Avx512`].
    bf16: bool,
    /// `vpdpbusd` is there too: AVX512_VNNI with [`Kind::Avx512`], AVX-VNNI with
    /// [`Kind::Avx2`].
    vnni: bool,
}

impl Isa {
    /// Best instruction set of this CPU.
    pub fn detect() -> Isa {
        Self::available()[0]
    }

    /// Every usable instruction set, best first (the portable one is always last).
    pub fn available() -> Vec<Isa> {
        let mut out = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if AVX512_FEATURES.iter().all(|f| cpu_has(f)) {
                let bf16 = AVX512_BF16_FEATURES.iter().all(|f| cpu_has(f));
                let vnni = AVX512_VNNI_FEATURES.iter().all(|f| cpu_has(f));
                if bf16 || vnni {
                    out.push(Isa::of(Kind::Avx512, bf16, vnni));
                }
                out.push(Isa::of(Kind::Avx512, false, false));
            }
            if AVX2_FEATURES.iter().all(|f| cpu_has(f)) {
                if AVX_VNNI_FEATURES.iter().all(|f| cpu_has(f)) {
                    out.push(Isa::of(Kind::Avx2, false, true));
                }
                out.push(Isa::of(Kind::Avx2, false, false));
            }
        }
        out.push(Isa::scalar());
        out
    }

    fn of(kind: Kind, bf16: bool, vnni: bool) -> Isa {
        Isa { kind, bf16, vnni }
    }

    /// The portable fallback, always available.
    pub fn scalar() -> Isa {
        Isa::of(Kind::Scalar, false, false)
    }

    /// Whether bf16 products run on the CPU's own instruction (`vdpbf16ps`) rather than
    /// the exact emulation in f32.
    pub fn has_bf16(self) -> bool {
        self.bf16
    }

    /// Whether int8 products run on the CPU's own instruction (`vpdpbusd`) rather than the
    /// exact emulation on widened values.
    pub fn has_vnni(self) -> bool {
        self.vnni
    }

    /// Short human-readable name.
    pub fn name(self) -> &'static str {
        match self.kind {
            Kind::Avx512 if self.bf16 && self.vnni => "avx512+bf16+vnni",
            Kind::Avx512 if self.bf16 => "avx512+bf16",
            Kind::Avx512 if self.vnni => "avx512+vnni",
            Kind::Avx512 => "avx512",
            Kind::Avx2 if self.vnni => "avx2+fma+vnni",
            Kind::Avx2 => "avx2+fma",
            Kind::Scalar => "scalar",
        }
    }
}

/// A piece of portable lane code to be compiled for one instruction set.
///
/// Implementations must mark `run` (and everything it calls) `#[inline(always)]`
/// so the code is inlined into the `#[target_feature]` trampoline and vectorised
/// with that instruction set. `FMA` tells whether fused multiply-add is cheap
/// (without hardware FMA, `f32::mul_add` is a slow libm call).
pub trait SimdTask {
    type Output;
    fn run<const FMA: bool>(self) -> Self::Output;
}

/// Runs portable lane code compiled for `isa`.
#[inline]
pub fn run_task<T: SimdTask>(isa: Isa, task: T) -> T::Output {
    match isa.kind {
        // SAFETY: an `Isa` of this kind is only created after runtime detection.
        #[cfg(target_arch = "x86_64")]
        Kind::Avx512 => unsafe { avx512::run_task(task) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Kind::Avx2 => unsafe { avx2::run_task(task) },
        _ => scalar::run_task(task),
    }
}

/// Multiply-add `a * b + c`, fused when the instruction set has FMA.
#[inline(always)]
pub fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// Operands of one Winograd batched-GEMM step (one transform position `t`).
///
/// Computes `m[p * kbn * 16 + kb * 16 + l] = Σ_c u[(kb * c_len + c) * 16 + l] * v[p * v_stride + c]`
/// for `p < np`, `kb < kbn`, `l < 16`: `u` holds `kbn` packed filter blocks of
/// 16 output channels, `v` holds `np` transformed input tiles (one row each).
/// The operands are f32, or bf16 ([`WinoGemmBf16`], which packs `u` by channel pairs).
pub struct WinoGemm<'a, E = f32> {
    pub c_len: usize,
    pub kbn: usize,
    pub np: usize,
    pub u: &'a [E],
    pub v: &'a [E],
    pub v_stride: usize,
    pub m: &'a mut [f32],
}

impl<E> WinoGemm<'_, E> {
    fn check(&self) {
        assert!(self.kbn >= 1 && self.np >= 1 && self.c_len >= 1);
        assert!(self.u.len() >= self.kbn * self.c_len * 16);
        assert!(self.v_stride >= self.c_len);
        assert!(self.v.len() >= (self.np - 1) * self.v_stride + self.c_len);
        assert!(self.m.len() >= self.np * self.kbn * 16);
    }
}

/// Runs one Winograd batched-GEMM step with the micro-kernel of `isa`.
pub fn wino_gemm(isa: Isa, g: WinoGemm<'_>) {
    g.check();
    match isa.kind {
        // SAFETY: feature detected (Isa invariant); bounds checked by `check`.
        #[cfg(target_arch = "x86_64")]
        Kind::Avx512 => unsafe { avx512::wino_gemm(g) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Kind::Avx2 => unsafe { avx2::wino_gemm(g) },
        _ => scalar::wino_gemm(g),
    }
}

/// Operands of a run of fully-connected dot products:
/// `y[r * batch + b] = w[r*inp..(r+1)*inp] · x[b*inp..(b+1)*inp]` for every weight row `r`,
/// on f32 operands or bf16 ones ([`DotRowsBf16`]).
pub struct DotRows<'a, E = f32> {
    pub w: &'a [E],
    pub inp: usize,
    pub x: &'a [E],
    pub batch: usize,
    pub y: &'a mut [f32],
}

/// Computes [`DotRows`]: each weight row is streamed once and reused for up to
/// 4 batch rows from cache (the FC layers are bound by weight bandwidth).
pub fn dot_rows(isa: Isa, d: DotRows<'_>) {
    assert!(d.inp >= 1 && d.batch >= 1 && d.w.len().is_multiple_of(d.inp));
    assert!(d.x.len() >= d.batch * d.inp && d.y.len() >= d.w.len() / d.inp * d.batch);
    match isa.kind {
        // SAFETY: feature detected (Isa invariant); bounds checked above.
        #[cfg(target_arch = "x86_64")]
        Kind::Avx512 => unsafe { avx512::dot_rows(d) },
        _ => run_task(isa, portable::DotRowsTask(d)),
    }
}

/// The kernels' unit tests, each of which runs its kernel on every [`Isa`] of this CPU
/// against a reference, by name: `tools/isa-emulation` runs them on an emulated CPU with the
/// units a development machine may lack (AVX-512, AVX512_BF16, AVX512_VNNI, AVX-VNNI). A
/// failure panics with the test's message. A kernel test joins the list by being written
/// `#[cfg_attr(test, test)] pub(crate) fn` (a plain `#[test]` exists only under `cargo
/// test`); `kernel_checks_list_every_path_test` counts those markers against the list.
#[cfg(any(test, feature = "kernel-checks"))]
pub fn kernel_checks() -> Vec<(&'static str, fn())> {
    macro_rules! named {
        ($($test:path),* $(,)?) => { vec![$((stringify!($test), $test as fn())),*] };
    }
    named![
        tests::run_task_paths_agree,
        tests::wino_gemm_paths_match_scalar,
        tests::dot_rows_paths_match_naive,
        bf16::tests::rounding_is_to_nearest_even,
        bf16::tests::wino_gemm_bf16_paths_match_reference,
        bf16::tests::dot_rows_bf16_paths_match_reference,
        int8::tests::gemm_paths_match_reference_exactly,
        int8::tests::dot_rows_paths_match_reference_exactly,
        int8::tests::row_quantisation_paths_agree_exactly,
        int8::tests::quantize_rounds_and_saturates,
    ]
}

/// Test values in [-0.5, 0.5) from a 64-bit LCG.
#[cfg(any(test, feature = "kernel-checks"))]
fn lcg(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
}

#[cfg(any(test, feature = "kernel-checks"))]
pub(crate) mod tests {
    use super::*;

    /// The features each kernel file enables, from its `#[target_feature(enable = …)]`s.
    #[cfg(test)]
    fn enabled_features(source: &str) -> std::collections::BTreeSet<&str> {
        source
            .split("#[target_feature(enable = \"")
            .skip(1)
            .flat_map(|rest| rest.split('"').next().unwrap_or_default().split(','))
            .collect()
    }

    /// Detection checks every feature the kernels are compiled with (a CPU with AVX-512F
    /// but no AVX-512VL must not get the AVX-512 kernels), and nothing else.
    #[test]
    fn detection_covers_every_enabled_feature() {
        for (source, detected) in [
            (include_str!("avx512.rs"), AVX512_FEATURES),
            (include_str!("avx512_bf16.rs"), AVX512_BF16_FEATURES),
            (include_str!("avx512_vnni.rs"), AVX512_VNNI_FEATURES),
            (include_str!("avx_vnni.rs"), AVX_VNNI_FEATURES),
            (include_str!("avx2.rs"), AVX2_FEATURES),
        ] {
            let enabled = enabled_features(source);
            assert!(!enabled.is_empty());
            let detected: std::collections::BTreeSet<&str> = detected.iter().copied().collect();
            assert_eq!(enabled, detected);
        }
        #[cfg(target_arch = "x86_64")]
        assert!(!cpu_has("avx512_unknown_feature"));
    }

    /// Every test that `kernel_checks` could list is listed, once: a kernel test added
    /// without it would never run on the emulated CPU.
    #[test]
    fn kernel_checks_list_every_path_test() {
        // Markers are whole lines (not the doc comments that mention them).
        let marker = "#[cfg_attr(test, test)]";
        let tests: usize = [
            include_str!("mod.rs"),
            include_str!("bf16.rs"),
            include_str!("int8.rs"),
        ]
        .iter()
        .map(|source| source.lines().filter(|line| line.trim() == marker).count())
        .sum();
        let checks = kernel_checks();
        let names: std::collections::BTreeSet<&str> =
            checks.iter().map(|(name, _)| *name).collect();
        assert_eq!((checks.len(), names.len()), (tests, tests));
    }

    /// Every dispatched micro-kernel must match the scalar reference on all
    /// (kbn, np) shapes, including the register-block tails.
    #[cfg_attr(test, test)]
    pub(crate) fn wino_gemm_paths_match_scalar() {
        let mut seed = 7;
        for c_len in [1, 5, 16, 37] {
            for kbn in 1..=4 {
                for np in 1..=17 {
                    let vs = c_len + 3;
                    let u: Vec<f32> = (0..kbn * c_len * 16).map(|_| lcg(&mut seed)).collect();
                    let v: Vec<f32> = (0..np * vs).map(|_| lcg(&mut seed)).collect();
                    let mut want = vec![0.0; np * kbn * 16];
                    for p in 0..np {
                        for kb in 0..kbn {
                            for l in 0..16 {
                                let mut s = 0.0f64;
                                for c in 0..c_len {
                                    s += u[(kb * c_len + c) * 16 + l] as f64 * v[p * vs + c] as f64;
                                }
                                want[(p * kbn + kb) * 16 + l] = s as f32;
                            }
                        }
                    }
                    for isa in Isa::available() {
                        let mut m = vec![f32::NAN; np * kbn * 16];
                        wino_gemm(
                            isa,
                            WinoGemm {
                                c_len,
                                kbn,
                                np,
                                u: &u,
                                v: &v,
                                v_stride: vs,
                                m: &mut m,
                            },
                        );
                        for (a, b) in m.iter().zip(&want) {
                            assert!(
                                (a - b).abs() < 1e-4,
                                "{} c={c_len} kbn={kbn} np={np}",
                                isa.name()
                            );
                        }
                    }
                }
            }
        }
    }

    struct Axpy<'a>(&'a mut [f32], &'a [f32]);
    impl SimdTask for Axpy<'_> {
        type Output = ();
        #[inline(always)]
        fn run<const FMA: bool>(self) {
            for (y, x) in self.0.iter_mut().zip(self.1) {
                *y = madd::<FMA>(2.0, *x, *y);
            }
        }
    }

    #[cfg_attr(test, test)]
    pub(crate) fn dot_rows_paths_match_naive() {
        let mut seed = 5;
        for inp in [1, 15, 16, 33, 100] {
            for rows in [1, 3, 4, 9] {
                for batch in [1, 2, 4, 5, 8] {
                    let w: Vec<f32> = (0..rows * inp).map(|_| lcg(&mut seed)).collect();
                    let x: Vec<f32> = (0..batch * inp).map(|_| lcg(&mut seed)).collect();
                    for isa in Isa::available() {
                        let mut y = vec![f32::NAN; rows * batch];
                        dot_rows(
                            isa,
                            DotRows {
                                w: &w,
                                inp,
                                x: &x,
                                batch,
                                y: &mut y,
                            },
                        );
                        for r in 0..rows {
                            for b in 0..batch {
                                let want: f32 =
                                    (0..inp).map(|i| w[r * inp + i] * x[b * inp + i]).sum();
                                let got = y[r * batch + b];
                                assert!(
                                    (got - want).abs() < 1e-4,
                                    "{} {inp} {rows} {batch}",
                                    isa.name()
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[cfg_attr(test, test)]
    pub(crate) fn run_task_paths_agree() {
        let x: Vec<f32> = (0..100).map(|i| i as f32 * 0.25).collect();
        for isa in Isa::available() {
            let mut y = vec![1.0; 100];
            run_task(isa, Axpy(&mut y, &x));
            assert!(
                y.iter().zip(&x).all(|(y, x)| *y == 1.0 + 2.0 * x),
                "{}",
                isa.name()
            );
        }
    }
}
