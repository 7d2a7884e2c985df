//! VGG models: configs, the layer list (the single source of truth), initialisation and the
//! reference model — candle tensors with autograd, computed on the CPU by our own ops
//! ([`crate::ops`]) and by candle's on other devices.

pub mod config;
pub mod footprint;
pub mod head;
pub mod init;
pub mod layers;
pub mod vgg;

pub use config::{Arch, CfgItem, ConfigOverrides, VggConfig};
pub use layers::{Container, LayerKind, LayerSpec};
pub(crate) use vgg::check_batch_norm_count;
pub use vgg::{Mode, Vgg};

/// The `[N, C, H, W]` sizes of an input the network can take: four dimensions and at
/// least one image (an empty batch has no output to give).
pub fn nchw(dims: &[usize]) -> crate::Result<[usize; 4]> {
    match *dims {
        [0, ..] => Err(crate::Error::BadArgument(format!(
            "the batch is empty (shape {dims:?}); give at least one image"
        ))),
        [n, c, h, w] => Ok([n, c, h, w]),
        _ => Err(crate::Error::BadArgument(format!(
            "expected an NCHW input with 4 dimensions, got shape {dims:?}"
        ))),
    }
}

/// An input with NaN or infinity is refused: the max-pools would drop NaN silently and
/// return finite logits for garbage, where PyTorch returns NaN.
pub fn check_finite(values: &[f32]) -> crate::Result<()> {
    match first_non_finite(values) {
        None => Ok(()),
        Some((i, value)) => Err(crate::Error::BadArgument(format!(
            "the input holds {value} at element {i}; inputs must be finite"
        ))),
    }
}

/// Outputs with NaN or infinity are an error, not a result: from finite inputs and
/// weights they come only from an overflow of float32, which a user writing them to a
/// file or ranking them would not see. `whose` names the outputs, `hint` says what to try.
pub fn check_outputs(values: &[f32], whose: &str, hint: &str) -> crate::Result<()> {
    match first_non_finite(values) {
        None => Ok(()),
        Some((_, value)) => Err(crate::Error::BadArgument(format!(
            "{whose} outputs hold {value}: float32 overflowed on this input (inputs or \
             weights this large are out of its range; {hint})"
        ))),
    }
}

/// [`check_outputs`] for the network's outputs on either path.
pub fn check_network_outputs(values: &[f32]) -> crate::Result<()> {
    check_outputs(values, "the network's", "a diverged training run?")
}

/// The index and value of the first NaN or infinity in `values`.
pub fn first_non_finite(values: &[f32]) -> Option<(usize, f32)> {
    let i = values.iter().position(|v| !v.is_finite())?;
    Some((i, values[i]))
}
