//! `vgg`: torchvision's VGG networks in Rust — models, summaries identical to torchsummary
//! and torchinfo, checkpoints in and out, a fast CPU engine, training and pictures. The `vgg`
//! command line and the Python package are thin layers over this crate.
//!
//! Start with [`ModelSource`] (open a model from a name, a config or any checkpoint), the
//! pipelines in [`infer`], [`summary::Summary`] and [`train::trainer::Trainer`]; the README
//! has a worked example.

pub mod bench;
pub mod data;
pub mod engine;
pub mod error;
pub mod fast;
pub mod infer;
pub mod io;
pub mod limits;
pub mod model;
pub mod open;
pub mod ops;
pub mod progress;
pub mod quantize;
pub mod summary;
pub mod threads;
pub mod train;
pub mod viz;
pub mod weights;

pub use error::{Error, Result};
pub use model::{Arch, CfgItem, ConfigOverrides, Mode, Vgg, VggConfig};
pub use open::{ArchChoice, ModelSource};

/// The README's Rust examples, compiled and run as doc tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeExamples;
