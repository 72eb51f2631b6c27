//! `host-train train`.
use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Instant,
};

use anyhow::{bail, Context, Result};
use host_train::{
    data::{AugmentConfig, CacheMode, CachePolicy},
    device,
    export::{export_int8_on, Int8Request, QuantForm},
    kernels::Kernels,
    net::BackboneConfig,
    score::{load, load_split, Split},
    train::{
        checkpoint,
        evaluate::evaluate,
        loss::LossWeighting,
        optim::OptimizerKind,
        schedule::ScheduleKind,
        setup::{build_trainer, contract_for, prepare_data, Need},
        trainer::Outcome,
        TrainConfig,
    },
};

use models::heads_file::HeadsFile;

use super::DataArgs;

/// Arguments of `train`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    data: DataArgs,
    /// Heads file (TOML, `[[head]]` tables): train exactly these heads instead of UTKFace's
    /// age, gender and ethnicity. It is copied into the run folder (`heads.toml`) and its
    /// heads travel in the checkpoint and the ONNX contract.
    #[arg(long, value_name = "FILE.toml")]
    heads: Option<PathBuf>,
    /// Run folder: config.json, log.jsonl, last.safetensors, best.safetensors.
    #[arg(long, default_value = "runs/latest")]
    out: PathBuf,
    /// Epochs.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Batch size.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Square input size in pixels.
    #[arg(long, default_value_t = 64)]
    input_size: u32,
    /// Body: resnet18, resnet10, resnet34, optionally `-w<width>` (e.g. resnet10-w0.5).
    #[arg(long, default_value = "resnet18")]
    backbone: String,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Optimiser.
    #[arg(long, value_enum, default_value_t = OptimizerKind::Adamw)]
    optimizer: OptimizerKind,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// Weight decay (conv and linear weights only).
    #[arg(long, default_value_t = 5e-4)]
    weight_decay: f64,
    /// Learning-rate schedule.
    #[arg(long, value_enum, default_value_t = ScheduleKind::OneCycle)]
    schedule: ScheduleKind,
    /// Warm-up epochs (cosine and constant schedules).
    #[arg(long, default_value_t = 1.0)]
    warmup_epochs: f64,
    /// How the heads' losses are combined.
    #[arg(long, value_enum, default_value_t = LossWeighting::Sum)]
    loss_weighting: LossWeighting,
    /// Per-head weights for `--loss-weighting fixed`, comma-separated, in head order.
    #[arg(long, value_delimiter = ',')]
    head_weights: Vec<f32>,
    /// Fraction of files held out for validation (chosen by a hash of the file name).
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
    /// Seed for initialisation, order and augmentation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Train without augmentation.
    #[arg(long)]
    no_augment: bool,
    /// Use a deterministic subset of at most N images.
    #[arg(long)]
    limit: Option<usize>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Convolution kernels: `fast` (im2col + GEMM, CPU) or Candle's own.
    #[arg(long, value_enum, default_value_t = Kernels::Fast)]
    kernels: Kernels,
    /// Stop after N optimiser steps in all, saving OUT/last.safetensors (`--resume`
    /// continues). The schedule still spans `--epochs`: these are the full run's first N
    /// steps, e.g. to compare devices step by step with `--log-steps`.
    #[arg(long, value_name = "N")]
    max_steps: Option<u64>,
    /// Also log every step's losses and learning rate to OUT/log.jsonl (`"event": "step"`).
    #[arg(long)]
    log_steps: bool,
    /// Also keep every epoch's checkpoint as OUT/epoch-NNN.safetensors, for
    /// `host-train average` (weight averaging along the run).
    #[arg(long)]
    keep_epochs: bool,
    /// Continue a run from a checkpoint (default: OUT/last.safetensors). The run's saved
    /// configuration is used; other training flags are ignored, except those that say how
    /// to run rather than what: --device, --kernels, --max-steps, --log-steps, --keep-epochs.
    // Option<Option<_>>: a bare `--resume` is Some(None). (An empty default value, as
    // before, is refused by clap's path parser, so the bare flag did not parse.)
    #[arg(long, num_args = 0..=1, value_name = "CHECKPOINT")]
    resume: Option<Option<PathBuf>>,
    /// After training, export the best checkpoint to this ONNX file.
    #[arg(long)]
    export: Option<PathBuf>,
    /// With --export: also write an int8 file beside it (`model.onnx` gives
    /// `model-int8.onnx`), as `host-train export --quantize int8` does.
    #[arg(long, value_enum, requires = "export")]
    quantize: Option<super::export::Quantize>,
    #[command(flatten)]
    calibration: super::export::CalibrationArgs,
    /// Start the body from a torchvision ResNet state dict saved as safetensors
    /// (`conv1.weight`, `layer1.0.bn1.running_mean`, ...; `fc.*` is ignored), or body and
    /// heads from a HydraNet checkpoint (a new training cycle from a trained model; its
    /// optimiser state is not taken; folded BatchNorm, from an exported file via
    /// `finetune`, is unfolded with the statistics of 1,024 training images). Needs the
    /// matching `--backbone` (torchvision's resnet18: `resnet18`).
    #[arg(long, value_name = "FILE.safetensors")]
    init_from: Option<PathBuf>,
    /// Where decoded images are kept: `memory`, `disk` (one memory-mapped file per set and
    /// size under --cache-dir, written once and reused by later runs: RSS stays bounded
    /// whatever the set's size) or `auto` (disk when the pixels would take more than a
    /// quarter of RAM).
    #[arg(long, value_enum, default_value_t = CacheMode::Auto)]
    cache: CacheMode,
    /// Folder of the disk cache [default: $XDG_CACHE_HOME/hydranet-edge/images or
    /// ~/.cache/hydranet-edge/images].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

