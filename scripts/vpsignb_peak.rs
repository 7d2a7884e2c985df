//! The AVX2 int8 inner step today against the s8×s8 one BENCHMARKS.md prices ("Next steps"
//! in the int8 section), in one process, alternating, 4 rounds. Standalone (not part of the
//! workspace):
//!
//!     rustc --edition 2021 -O -C target-cpu=native scripts/vpsignb_peak.rs -o /tmp/vpsignb_peak && /tmp/vpsignb_peak
//!
//! u8×s8 (today): `vpmaddubsw` + `vpmaddwd` by ones + `vpaddd`, exact only for 7-bit weights.
//! s8×s8: `vpsignb` moves the activation's sign onto the weight first, so `vpmaddubsw` sees
//! |activation| ≤ 128 and 8-bit weights without saturating. 12 independent accumulator
//! chains; each step reads its own accumulator, so no product can be hoisted out of the loop.
use std::arch::x86_64::*;
use std::time::Instant;

const CHAINS: usize = 12;

#[target_feature(enable = "avx2")]
unsafe fn u8_s8(iters: usize, seed: i8) -> i32 {
    let (w, ones) = (_mm256_set1_epi8(seed), _mm256_set1_epi16(1));
    let mut acc = [_mm256_set1_epi32(seed as i32); CHAINS];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            let pairs = _mm256_maddubs_epi16(*a, w);
            *a = _mm256_add_epi32(*a, _mm256_madd_epi16(pairs, ones));
        }
    }
    fold(acc)
}

#[target_feature(enable = "avx2")]
unsafe fn s8_s8(iters: usize, seed: i8) -> i32 {
    let (w, ones) = (_mm256_set1_epi8(seed), _mm256_set1_epi16(1));
    let magnitude = _mm256_set1_epi8(3);
    let mut acc = [_mm256_set1_epi32(seed as i32); CHAINS];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            let signed_w = _mm256_sign_epi8(w, *a);
            let pairs = _mm256_maddubs_epi16(magnitude, signed_w);
            *a = _mm256_add_epi32(*a, _mm256_madd_epi16(pairs, ones));
        }
    }
    fold(acc)
}

#[target_feature(enable = "avx2")]
unsafe fn fold(acc: [__m256i; CHAINS]) -> i32 {
    let total = acc.into_iter().fold(_mm256_setzero_si256(), |s, a| _mm256_add_epi32(s, a));
    let lanes: [i32; 8] = unsafe { std::mem::transmute(total) };
    lanes.iter().fold(0, |s, v| s.wrapping_add(*v))
}

fn main() {
    assert!(is_x86_feature_detected!("avx2"), "needs AVX2");
    let iters = 20_000_000;
    let seed = std::env::args().count() as i8; // opaque to the compiler
    for round in 1..=4 {
        for (name, step) in [("u8xs8", u8_s8 as unsafe fn(usize, i8) -> i32), ("s8xs8", s8_s8)] {
            let start = Instant::now();
            let check = unsafe { step(iters, seed) };
            let products = (iters * CHAINS * 32) as f64;
            let rate = products / start.elapsed().as_secs_f64() / 1e9;
            println!("round {round} {name}: {rate:.1} G products/s (checksum {check})");
        }
    }
}
