//! Pictures of the networks.

pub mod diagram;