impl Args {
    fn cache_policy(&self) -> CachePolicy {
        CachePolicy {
            mode: self.cache,
            dir: self.cache_dir.clone(),
        }
    }

    fn config(&self) -> Result<TrainConfig> {
        if !(0.0..1.0).contains(&self.val_fraction) {
            bail!("--val-fraction must be in [0, 1)");
        }
        if self.epochs == 0 || self.batch < 2 || self.input_size < 16 {
            bail!("need --epochs >= 1, --batch >= 2 and --input-size >= 16");
        }
        let heads = match &self.heads {
            Some(f) => Some(HeadsFile::read(f)?.heads),
            None => None,
        };
        let mut config = TrainConfig {
            data: PathBuf::new(),
            manifests: Vec::new(),
            heads,
            heads_file: self.heads.clone(),
            out: self.out.clone(),
            epochs: self.epochs,
            batch: self.batch,
            input_size: self.input_size,
            backbone: self.backbone.clone(),
            lr: self.lr,
            optimizer: self.optimizer,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            schedule: self.schedule,
            warmup_epochs: self.warmup_epochs,
            loss_weighting: self.loss_weighting,
            head_weights: self.head_weights.clone(),
            val_fraction: self.val_fraction,
            seed: self.seed,
            augment: if self.no_augment {
                AugmentConfig::NONE
            } else {
                AugmentConfig::DEFAULT
            },
            limit: self.limit,
            device: self.device.clone(),
            kernels: self.kernels,
            init_from: self.init_from.clone(),
            cache: self.cache_policy(),
        };
        config.set_source(&self.data.source()?);
        Ok(config)
    }
}

