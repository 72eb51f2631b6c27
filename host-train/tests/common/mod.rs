//! Helpers shared by the integration tests.
#![allow(dead_code)]
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use host_train::{
    data::AugmentConfig,
    kernels::Kernels,
    train::{loss::LossWeighting, optim::OptimizerKind, schedule::ScheduleKind, TrainConfig},
};

/// The shared UTKFace folder (`../shared` beside the repository). Tests that need it fail
/// with this message rather than pass without looking at the data.
pub fn utkface_dir() -> PathBuf {
    let dir = std::env::var_os("HYDRANET_UTKFACE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets/utkface/UTKFace")
        });
    assert!(
        dir.is_dir(),
        "UTKFace folder {} not found: put ../shared beside the repository or set HYDRANET_UTKFACE",
        dir.display()
    );
    dir
}

/// A small, fast configuration.
pub fn tiny_config(data: &Path, out: &Path) -> TrainConfig {
    TrainConfig {
        data: data.to_path_buf(),
        manifests: vec![],
        heads: None,
        heads_file: None,
        out: out.to_path_buf(),
        epochs: 2,
        batch: 16,
        input_size: 32,
        backbone: "resnet10-w0.25".into(),
        lr: 3e-3,
        optimizer: OptimizerKind::Adamw,
        momentum: 0.9,
        weight_decay: 5e-4,
        schedule: ScheduleKind::OneCycle,
        warmup_epochs: 0.0,
        loss_weighting: LossWeighting::Sum,
        head_weights: vec![],
        val_fraction: 0.25,
        seed: 3,
        augment: AugmentConfig::DEFAULT,
        limit: None,
        device: "cpu".into(),
        kernels: Kernels::Fast,
        init_from: None,
        cache: Default::default(),
    }
}

/// `train` arguments of a run that takes seconds: a quarter-width resnet10 at 32x32, one
/// epoch, a quarter held out.
pub const TINY: [&str; 10] = [
    "--backbone",
    "resnet10-w0.25",
    "--input-size",
    "32",
    "--batch",
    "8",
    "--epochs",
    "1",
    "--val-fraction",
    "0.25",
];

/// Runs the real `host-train` binary: (success, stdout, stderr).
pub fn host_train(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_host-train"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
