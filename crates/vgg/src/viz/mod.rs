//! Pictures of the networks: architecture diagrams, and looking inside a network for one
//! image (feature maps, filters, Grad-CAM) in an HTML report.

#[cfg(feature = "plots")]
pub mod diagram;
pub mod dissect;
pub mod gradcam;
pub mod grid;
pub mod report;
