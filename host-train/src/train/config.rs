//! The run's configuration, written to `config.json` in the run folder before epoch 1 and
//! stored in every checkpoint.
use std::path::PathBuf;

use models::{dataset::DataSource, HeadSpec};
use serde::{Deserialize, Serialize};

use super::{loss::LossWeighting, optim::OptimizerKind, schedule::ScheduleKind};
use crate::{
    data::{AugmentConfig, CachePolicy},
    kernels::Kernels,
};

/// Everything that defines a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// UTKFace-named folder or CSV manifest; with [`TrainConfig::manifests`], the folder
    /// the manifests' relative paths start in (empty: each manifest's own folder).
    pub data: PathBuf,
    /// CSV manifests (`--manifest`, repeatable), each labelling what it has. Empty when
    /// `data` alone is the source (as in every run before heads files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<PathBuf>,
    /// The heads trained (`--heads FILE`); `None`: UTKFace's age, gender, ethnicity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<Vec<HeadSpec>>,
    /// The heads file they were read from (copied into the run folder as `heads.toml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads_file: Option<PathBuf>,
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
    /// Where decoded images are kept (memory or a mapped file; the same pixels either way).
    #[serde(default)]
    pub cache: CachePolicy,
}

impl TrainConfig {
    /// Where the labelled images come from.
    pub fn source(&self) -> DataSource {
        if self.manifests.is_empty() {
            return DataSource::from_path(&self.data);
        }
        DataSource {
            images: (!self.data.as_os_str().is_empty()).then(|| self.data.clone()),
            manifests: self.manifests.clone(),
        }
    }

    /// Sets the source: a lone folder or a lone manifest stays in `data`, as runs before
    /// several manifests wrote it, so their configurations keep reading the same.
    pub fn set_source(&mut self, source: &DataSource) {
        match (&source.images, source.manifests.as_slice()) {
            (Some(dir), []) => {
                self.data = dir.clone();
                self.manifests.clear();
            }
            (None, [one]) => {
                self.data = one.clone();
                self.manifests.clear();
            }
            (images, many) => {
                self.data = images.clone().unwrap_or_default();
                self.manifests = many.to_vec();
            }
        }
    }
}

impl TrainConfig {
    /// The configuration a model file implies when no run's is at hand (fine-tuning an
    /// exported ONNX file): its input size, body and validation fraction; the rest are the
    /// CLI's defaults.
    pub fn for_model(contract: &models::Contract) -> Self {
        Self {
            data: PathBuf::new(),
            manifests: Vec::new(),
            heads: Some(contract.heads.clone()),
            heads_file: None,
            out: PathBuf::new(),
            epochs: 1,
            batch: 64,
            input_size: contract.preprocess.width,
            backbone: contract.architecture.clone(),
            lr: 2e-3,
            optimizer: OptimizerKind::Adamw,
            momentum: 0.9,
            weight_decay: 5e-4,
            schedule: ScheduleKind::OneCycle,
            warmup_epochs: 0.0,
            loss_weighting: LossWeighting::Sum,
            head_weights: Vec::new(),
            val_fraction: contract
                .training
                .get("val_fraction")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.1),
            seed: 0,
            augment: AugmentConfig::NONE,
            limit: None,
            device: "cpu".into(),
            kernels: Kernels::Fast,
            init_from: None,
            cache: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn every_source_survives_the_config_and_old_configs_read_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("a.csv");
        std::fs::write(&csv, "path,age\n").unwrap();
        let mut c = TrainConfig::for_model(&models::Contract::utkface(32, "resnet10"));
        for source in [
            DataSource::folder(dir.path()),
            DataSource::from_path(&csv),
            DataSource {
                images: Some(dir.path().into()),
                manifests: vec![csv.clone(), csv.clone()],
            },
            DataSource {
                images: None,
                manifests: vec![csv.clone(), csv.clone()],
            },
        ] {
            c.set_source(&source);
            assert_eq!(c.source(), source);
            let back: TrainConfig =
                serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
            assert_eq!(back.source(), source);
        }
        // A lone folder or manifest stays in `data`, as configurations before several
        // manifests wrote it; such a configuration reads back unchanged.
        c.set_source(&DataSource::from_path(&csv));
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["data"], csv.display().to_string());
        assert!(json.get("manifests").is_none() && json.get("heads_file").is_none());
        assert_eq!(c.source().manifests, [csv.as_path()].map(Path::to_path_buf));
    }
}
