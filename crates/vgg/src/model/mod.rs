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
