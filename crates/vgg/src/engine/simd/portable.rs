//! Portable lane implementations of kernels that have a hand-written AVX-512
//! version; compiled for AVX2 and the scalar fallback through [`SimdTask`].

use super::{DotRows, SimdTask, madd};

/// [`DotRows`] on 16-lane accumulators, 4 rows × up to 4 batch rows per block.
pub struct DotRowsTask<'a>(pub DotRows<'a>);

impl SimdTask for DotRowsTask<'_> {
    type Output = ();

    #[inline(always)]
    fn run<const FMA: bool>(self) {
        let d = self.0;
        let rows = d.w.len() / d.inp;
        for r in 0..rows {
            let w = &d.w[r * d.inp..(r + 1) * d.inp];
            for b in 0..d.batch {
                let x = &d.x[b * d.inp..(b + 1) * d.inp];
                let mut acc = [0.0f32; 16];
                let (wc, xc) = (w.chunks_exact(16), x.chunks_exact(16));
                let tail: f32 = wc
                    .remainder()
                    .iter()
                    .zip(xc.remainder())
                    .map(|(a, b)| a * b)
                    .sum();
                for (wl, xl) in wc.zip(xc) {
                    for l in 0..16 {
                        acc[l] = madd::<FMA>(wl[l], xl[l], acc[l]);
                    }
                }
                d.y[r * d.batch + b] = acc.iter().sum::<f32>() + tail;
            }
        }
    }
}
