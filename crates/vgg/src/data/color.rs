//! AlexNet's colour augmentation, which the VGG paper trains with (§3.1, "random RGB colour
//! shift"): principal components of the training set's RGB pixel values, and per image a
//! shift along them, `Σᵢ αᵢ λᵢ pᵢ` with `αᵢ ~ N(0, σ²)` drawn once per image and added to
//! every pixel. Pixel values are in [0, 1] units, as after `to_tensor`.

use image::RgbImage;
use rand::Rng;
use rand_distr::{Distribution, Normal};

use crate::error::{Error, Result};

/// The eigen-decomposition of a training set's 3×3 RGB covariance.
#[derive(Debug, Clone, PartialEq)]
pub struct ColorPca {
    /// Variances along the principal components, largest first.
    pub eigenvalues: [f64; 3],
    /// Unit principal components (RGB), in the order of `eigenvalues`.
    pub eigenvectors: [[f64; 3]; 3],
}

/// Running sums of pixel values and their products, in f64.
#[derive(Debug, Default, Clone)]
pub struct PixelMoments {
    count: f64,
    sum: [f64; 3],
    products: [[f64; 3]; 3],
}

impl PixelMoments {
    pub fn add(&mut self, image: &RgbImage) {
        for pixel in image.pixels() {
            let v = pixel.0.map(|c| f64::from(c) / 255.0);
            for i in 0..3 {
                self.sum[i] += v[i];
                for j in 0..3 {
                    self.products[i][j] += v[i] * v[j];
                }
            }
        }
        self.count += f64::from(image.width()) * f64::from(image.height());
    }

    /// Both sets of pixels together.
    pub fn merge(mut self, other: PixelMoments) -> PixelMoments {
        self.count += other.count;
        for i in 0..3 {
            self.sum[i] += other.sum[i];
            for j in 0..3 {
                self.products[i][j] += other.products[i][j];
            }
        }
        self
    }

    /// The (biased) covariance of every pixel added.
    pub fn covariance(&self) -> Result<[[f64; 3]; 3]> {
        if self.count < 2.0 {
            return Err(Error::BadArgument(
                "the colour shift needs the pixel statistics of at least one image".into(),
            ));
        }
        let mean = self.sum.map(|s| s / self.count);
        Ok(std::array::from_fn(|i| {
            std::array::from_fn(|j| self.products[i][j] / self.count - mean[i] * mean[j])
        }))
    }
}

impl ColorPca {
    /// The principal components of a symmetric covariance (cyclic Jacobi rotations: exact
    /// to rounding for 3×3, no linear-algebra dependency).
    pub fn from_covariance(covariance: [[f64; 3]; 3]) -> ColorPca {
        let mut a = covariance;
        let mut v = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        for _ in 0..50 {
            let off = a[0][1].powi(2) + a[0][2].powi(2) + a[1][2].powi(2);
            if off < 1e-30 {
                break;
            }
            for (p, q) in [(0, 1), (0, 2), (1, 2)] {
                rotate(&mut a, &mut v, p, q);
            }
        }
        let mut order = [0, 1, 2];
        order.sort_by(|&i, &j| a[j][j].total_cmp(&a[i][i]));
        ColorPca {
            eigenvalues: order.map(|k| a[k][k].max(0.0)),
            eigenvectors: order.map(|k| [v[0][k], v[1][k], v[2][k]]),
        }
    }

    /// One image's shift in [0, 1] RGB units: `Σᵢ αᵢ λᵢ pᵢ`, `αᵢ ~ N(0, σ²)`.
    pub fn draw_shift(&self, sigma: f64, rng: &mut impl Rng) -> [f32; 3] {
        let normal = Normal::new(0.0, sigma).expect("sigma is validated finite and ≥ 0");
        let alpha: [f64; 3] = std::array::from_fn(|_| normal.sample(rng));
        std::array::from_fn(|c| {
            (0..3)
                .map(|i| alpha[i] * self.eigenvalues[i] * self.eigenvectors[i][c])
                .sum::<f64>() as f32
        })
    }
}

/// Adds an RGB `shift` (in [0, 1] units) to a normalised CHW tensor: `(x + s − μ)/σ` is
/// `(x − μ)/σ + s/σ`, so each channel moves by `s/σ`.
pub fn add_shift(chw: &mut [f32], shift: [f32; 3], std: [f32; 3]) {
    let plane = chw.len() / 3;
    for (c, channel) in chw.chunks_exact_mut(plane.max(1)).enumerate().take(3) {
        let delta = shift[c] / std[c];
        channel.iter_mut().for_each(|x| *x += delta);
    }
}

