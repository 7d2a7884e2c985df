//! Winograd F(m×m, 3×3) transforms: the 1-D input/output transforms on
//! 16-channel lanes (used for the 2-D tile transforms via row/column passes)
//! and the plan-time filter transform `G g Gᵀ`.
//!
//! Matrices follow Lavin & Gray (2016): F(2,3) with points {0, ±1, ∞}, F(4,3) with
//! points {0, ±1, ±2, ∞}, F(6,3) with points {0, ±1, ±2, ±1/2, ∞}. The 1-D transforms are written out
//! by hand to skip the many zero/±1 entries of `Bᵀ` and `Aᵀ`.

/// 16 channels of one element, vectorised by LLVM under the chosen target features.
pub(crate) type Lane = [f32; 16];

/// A lane of zeros.
pub(crate) const ZERO: Lane = [0.0; 16];

/// A Winograd tile algorithm; arrays are sized for the largest (α = 8).
pub(crate) trait Wino {
    /// Output tile size m.
    const M: usize;
    /// Input tile size α = m + 2.
    const A: usize;
    /// `Bᵀ d` on the first α lanes.
    fn input_1d(d: &[Lane; 8]) -> [Lane; 8];
    /// `Aᵀ m`: first `M` of the result are valid.
    fn output_1d(m: &[Lane; 8]) -> [Lane; 8];
}

#[inline(always)]
fn zip(a: &Lane, b: &Lane, f: impl Fn(f32, f32) -> f32) -> Lane {
    let mut r = ZERO;
    for l in 0..16 {
        r[l] = f(a[l], b[l]);
    }
    r
}

#[inline(always)]
fn add(a: &Lane, b: &Lane) -> Lane {
    zip(a, b, |x, y| x + y)
}

#[inline(always)]
fn sub(a: &Lane, b: &Lane) -> Lane {
    zip(a, b, |x, y| x - y)
}

/// `a + s·b`.
#[inline(always)]
fn axpy(a: &Lane, s: f32, b: &Lane) -> Lane {
    zip(a, b, |x, y| x + s * y)
}

/// F(2×2, 3×3): 16 products per 4 outputs; every transform entry is 0, ±1 or ±1/2, so
/// rounding the transformed operands costs little more than rounding the inputs (the bf16
/// engine's choice).
pub(crate) struct F23;

impl Wino for F23 {
    const M: usize = 2;
    const A: usize = 4;

    #[inline(always)]
    fn input_1d(d: &[Lane; 8]) -> [Lane; 8] {
        let mut r = [ZERO; 8];
        r[0] = sub(&d[0], &d[2]);
        r[1] = add(&d[1], &d[2]);
        r[2] = sub(&d[2], &d[1]);
        r[3] = sub(&d[1], &d[3]);
        r
    }

    #[inline(always)]
    fn output_1d(m: &[Lane; 8]) -> [Lane; 8] {
        let mut r = [ZERO; 8];
        r[0] = add(&add(&m[0], &m[1]), &m[2]);
        r[1] = sub(&sub(&m[1], &m[2]), &m[3]);
        r
    }
}

/// F(4×4, 3×3): 36 products per 16 outputs.
pub(crate) struct F43;

impl Wino for F43 {
    const M: usize = 4;
    const A: usize = 6;

    #[inline(always)]
    fn input_1d(d: &[Lane; 8]) -> [Lane; 8] {
        let a = axpy(&d[4], -4.0, &d[2]);
        let b = axpy(&d[3], -4.0, &d[1]);
        let c = sub(&d[4], &d[2]);
        let e = sub(&d[3], &d[1]);
        let mut r = [ZERO; 8];
        r[0] = axpy(&axpy(&d[4], -5.0, &d[2]), 4.0, &d[0]);
        r[1] = add(&a, &b);
        r[2] = sub(&a, &b);
        r[3] = axpy(&c, 2.0, &e);
        r[4] = axpy(&c, -2.0, &e);
        r[5] = axpy(&axpy(&d[5], -5.0, &d[3]), 4.0, &d[1]);
        r
    }

    #[inline(always)]
    fn output_1d(m: &[Lane; 8]) -> [Lane; 8] {
        let s12 = add(&m[1], &m[2]);
        let d12 = sub(&m[1], &m[2]);
        let s34 = add(&m[3], &m[4]);
        let d34 = sub(&m[3], &m[4]);
        let mut r = [ZERO; 8];
        r[0] = add(&add(&m[0], &s12), &s34);
        r[1] = axpy(&d12, 2.0, &d34);
        r[2] = axpy(&s12, 4.0, &s34);
        r[3] = add(&axpy(&d12, 8.0, &d34), &m[5]);
        r
    }
}

/// F(6×6, 3×3): 64 products per 36 outputs.
pub(crate) struct F63;

impl Wino for F63 {
    const M: usize = 6;
    const A: usize = 8;

