//! The round's schedule in iterations (UNISAL.md section 1.4): an epoch is max(1, floor(N_labeled / B_L))
//! iterations, so budgets below one batch of labels work; the round is `epochs` epochs long (reference 201) or an
//! explicit iteration count, in which case epoch milestones scale to it (epoch e -> e / epochs of the round).
//! lambda steps from 0 at the epoch-15 equivalent; the learning rate steps x0.1 at the epoch-150 equivalent, or
//! follows a cosine from `lr` to 0 (torch's CosineAnnealingLR stepped per iteration), or stays constant.

use crate::error::{Result, TrainError};
use unisal_core::learner::{LrSchedule, ResolvedSchedule, TrainConfig};

/// The schedule of one round: iteration milestones plus the per-iteration learning rate and lambda.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub resolved: ResolvedSchedule,
    lr: f64,
    lr_schedule: LrSchedule,
    lambda: f64,
}

impl Schedule {
    /// Resolves `config` for a labeled set of `n_labeled` images.
    pub fn new(config: &TrainConfig, n_labeled: usize) -> Result<Self> {
        if n_labeled == 0 {
            return Err(TrainError::InvalidInput(
                "the labeled set is empty: label some patches first".into(),
            ));
        }
        let per_epoch = ((n_labeled / config.batch_labeled.max(1)) as u64).max(1);
        let (total, milestone): (u64, Box<dyn Fn(f64) -> u64>) = match config.iterations {
            Some(n) => {
                let epochs = config.epochs;
                (n, Box::new(move |e: f64| ((e / epochs) * n as f64).round() as u64))
            }
            None => {
                let total = (config.epochs * per_epoch as f64).round().max(1.0) as u64;
                (total, Box::new(move |e: f64| (e * per_epoch as f64).round() as u64))
            }
        };
        let lr_step_iteration = match config.lr_schedule {
            LrSchedule::Step { at_epoch, .. } => Some(milestone(at_epoch)),
            _ => None,
        };
        let resolved = ResolvedSchedule {
            iterations_per_epoch: per_epoch,
            total_iterations: total,
            lambda_step_iteration: milestone(config.lambda_step_epoch),
            lr_step_iteration,
        };
        Ok(Self { resolved, lr: config.lr, lr_schedule: config.lr_schedule, lambda: config.lambda })
    }

    /// Iterations of the round.
    pub fn total(&self) -> u64 {
        self.resolved.total_iterations
    }

    /// Learning rate of (0-based) iteration `it`.
    pub fn lr_at(&self, it: u64) -> f64 {
        match self.lr_schedule {
            LrSchedule::Constant => self.lr,
            LrSchedule::Step { factor, .. } => match self.resolved.lr_step_iteration {
                Some(step) if it >= step => self.lr * factor,
                _ => self.lr,
            },
            LrSchedule::Cosine => {
                let t = it.min(self.total()) as f64 / self.total() as f64;
                0.5 * self.lr * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }

    /// Weight of the cross pseudo-supervision at iteration `it`: 0 before the step, `lambda` from it on.
    pub fn lambda_at(&self, it: u64) -> f64 {
        if it >= self.resolved.lambda_step_iteration {
            self.lambda
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_schedule_in_iterations() {
        let c = TrainConfig::default();
        let s = Schedule::new(&c, 180).unwrap(); // floor(180/64) = 2 iterations an epoch
        assert_eq!(s.resolved.iterations_per_epoch, 2);
        assert_eq!(s.total(), 402);
        assert_eq!(s.resolved.lambda_step_iteration, 30);
        assert_eq!(s.resolved.lr_step_iteration, Some(300));
        assert_eq!((s.lambda_at(29), s.lambda_at(30)), (0.0, 0.5));
        assert_eq!(s.lr_at(299), 1e-3);
        assert!((s.lr_at(300) - 1e-4).abs() < 1e-15);
    }

    #[test]
    fn fewer_labels_than_a_batch_still_train() {
        let s = Schedule::new(&TrainConfig::default(), 10).unwrap();
        assert_eq!((s.resolved.iterations_per_epoch, s.total()), (1, 201));
        assert!(Schedule::new(&TrainConfig::default(), 0).is_err());
    }

    #[test]
    fn explicit_iterations_scale_milestones_and_cosine_ends_at_zero() {
        let c = TrainConfig::preset("gpu-sim").unwrap();
        let s = Schedule::new(&c, 40).unwrap();
        assert_eq!(s.total(), 400);
        assert_eq!(s.resolved.lambda_step_iteration, 30); // 15/201 * 400 = 29.85
        assert_eq!(s.lr_at(0), 0.03);
        assert!((s.lr_at(200) - 0.015).abs() < 1e-12);
        assert!(s.lr_at(400).abs() < 1e-12);
    }
}