/// One Jacobi rotation zeroing `a[p][q]`, accumulated into the eigenvector columns `v`.
fn rotate(a: &mut [[f64; 3]; 3], v: &mut [[f64; 3]; 3], p: usize, q: usize) {
    if a[p][q].abs() < 1e-300 {
        return;
    }
    let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
    let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
    let t = if theta == 0.0 { 1.0 } else { t };
    let (c, s) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
    // A ← Jᵀ A J: rotate the columns p, q, then the rows; V ← V J.
    let turn = |x: f64, y: f64| (c * x - s * y, s * x + c * y);
    for row in a.iter_mut().chain(v.iter_mut()) {
        (row[p], row[q]) = turn(row[p], row[q]);
    }
    let (row_p, row_q) = (a[p], a[q]);
    for k in 0..3 {
        (a[p][k], a[q][k]) = turn(row_p[k], row_q[k]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const COVARIANCE: [[f64; 3]; 3] = [[0.07, 0.05, 0.03], [0.05, 0.06, 0.04], [0.03, 0.04, 0.05]];

    #[test]
    fn components_diagonalise_the_covariance() {
        let pca = ColorPca::from_covariance(COVARIANCE);
        assert!(
            pca.eigenvalues[0] >= pca.eigenvalues[1] && pca.eigenvalues[1] >= pca.eigenvalues[2]
        );
        for (i, p) in pca.eigenvectors.iter().enumerate() {
            let norm: f64 = p.iter().map(|x| x * x).sum();
            assert!((norm - 1.0).abs() < 1e-12);
            for r in 0..3 {
                let cp: f64 = (0..3).map(|c| COVARIANCE[r][c] * p[c]).sum();
                assert!((cp - pca.eigenvalues[i] * p[r]).abs() < 1e-12, "C p = λ p");
            }
        }
        let trace: f64 = (0..3).map(|i| COVARIANCE[i][i]).sum();
        assert!((pca.eigenvalues.iter().sum::<f64>() - trace).abs() < 1e-12);
    }

    /// The shifts' covariance is `σ² P diag(λ²) Pᵀ` and their mean is zero.
    #[test]
    fn shift_statistics_follow_the_components() {
        let pca = ColorPca::from_covariance(COVARIANCE);
        let (sigma, draws) = (0.1, 200_000);
        let mut rng = StdRng::seed_from_u64(3);
        let mut sum = [0.0f64; 3];
        let mut products = [[0.0f64; 3]; 3];
        for _ in 0..draws {
            let s = pca.draw_shift(sigma, &mut rng).map(f64::from);
            for i in 0..3 {
                sum[i] += s[i];
                for j in 0..3 {
                    products[i][j] += s[i] * s[j];
                }
            }
        }
        let n = f64::from(draws);
        for i in 0..3 {
            assert!((sum[i] / n).abs() < 2e-4, "mean {}", sum[i] / n);
            for j in 0..3 {
                let want: f64 = (0..3)
                    .map(|k| {
                        let p = pca.eigenvectors[k];
                        sigma * sigma * pca.eigenvalues[k].powi(2) * p[i] * p[j]
                    })
                    .sum();
                let got = products[i][j] / n;
                assert!(
                    (got - want).abs() < 0.02 * want.abs().max(1e-4),
                    "cov[{i}][{j}] {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn moments_of_images_give_their_covariance() {
        let image = RgbImage::from_fn(16, 8, |x, y| {
            image::Rgb([(x * 16) as u8, (y * 30) as u8, (x * 8 + y * 10) as u8])
        });
        let mut moments = PixelMoments::default();
        moments.add(&image);
        let cov = moments.covariance().unwrap();
        let pixels: Vec<[f64; 3]> = image
            .pixels()
            .map(|p| p.0.map(|c| f64::from(c) / 255.0))
            .collect();
        let n = pixels.len() as f64;
        let mean: [f64; 3] = std::array::from_fn(|c| pixels.iter().map(|p| p[c]).sum::<f64>() / n);
        for i in 0..3 {
            for j in 0..3 {
                let want = pixels
                    .iter()
                    .map(|p| (p[i] - mean[i]) * (p[j] - mean[j]))
                    .sum::<f64>()
                    / n;
                assert!((cov[i][j] - want).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn shift_moves_each_normalised_channel_by_shift_over_std() {
        let mut chw = vec![0.0f32; 3 * 4];
        add_shift(&mut chw, [0.1, -0.2, 0.3], [0.5, 0.25, 1.0]);
        assert_eq!(
            chw,
            [
                0.2, 0.2, 0.2, 0.2, -0.8, -0.8, -0.8, -0.8, 0.3, 0.3, 0.3, 0.3
            ]
        );
    }
}