pub fn run(a: Args) -> Result<ExitCode> {
    let resume = match &a.resume {
        Some(None) => Some(a.out.join("last.safetensors")),
        Some(Some(p)) => Some(p.clone()),
        None => None,
    };
    let config = match &resume {
        Some(path) => {
            let ck = checkpoint::load(path, &candle_core::Device::Cpu)
                .with_context(|| format!("cannot resume from {}", path.display()))?;
            println!(
                "resuming {} at epoch {} step {} (of {} epochs)",
                path.display(),
                ck.state.epoch + 1,
                ck.state.step_in_epoch,
                ck.config.epochs
            );
            TrainConfig {
                out: a.out.clone(),
                kernels: a.kernels,
                device: a.device.clone(),
                cache: a.cache_policy(),
                ..ck.config
            }
        }
        None => a.config()?,
    };
    let backbone: BackboneConfig = config.backbone.parse().map_err(anyhow::Error::msg)?;
    let dev = device::open(&config.device)?;
    std::fs::create_dir_all(&config.out)
        .with_context(|| format!("creating run folder {}", config.out.display()))?;
    let config_path = config.out.join("config.json");
    host_train::files::write_atomic(
        &config_path,
        serde_json::to_string_pretty(&config)?.as_bytes(),
    )?;

    let mut contract = contract_for(&config, &backbone);
    if let Some(file) = &config.heads_file {
        // The file as written (comments too) beside the run and in the contract; the heads
        // themselves travel parsed, in the contract's head list. A resumed run reads its copy.
        let copy = config.out.join("heads.toml");
        let from = if resume.is_some() { &copy } else { file };
        let text = std::fs::read_to_string(from)
            .with_context(|| format!("reading heads file {}", from.display()))?;
        if resume.is_none() {
            host_train::files::write_atomic(&copy, text.as_bytes())?;
        }
        contract.training.insert("heads_file".into(), text);
    }
    println!(
        "heads: {}",
        contract
            .heads
            .iter()
            .map(|h| format!("{} ({})", h.name, kind_text(h)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let t0 = Instant::now();
    let data = prepare_data(&config, &contract, Need::AllHeads)
        .with_context(|| format!("reading {}", config.source().describe()))?;
    let decode_s = t0.elapsed().as_secs_f64();
    println!(
        "data: {} train / {} validation images at {}x{} ({} skipped), decoded in {:.1} s ({:.0} img/s)",
        data.train.len(),
        data.val.len(),
        config.input_size,
        config.input_size,
        data.rejected.len(),
        decode_s,
        (data.train.len() + data.val.len()) as f64 / decode_s.max(1e-9)
    );

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("second interrupt: exiting without saving");
            std::process::exit(130);
        }
        eprintln!("interrupt: finishing this step, then saving (Ctrl-C again to abort)");
    })
    .context("installing the Ctrl-C handler")?;

    let mut trainer = build_trainer(
        config.clone(),
        contract,
        &data,
        resume.as_deref(),
        dev,
        stop,
    )?;
    trainer.max_steps = a.max_steps;
    trainer.log_steps = a.log_steps;
    trainer.keep_epochs = a.keep_epochs;
    println!(
        "training {} ({} parameters) on {}: {} epochs of {} steps, batch {}",
        backbone,
        trainer
            .varmap
            .all_vars()
            .iter()
            .map(|v| v.elem_count())
            .sum::<usize>(),
        config.device,
        config.epochs,
        data.train.len() / config.batch,
        config.batch
    );
    let outcome = trainer.run()?;
    match outcome {
        Outcome::Finished | Outcome::StepLimit => {
            if outcome == Outcome::StepLimit {
                println!(
                    "stopped after {} steps (--max-steps): saved {} (continue with --resume)",
                    trainer.state.global_step,
                    config.out.join("last.safetensors").display()
                );
            } else {
                println!(
                    "done: best epoch {} (val loss {}), checkpoints in {}",
                    trainer
                        .state
                        .best_epoch
                        .map(|e| e.to_string())
                        .unwrap_or("-".into()),
                    trainer
                        .state
                        .best_val_loss
                        .map(|l| format!("{l:.4}"))
                        .unwrap_or("-".into()),
                    config.out.display()
                );
            }
            if let Some(onnx) = &a.export {
                export_after_training(&a, &config, onnx)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Interrupted => {
            println!(
                "interrupted: saved {} (resume with --resume)",
                config.out.join("last.safetensors").display()
            );
            Ok(ExitCode::from(130))
        }
    }
}

/// `--export` (and `--quantize`): the best checkpoint to ONNX, then each written file scored
/// on the run's validation split, as the file says (Candle rebuilds it from the ONNX).
fn export_after_training(a: &Args, config: &TrainConfig, onnx: &Path) -> Result<()> {
    let best = config.out.join("best.safetensors");
    let ck = if best.is_file() {
        best
    } else {
        config.out.join("last.safetensors")
    };
    super::export::export(&ck, onnx, false, false)?;
    let mut written = vec![onnx.to_path_buf()];
    if a.quantize.is_some() {
        let int8 = int8_sibling(onnx);
        let c = &a.calibration;
        let calibration = match (&c.calibration, config.source().images) {
            (Some(c), _) => c.clone(),
            (None, Some(dir)) => dir,
            (None, None) => bail!(
                "--quantize int8 with only --manifest needs --calibration DIR (a folder of \
                 images) or --data DIR"
            ),
        };
        let req = Int8Request {
            form: QuantForm::Qdq,
            calibration: Some(calibration.clone()),
            count: c.calibration_count,
            method: c.calibration_method,
            test_time_flip: false,
        };
        let r = export_int8_on(&ck, &int8, &req, &candle_core::Device::Cpu).with_context(|| {
            format!(
                "exporting {} to int8 {} (calibration images from {})",
                ck.display(),
                int8.display(),
                calibration.display()
            )
        })?;
        for (p, reason) in &r.skipped {
            tracing::warn!(
                "calibration: skipped unreadable image {}: {reason}",
                p.display()
            );
        }
        let size = std::fs::metadata(&int8).map(|m| m.len()).unwrap_or(0);
        println!(
            "wrote {} ({:.2} MB, int8 qdq, activations calibrated on {} images ({}))",
            int8.display(),
            size as f64 / 1e6,
            r.images,
            c.calibration_method
        );
        written.push(int8);
    }
    if config.val_fraction <= 0.0 {
        return Ok(());
    }
    let dev = candle_core::Device::Cpu;
    for file in &written {
        let m = load(None, Some(file), Some(config.val_fraction), false, &dev)
            .with_context(|| format!("loading {}", file.display()))?;
        let source = config.source();
        let d = load_split(&source, &m.contract, Split::Val, m.val_fraction)
            .with_context(|| format!("reading {}", source.describe()))?;
        let r = evaluate(&m.net, &d.cache, &m.contract.heads, 128, &dev)
            .with_context(|| format!("scoring {}", file.display()))?;
        let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        println!(
            "{} ({size} B), validation split: {}",
            file.display(),
            r.report.one_line()
        );
    }
    Ok(())
}

/// `regression, years` / `binary` / `multiclass, 8 classes` (for the run's first lines).
fn kind_text(h: &models::HeadSpec) -> String {
    match &h.kind {
        models::HeadKind::Regression { unit, .. } if !unit.is_empty() => {
            format!("regression, {unit}")
        }
        models::HeadKind::Regression { .. } => "regression".into(),
        models::HeadKind::Distribution { unit, bins, .. } => {
            format!("distribution, {unit}, {bins} bins")
        }
        models::HeadKind::Binary { .. } => "binary".into(),
        models::HeadKind::Multiclass { labels } => {
            format!("multiclass, {} classes", labels.len())
        }
    }
}

/// `model.onnx` → `model-int8.onnx`, beside it.
fn int8_sibling(onnx: &Path) -> PathBuf {
    let stem = onnx
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    onnx.with_file_name(format!("{stem}-int8.onnx"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_file_sits_beside_the_fp32_one() {
        assert_eq!(
            int8_sibling(Path::new("out/model.onnx")),
            PathBuf::from("out/model-int8.onnx")
        );
        assert_eq!(int8_sibling(Path::new("m")), PathBuf::from("m-int8.onnx"));
    }
}
