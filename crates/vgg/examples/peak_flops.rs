//! This machine's peak GFLOP/s for the engine's product instructions (`vfmadd231ps`, zmm
//! with AVX-512 and ymm with AVX2, in f32; `vdpbf16ps zmm` in bf16), on 1 thread and on
//! `threads` threads:
//! `cargo run --release --example peak_flops -- [threads]`. Divide a benchmark's effective
//! GFLOP/s by these to see how far it is from the machine's limit.

use vgg::engine::Precision;
use vgg::engine::simd::{Isa, peak_gflops};

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .map_or(2, |s| s.parse().expect("threads: a number"));
    let isa = Isa::detect();
    println!("isa: {}", isa.name());
    for precision in Precision::ALL {
        for t in [1, threads] {
            match peak_gflops(isa, precision, t) {
                Some(g) => println!("{precision} peak, {t} thread(s): {g:.0} GFLOP/s"),
                None => println!("{precision}: this CPU lacks the instruction"),
            }
        }
    }
}
