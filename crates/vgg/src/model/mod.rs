//! VGG models: configs, the layer list (the single source of truth), initialisation and the
//! reference model — candle tensors with autograd, computed on the CPU by our own ops
//! ([`crate::ops`]) and by candle's on other devices.

pub mod config;
pub mod init;
pub mod layers;
pub mod vgg;

pub use config::{Arch, CfgItem, ConfigOverrides, VggConfig};
pub use layers::{Container, LayerKind, LayerSpec};
pub use vgg::{Mode, Vgg};

/// An input with NaN or infinity is refused: the max-pools would drop NaN silently and
/// return finite logits for garbage, where PyTorch returns NaN.
pub fn check_finite(values: &[f32]) -> crate::Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(crate::Error::BadArgument(format!(
            "the input holds {} at element {i}; inputs must be finite",
            values[i]
        ))),
    }
}
