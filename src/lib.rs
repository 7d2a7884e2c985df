//! `vgg`: torchvision's VGG networks in Rust — models, summaries identical to torchsummary
//! and torchinfo, and a command line.

pub mod cli;
pub mod error;
pub mod model;
pub mod summary;

pub use error::{Error, Result};
pub use model::{Arch, Mode, Vgg, VggConfig};
