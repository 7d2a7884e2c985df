//! Weight initialisation from a seed: torchvision's (`VGG.__init__` with
//! `init_weights=True`), PyTorch's module defaults, or Glorot's.
//!
//! Each tensor draws from its own generator, seeded by the model seed and the tensor's
//! state_dict key, so a tensor's initial values do not depend on which other layers exist.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal, Uniform};

use crate::error::{Error, Result};
use crate::model::layers::{LayerKind, TensorSpec};

/// How a fresh network's weights are drawn. Batch norm always starts at γ = 1, β = 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// torchvision's `VGG.__init__`: convolutions Kaiming-normal (fan-out, ReLU gain), linear
    /// layers N(0, 0.01²), biases 0. What torchvision's checkpoints started from.
    #[default]
    Torchvision,
    /// PyTorch's module defaults (`reset_parameters`: Kaiming-uniform with a = √5): weights
    /// and biases U(±1/√fan_in). What a network built from plain `nn.Conv2d`/`nn.Linear`
    /// layers starts from.
    Pytorch,
    /// Glorot & Bengio's uniform initialisation, U(±√(6/(fan_in + fan_out))), biases 0: the
    /// paper found it trains the deep configurations from scratch (§3.1).
    Glorot,
}

impl std::str::FromStr for Init {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "torchvision" => Ok(Init::Torchvision),
            "pytorch" => Ok(Init::Pytorch),
            "glorot" => Ok(Init::Glorot),
            other => Err(Error::BadArgument(format!(
                "unknown init `{other}`; valid: torchvision, pytorch, glorot"
            ))),
        }
    }
}

/// The initial values of one tensor with torchvision's initialisation.
pub fn initial_values(kind: &LayerKind, tensor: &TensorSpec, seed: u64, key: &str) -> Vec<f32> {
    init_values(Init::Torchvision, kind, tensor, seed, key)
}

/// The initial values of one tensor, as f32 (BatchNorm's `num_batches_tracked` is 0 too).
pub fn init_values(
    init: Init,
    kind: &LayerKind,
    tensor: &TensorSpec,
    seed: u64,
    key: &str,
) -> Vec<f32> {
    let len = tensor.shape.iter().product::<usize>();
    let Some((fan_in, fan_out)) = fans(kind) else {
        let one = matches!(tensor.name, "weight" | "running_var");
        return vec![if one { 1.0 } else { 0.0 }; len];
    };
    let mut rng = StdRng::seed_from_u64(seed ^ fnv1a(key));
    let weight = tensor.name == "weight";
    let bound = match (init, weight) {
        (Init::Torchvision, true) => {
            let std = match kind {
                LayerKind::Linear { .. } => 0.01,
                _ => (2.0 / fan_out as f32).sqrt(),
            };
            let normal = Normal::new(0.0f32, std).expect("std is finite and positive");
            return (0..len).map(|_| normal.sample(&mut rng)).collect();
        }
        (Init::Pytorch, _) => 1.0 / (fan_in as f32).sqrt(),
        (Init::Glorot, true) => (6.0 / (fan_in + fan_out) as f32).sqrt(),
        (Init::Torchvision | Init::Glorot, false) => return vec![0.0; len],
    };
    let uniform = Uniform::new_inclusive(-bound, bound).expect("the bound is finite");
    (0..len).map(|_| uniform.sample(&mut rng)).collect()
}

/// A convolution's or linear layer's fan-in and fan-out; `None` for other layers.
fn fans(kind: &LayerKind) -> Option<(usize, usize)> {
    match *kind {
        LayerKind::Conv2d {
            in_channels,
            out_channels,
        } => Some((in_channels * 9, out_channels * 9)),
        LayerKind::FcConv {
            in_channels,
            out_channels,
            kernel,
        } => Some((
            in_channels * kernel * kernel,
            out_channels * kernel * kernel,
        )),
        LayerKind::Linear {
            in_features,
            out_features,
        } => Some((in_features, out_features)),
        _ => None,
    }
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

    #[test]
    fn pytorch_and_glorot_bounds() {
        let conv = LayerKind::Conv2d {
            in_channels: 16,
            out_channels: 32,
        };
        let (weight, bias) = (&conv.tensors()[0], &conv.tensors()[1]);
        let max_abs = |v: &[f32]| v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let bound = 1.0 / (16.0f32 * 9.0).sqrt();
        let w = init_values(Init::Pytorch, &conv, weight, 3, "features.2.weight");
        assert!(max_abs(&w) <= bound && max_abs(&w) > 0.95 * bound);
        // U(±b) has std b/√3.
        assert!((std_of(&w) / (f64::from(bound) / 3f64.sqrt()) - 1.0).abs() < 0.03);
        let b = init_values(Init::Pytorch, &conv, bias, 3, "features.2.bias");
        assert!(max_abs(&b) <= bound && max_abs(&b) > 0.5 * bound);
        let glorot = (6.0 / (16.0f32 * 9.0 + 32.0 * 9.0)).sqrt();
        let w = init_values(Init::Glorot, &conv, weight, 3, "features.2.weight");
        assert!(max_abs(&w) <= glorot && max_abs(&w) > 0.95 * glorot);
        let b = init_values(Init::Glorot, &conv, bias, 3, "features.2.bias");
        assert!(b.iter().all(|&v| v == 0.0));
        let torchvision = init_values(Init::Torchvision, &conv, weight, 3, "features.2.weight");
        assert_eq!(
            torchvision,
            initial_values(&conv, weight, 3, "features.2.weight")
        );
    }
}
