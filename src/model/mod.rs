//! VGG models: configs, the layer list (the single source of truth), initialisation and the
//! candle network.

pub mod config;
pub mod init;
pub mod layers;
pub mod pool;
pub mod vgg;

pub use config::{Arch, CfgItem, VggConfig};
pub use layers::{Container, LayerKind, LayerSpec};
pub use vgg::{Mode, Vgg};
