//! The run's configuration, written to `config.json` in the run folder before epoch 1 and
//! stored in every checkpoint.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{loss::LossWeighting, optim::OptimizerKind, schedule::ScheduleKind};
use crate::{data::AugmentConfig, kernels::Kernels};

/// Everything that defines a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// UTKFace-named folder or CSV manifest.
    pub data: PathBuf,
    /// Run folder.
    pub out: PathBuf,
    /// Epochs.
    pub epochs: usize,
    /// Batch size.
    pub batch: usize,
    /// Square input size in pixels.
    pub input_size: u32,
    /// Body, e.g. `resnet18` or `resnet10-w0.5`.
    pub backbone: String,
    /// Peak learning rate.
    pub lr: f64,
    /// Optimiser.
    pub optimizer: OptimizerKind,
    /// SGD momentum.
    pub momentum: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Learning-rate schedule.
    pub schedule: ScheduleKind,
    /// Warm-up length in epochs (cosine and constant schedules).
    pub warmup_epochs: f64,
    /// How head losses are combined.
    pub loss_weighting: LossWeighting,
    /// Per-head weights for `fixed` weighting.
    pub head_weights: Vec<f32>,
    /// Fraction of files (by name hash) held out for validation.
    pub val_fraction: f64,
    /// Seed of initialisation, order and augmentation.
    pub seed: u64,
    /// Augmentation of training batches.
    pub augment: AugmentConfig,
    /// Use at most this many images (a deterministic subset), for quick runs.
    pub limit: Option<usize>,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Convolution kernels (same math; `fast` is CPU-only and falls back elsewhere).
    #[serde(default)]
    pub kernels: Kernels,
    /// Body weights to start from: a torchvision ResNet state dict as safetensors.
    #[serde(default)]
    pub init_from: Option<PathBuf>,
}
