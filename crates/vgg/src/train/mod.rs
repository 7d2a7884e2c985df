//! Training: optimisers and learning-rate schedules with PyTorch's exact semantics (the
//! trainer and checkpoints build on these).

pub mod checkpoint;
#[cfg(feature = "plots")]
mod curves;
pub mod data;
mod fused;
pub mod init_from;
pub mod loss;
pub mod memory;
pub mod metrics;
pub mod optim;
pub mod plan;
pub mod request;
pub mod schedule;
pub mod trainer;
