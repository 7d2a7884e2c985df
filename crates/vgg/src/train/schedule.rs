//! Learning-rate schedules per epoch, as `torch.optim.lr_scheduler` computes them: step,
//! multi-step and cosine annealing (optionally after a linear warm-up, as `SequentialLR` of
//! `LinearLR` then the schedule), and the paper's "divide by 10 when validation accuracy
//! stops improving" (`ReduceLROnPlateau`, mode max).

use std::f64::consts::PI;

/// A schedule that depends only on the epoch.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Schedule {
    Constant,
    /// × `gamma` every `step_size` epochs (`StepLR`).
    Step {
        step_size: usize,
        gamma: f64,
    },
    /// × `gamma` at each milestone epoch (`MultiStepLR`).
    MultiStep {
        milestones: Vec<usize>,
        gamma: f64,
    },
    /// Half a cosine from the base rate to `eta_min` over `t_max` epochs (`CosineAnnealingLR`).
    Cosine {
        t_max: usize,
        eta_min: f64,
    },
}

/// A base rate, a schedule, and an optional linear warm-up before it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LrSchedule {
    pub base: f64,
    pub schedule: Schedule,
    /// `(epochs, start_factor)`: from `base·start_factor` up to `base` (`LinearLR`).
    pub warmup: Option<(usize, f64)>,
}

impl LrSchedule {
    /// The rate for `epoch` (0-based); after a warm-up of `w` epochs the schedule restarts
    /// its own epoch count at 0, as `SequentialLR` does.
    pub fn lr(&self, epoch: usize) -> f64 {
        let mut epoch = epoch;
        if let Some((epochs, start)) = self.warmup {
            if epoch < epochs {
                return self.base * (start + (1.0 - start) * epoch as f64 / epochs as f64);
            }
            epoch -= epochs;
        }
        match &self.schedule {
            Schedule::Constant => self.base,
            Schedule::Step { step_size, gamma } => {
                self.base * gamma.powi((epoch / (*step_size).max(1)) as i32)
            }
            Schedule::MultiStep { milestones, gamma } => {
                let passed = milestones.iter().filter(|&&m| m <= epoch).count();
                self.base * gamma.powi(passed as i32)
            }
            Schedule::Cosine { t_max, eta_min } => {
                let progress = epoch.min(*t_max) as f64 / (*t_max).max(1) as f64;
                eta_min + (self.base - eta_min) * (1.0 + (PI * progress).cos()) / 2.0
            }
        }
    }
}

/// `ReduceLROnPlateau(mode="max", threshold_mode="rel")`: after more than `patience` epochs
/// without a relative improvement of `threshold`, multiply the rate by `factor`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Plateau {
    pub lr: f64,
    pub factor: f64,
    pub patience: usize,
    pub threshold: f64,
    pub min_lr: f64,
    best: Option<f64>,
    bad_epochs: usize,
}

impl Plateau {
    /// PyTorch's defaults: threshold 1e-4, min_lr 0.
    pub fn new(lr: f64, factor: f64, patience: usize) -> Self {
        Plateau {
            lr,
            factor,
            patience,
            threshold: 1e-4,
            min_lr: 0.0,
            best: None,
            bad_epochs: 0,
        }
    }

    /// Records an epoch's metric (higher is better) and returns the rate for the next epoch.
    pub fn step(&mut self, metric: f64) -> f64 {
        match self.best {
            Some(best) if metric <= best * (1.0 + self.threshold) => self.bad_epochs += 1,
            _ => {
                self.best = Some(metric);
                self.bad_epochs = 0;
            }
        }
        if self.bad_epochs > self.patience {
            let reduced = (self.lr * self.factor).max(self.min_lr);
            if self.lr - reduced > 1e-8 {
                self.lr = reduced;
            }
            self.bad_epochs = 0;
        }
        self.lr
    }
}
