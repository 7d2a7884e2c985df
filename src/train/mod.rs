//! Training: optimisers and learning-rate schedules with PyTorch's exact semantics (the
//! trainer and checkpoints build on these).

mod fused;
pub mod optim;
pub mod schedule;
