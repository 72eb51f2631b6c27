//! Learning-rate schedules, as pure functions of the step so a resumed run needs no state.
use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

/// Which schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// Linear warm-up, then cosine decay to zero.
    Cosine,
    /// One-cycle (Smith 2018) as in PyTorch's `OneCycleLR` defaults: 30 % cosine warm-up from
    /// lr/25, then cosine decay to lr/25e4.
    OneCycle,
    /// Constant after linear warm-up.
    Constant,
}

/// Learning rate at `step` (0-based) of `total` steps, peak `lr`, `warmup` warm-up steps
/// (ignored by one-cycle, which has its own).
pub fn lr_at(kind: ScheduleKind, lr: f64, step: u64, total: u64, warmup: u64) -> f64 {
    let total = total.max(1) as f64;
    let s = step as f64;
    let cos = |from: f64, to: f64, frac: f64| {
        to + (from - to) * 0.5 * (1.0 + (PI * frac.clamp(0.0, 1.0)).cos())
    };
    match kind {
        ScheduleKind::OneCycle => {
            let up = (0.3 * total).max(1.0);
            let start = lr / 25.0;
            if s < up {
                cos(start, lr, s / up)
            } else {
                cos(lr, start / 1e4, (s - up) / (total - up).max(1.0))
            }
        }
        ScheduleKind::Cosine | ScheduleKind::Constant if step < warmup => {
            lr * (s + 1.0) / warmup as f64
        }
        ScheduleKind::Cosine => cos(
            lr,
            0.0,
            (s - warmup as f64) / (total - warmup as f64).max(1.0),
        ),
        ScheduleKind::Constant => lr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_warms_up_peaks_and_decays() {
        assert!((lr_at(ScheduleKind::Cosine, 1.0, 0, 100, 10) - 0.1).abs() < 1e-12);
        assert!((lr_at(ScheduleKind::Cosine, 1.0, 10, 100, 10) - 1.0).abs() < 1e-12);
        assert!((lr_at(ScheduleKind::Cosine, 1.0, 55, 100, 10) - 0.5).abs() < 1e-12);
        assert!(lr_at(ScheduleKind::Cosine, 1.0, 100, 100, 10).abs() < 1e-12);
    }

    #[test]
    fn one_cycle_matches_pytorch_defaults() {
        assert!((lr_at(ScheduleKind::OneCycle, 1.0, 0, 100, 0) - 0.04).abs() < 1e-12);
        assert!((lr_at(ScheduleKind::OneCycle, 1.0, 30, 100, 0) - 1.0).abs() < 1e-12);
        assert!((lr_at(ScheduleKind::OneCycle, 1.0, 100, 100, 0) - 0.04e-4).abs() < 1e-12);
    }

    #[test]
    fn constant_is_constant_after_warmup() {
        assert_eq!(lr_at(ScheduleKind::Constant, 0.5, 50, 100, 10), 0.5);
    }
}
