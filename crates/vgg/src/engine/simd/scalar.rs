//! Portable fallback kernels (no `unsafe`); also the reference the SIMD paths are tested against.

use super::{SimdTask, WinoGemm};

/// Runs portable lane code without extra target features (no cheap FMA).
pub fn run_task<T: SimdTask>(task: T) -> T::Output {
    task.run::<false>()
}

/// Winograd batched-GEMM step (see [`WinoGemm`]), accumulating 16 lanes at a time.
pub fn wino_gemm(g: WinoGemm<'_>) {
    let ms = g.kbn * 16;
    for p in 0..g.np {
        let v = &g.v[p * g.v_stride..p * g.v_stride + g.c_len];
        for kb in 0..g.kbn {
            let u = &g.u[kb * g.c_len * 16..(kb + 1) * g.c_len * 16];
            let mut acc = [0.0f32; 16];
            for (x, w) in v.iter().zip(u.chunks_exact(16)) {
                for (a, w) in acc.iter_mut().zip(w) {
                    *a += w * x;
                }
            }
            g.m[p * ms + kb * 16..p * ms + kb * 16 + 16].copy_from_slice(&acc);
        }
    }
}
