//! `vgg`: torchvision's VGG networks in Rust — models, summaries identical to torchsummary
//! and torchinfo, and a command line.

pub mod cli;
pub mod data;
pub mod engine;
pub mod error;
pub mod infer;
pub mod io;
pub mod model;
pub mod summary;
pub mod train;
pub mod viz;
pub mod weights;

pub use error::{Error, Result};
pub use model::{Arch, Mode, Vgg, VggConfig};
