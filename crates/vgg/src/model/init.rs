//! torchvision's weight initialisation (`VGG.__init__` with `init_weights=True`), from a seed.
//!
//! Each tensor draws from its own generator, seeded by the model seed and the tensor's
//! state_dict key, so a tensor's initial values do not depend on which other layers exist.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};

use crate::model::layers::{LayerKind, TensorSpec};

/// The initial values of one tensor, as f32 (BatchNorm's `num_batches_tracked` is 0 too).
pub fn initial_values(kind: &LayerKind, tensor: &TensorSpec, seed: u64, key: &str) -> Vec<f32> {
    let len = tensor.shape.iter().product::<usize>();
    let std = match (kind, tensor.name) {
        // Kaiming normal, mode fan_out, ReLU gain.
        (LayerKind::Conv2d { out_channels, .. }, "weight") => {
            (2.0 / (out_channels * 9) as f32).sqrt()
        }
        (LayerKind::Linear { .. }, "weight") => 0.01,
        (LayerKind::BatchNorm2d { .. }, "weight" | "running_var") => return vec![1.0; len],
        _ => return vec![0.0; len],
    };
    let normal = Normal::new(0.0f32, std).expect("std is finite and positive");
    let mut rng = StdRng::seed_from_u64(seed ^ fnv1a(key));
    (0..len).map(|_| normal.sample(&mut rng)).collect()
}

/// A stable 64-bit hash (FNV-1a): `std`'s hasher may change between Rust releases.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn std_of(values: &[f32]) -> f64 {
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
        (values
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt()
    }

    #[test]
    fn kaiming_fan_out_and_linear_std() {
        let conv = LayerKind::Conv2d {
            in_channels: 64,
            out_channels: 128,
        };
        let spec = &conv.tensors()[0];
        let w = initial_values(&conv, spec, 7, "features.3.weight");
        let expected = (2.0f64 / (128.0 * 9.0)).sqrt();
        assert!((std_of(&w) / expected - 1.0).abs() < 0.02);
        assert!(
            initial_values(&conv, &conv.tensors()[1], 7, "b")
                .iter()
                .all(|&v| v == 0.0)
        );

        let linear = LayerKind::Linear {
            in_features: 300,
            out_features: 200,
        };
        let w = initial_values(&linear, &linear.tensors()[0], 7, "classifier.0.weight");
        assert!((std_of(&w) / 0.01 - 1.0).abs() < 0.02);
    }

    #[test]
    fn seeded_and_key_dependent() {
        let conv = LayerKind::Conv2d {
            in_channels: 3,
            out_channels: 8,
        };
        let spec = &conv.tensors()[0];
        let a = initial_values(&conv, spec, 1, "features.0.weight");
        assert_eq!(a, initial_values(&conv, spec, 1, "features.0.weight"));
        assert_ne!(a, initial_values(&conv, spec, 2, "features.0.weight"));
        assert_ne!(a, initial_values(&conv, spec, 1, "features.2.weight"));
    }
}
