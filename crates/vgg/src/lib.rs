//! `vgg`: torchvision's VGG networks in Rust — models, summaries identical to torchsummary
//! and torchinfo, and a command line.

pub mod data;
pub mod engine;
pub mod error;
pub mod fast;
pub mod infer;
pub mod io;
pub mod model;
pub mod ops;
pub mod progress;
pub mod summary;
pub mod train;
pub mod viz;
pub mod weights;

pub use error::{Error, Result};
pub use model::{Arch, Mode, Vgg, VggConfig};
