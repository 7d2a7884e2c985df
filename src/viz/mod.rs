//! Looking inside a network for one image: where the evidence for a class lies (Grad-CAM).

pub mod gradcam;
