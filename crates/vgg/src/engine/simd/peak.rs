//! The machine's peak arithmetic rate for the instructions the engine's GEMMs use, so a
//! benchmark can say how far a kernel is from it (`examples/peak_flops.rs`).

use std::time::Instant;

use super::{Isa, Kind};
use crate::engine::Precision;

/// Loop iterations per timed run (12 instructions each): long enough to dwarf the timer.
const ITERS: usize = 20_000_000;

/// Peak GFLOP/s (a multiply-add counts 2) of `precision`'s product instruction on `threads`
/// threads, each running independent chains: `vfmadd231ps` (zmm with AVX-512, else ymm)
/// for f32, `vdpbf16ps zmm` for bf16, `vpdpbusd zmm` for int8 with AVX512_VNNI and its
/// AVX2 emulation (`vpmaddubsw` + `vpmaddwd` + `vpaddd` on ymm) without (also on an AVX-VNNI
/// CPU, whose `vpdpbusd ymm` has no micro-benchmark here). `None` when this CPU lacks the
/// instruction (bf16's emulation runs on the f32 FMA units).
pub fn peak_gflops(isa: Isa, precision: Precision, threads: usize) -> Option<f64> {
    let (kernel, macs_per_instruction): (fn(usize) -> f32, usize) = match precision {
        #[cfg(target_arch = "x86_64")]
        Precision::F32 if isa.kind == Kind::Avx512 => {
            // SAFETY: AVX-512F was detected (Isa invariant).
            (|n| unsafe { super::avx512::fma_peak(n) }, 16)
        }
        #[cfg(target_arch = "x86_64")]
        Precision::F32 if isa.kind == Kind::Avx2 => {
            // SAFETY: AVX2 and FMA were detected (Isa invariant).
            (|n| unsafe { super::avx2::fma_peak(n) }, 8)
        }
        #[cfg(target_arch = "x86_64")]
        Precision::Bf16 if isa.bf16 => {
            // SAFETY: AVX512_BF16 was detected (Isa invariant).
            (|n| unsafe { super::avx512_bf16::dpbf16_peak(n) }, 32)
        }
        #[cfg(target_arch = "x86_64")]
        Precision::Int8 if isa.vnni && isa.kind == Kind::Avx512 => {
            // SAFETY: AVX512_VNNI was detected (Isa invariant).
            (|n| unsafe { super::avx512_vnni::dpbusd_peak(n) } as f32, 64)
        }
        #[cfg(target_arch = "x86_64")]
        Precision::Int8 if matches!(isa.kind, Kind::Avx2 | Kind::Avx512) => {
            // SAFETY: AVX2 was detected (an AVX-512 `Isa` implies it too).
            (|n| unsafe { super::avx2::dot4_peak(n) } as f32, 32)
        }
        _ => return None,
    };
    let start = Instant::now();
    let sums: Vec<f32> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..threads.max(1))
            .map(|_| s.spawn(move || kernel(ITERS)))
            .collect();
        runs.into_iter()
            .map(|r| r.join().unwrap_or(f32::NAN))
            .collect()
    });
    let seconds = start.elapsed().as_secs_f64();
    std::hint::black_box(sums);
    let macs = (threads.max(1) * ITERS * 12 * macs_per_instruction) as f64;
    Some(2.0 * macs / seconds / 1e9)
}