    #[inline(always)]
    fn input_1d(d: &[Lane; 8]) -> [Lane; 8] {
        let mut r = [ZERO; 8];
        r[0] = axpy(&sub(&d[0], &d[6]), 5.25, &sub(&d[4], &d[2]));
        r[7] = axpy(&sub(&d[7], &d[1]), 5.25, &sub(&d[3], &d[5]));
        let p = axpy(&add(&d[2], &d[6]), -4.25, &d[4]);
        let q = axpy(&add(&d[1], &d[5]), -4.25, &d[3]);
        r[1] = add(&p, &q);
        r[2] = sub(&p, &q);
        let p = axpy(&axpy(&d[6], 0.25, &d[2]), -1.25, &d[4]);
        let q = axpy(
            &axpy(&zip(&d[1], &d[1], |x, _| 0.5 * x), -2.5, &d[3]),
            2.0,
            &d[5],
        );
        r[3] = add(&p, &q);
        r[4] = sub(&p, &q);
        let p = axpy(&axpy(&d[6], 4.0, &d[2]), -5.0, &d[4]);
        let q = axpy(
            &axpy(&zip(&d[1], &d[1], |x, _| 2.0 * x), -2.5, &d[3]),
            0.5,
            &d[5],
        );
        r[5] = add(&p, &q);
        r[6] = sub(&p, &q);
        r
    }

    #[inline(always)]
    fn output_1d(m: &[Lane; 8]) -> [Lane; 8] {
        let a1 = add(&m[1], &m[2]);
        let b1 = sub(&m[1], &m[2]);
        let a2 = add(&m[3], &m[4]);
        let b2 = sub(&m[3], &m[4]);
        let a3 = add(&m[5], &m[6]);
        let b3 = sub(&m[5], &m[6]);
        let mut r = [ZERO; 8];
        r[0] = add(&add(&m[0], &a1), &add(&a2, &a3));
        r[1] = axpy(&axpy(&b1, 2.0, &b2), 0.5, &b3);
        r[2] = axpy(&axpy(&a1, 4.0, &a2), 0.25, &a3);
        r[3] = axpy(&axpy(&b1, 8.0, &b2), 0.125, &b3);
        r[4] = axpy(&axpy(&a1, 16.0, &a2), 0.0625, &a3);
        r[5] = add(&axpy(&axpy(&b1, 32.0, &b2), 0.03125, &b3), &m[7]);
        r
    }
}

/// `G` of F(2,3) (4×3).
const G23: [[f64; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// `G` of F(4,3) (6×3).
const G43: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// `G` of F(6,3) (8×3).
const G63: [[f64; 3]; 8] = [
    [1.0, 0.0, 0.0],
    [-2.0 / 9.0, -2.0 / 9.0, -2.0 / 9.0],
    [-2.0 / 9.0, 2.0 / 9.0, -2.0 / 9.0],
    [1.0 / 90.0, 1.0 / 45.0, 2.0 / 45.0],
    [1.0 / 90.0, -1.0 / 45.0, 2.0 / 45.0],
    [32.0 / 45.0, 16.0 / 45.0, 8.0 / 45.0],
    [32.0 / 45.0, -16.0 / 45.0, 8.0 / 45.0],
    [0.0, 0.0, 1.0],
];

/// `G g Gᵀ` (α×α, row-major) for one 3×3 filter `g`, computed in f64 so the
/// plan-time transform adds no error of its own.
pub(crate) fn filter_transform(m: usize, g: &[f32]) -> Vec<f32> {
    let gm = g_matrix(m);
    let a = gm.len();
    let mut tmp = vec![[0.0f64; 3]; a]; // G g
    for (i, row) in gm.iter().enumerate() {
        for x in 0..3 {
            tmp[i][x] = (0..3).map(|y| row[y] * g[y * 3 + x] as f64).sum();
        }
    }
    let mut out = vec![0.0f32; a * a];
    for i in 0..a {
        for (j, row) in gm.iter().enumerate() {
            out[i * a + j] = (0..3).map(|x| tmp[i][x] * row[x]).sum::<f64>() as f32;
        }
    }
    out
}

/// `G` of F(m, 3), m ∈ {2, 4, 6}.
fn g_matrix(m: usize) -> &'static [[f64; 3]] {
    match m {
        2 => &G23,
        4 => &G43,
        _ => &G63,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1-D check of `Aᵀ[(G g) ⊙ (Bᵀ d)]` against the direct correlation.
    fn check_1d<W: Wino>() {
        let d: Vec<f32> = (0..W::A)
            .map(|i| ((i * 7 + 3) % 11) as f32 * 0.3 - 1.4)
            .collect();
        let g = [0.7f32, -1.3, 0.45];
        // G g via the 2-D routine on a filter that is g in row 0 and [1,0,0] in column 0.
        let mut g2 = [0.0f32; 9];
        g2[..3].copy_from_slice(&g);
        let u2 = filter_transform(W::M, &g2);
        let gm = g_matrix(W::M);
        let mut dl = [ZERO; 8];
        for i in 0..W::A {
            dl[i] = [d[i]; 16];
        }
        let v = W::input_1d(&dl);
        let mut prod = [ZERO; 8];
        for j in 0..W::A {
            // u2[i][j] = G[i][0] * (G g)[j]; divide the row-0 factor back out.
            let gg = u2[j] as f64 / gm[0][0];
            prod[j] = [v[j][0] * gg as f32; 16];
        }
        let y = W::output_1d(&prod);
        for i in 0..W::M {
            let want: f32 = (0..3).map(|k| d[i + k] * g[k]).sum();
            assert!(
                (y[i][0] - want).abs() < 1e-4,
                "m={} i={i}: {} vs {want}",
                W::M,
                y[i][0]
            );
        }
    }

    #[test]
    fn f23_is_a_correlation() {
        check_1d::<F23>();
    }

    #[test]
    fn f43_is_a_correlation() {
        check_1d::<F43>();
    }

    #[test]
    fn f63_is_a_correlation() {
        check_1d::<F63>();
    }
}
