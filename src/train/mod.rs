//! Training: optimisers with PyTorch's exact semantics (the trainer, schedules and
//! checkpoints build on these).

pub mod optim;
