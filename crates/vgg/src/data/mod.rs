//! Images in: decoding, torchvision's preprocessing, and ImageNet's class names.

pub mod augment;
pub mod cifar;
pub mod color;
pub mod image;
pub mod imagefolder;
pub mod jpeg;
pub mod labels;
pub mod loader;
pub mod npy;
pub mod preprocess;
pub mod resize;

/// The decoded 8-bit RGB image every preprocessing step takes.
pub use ::image::RgbImage;
