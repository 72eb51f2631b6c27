//! The training loop, apart from the model (as in burn-train): it owns the optimiser, the
//! schedule, validation, logging and "when to checkpoint"; the checkpoint module owns
//! "how to save".
use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Instant,
};

use candle_core::Device;
use candle_nn::VarMap;
use indicatif::{ProgressBar, ProgressStyle};
use models::Contract;
use serde_json::json;

use super::{
    checkpoint::{self, TrainState},
    evaluate::{evaluate, EvalResult},
    loss::{head_loss, LossCombiner},
    optim::Optimizer,
    schedule::lr_at,
    TrainConfig,
};
use crate::{
    data::{batch::epoch_order, Batcher, ImageCache},
    net::HydraNet,
    Error, Result,
};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// All epochs done.
    Finished,
    /// Stopped by a request (Ctrl-C) after saving.
    Interrupted,
    /// Stopped after [`Trainer::max_steps`] optimiser steps, after saving.
    StepLimit,
}

/// Timing and losses of one epoch.
#[derive(Debug, Clone)]
pub struct EpochStats {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss per head over the steps run this epoch.
    pub train_head_losses: Vec<f64>,
    /// Mean combined training loss.
    pub train_loss: f64,
    /// Wall time of the epoch's training steps.
    pub seconds: f64,
    /// Of which building batches (decode is done up front; this is augment + normalise).
    pub data_seconds: f64,
    /// Training images per second.
    pub img_per_s: f64,
}

/// Everything a run needs.
pub struct Trainer<'a> {
    /// Run configuration.
    pub config: TrainConfig,
    /// Contract being trained.
    pub contract: Contract,
    /// The network.
    pub net: HydraNet,
    /// Its variables (and the loss's learned weights).
    pub varmap: VarMap,
    /// Loss combination.
    pub loss: LossCombiner,
    /// Optimiser.
    pub optim: Optimizer,
    /// Device.
    pub device: Device,
    /// Training images.
    pub train: &'a ImageCache,
    /// Validation images (may be empty).
    pub val: &'a ImageCache,
    /// Where the loop is.
    pub state: TrainState,
    /// Set to stop after the current step.
    pub stop: Arc<AtomicBool>,
    /// Print per-epoch lines to stdout.
    pub verbose: bool,
    /// Stop (saving `last.safetensors`) once this many optimiser steps are done in all;
    /// the schedule still spans every epoch, so the steps run are the full run's first ones.
    pub max_steps: Option<u64>,
    /// Also log every step's losses and learning rate to `log.jsonl` (`"event": "step"`).
    pub log_steps: bool,
    /// Also keep each epoch's checkpoint as `epoch-NNN.safetensors` (weight averaging,
    /// `host-train average`, needs the points along the trajectory, not just best/last).
    pub keep_epochs: bool,
    /// Every epoch's stats, for callers and tests.
    pub history: Vec<(EpochStats, Option<EvalResult>)>,
}

impl Trainer<'_> {
    fn steps_per_epoch(&self) -> usize {
        // The last partial batch is dropped: a batch of one breaks BatchNorm statistics.
        (self.train.len() / self.config.batch).max(1)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.config.out.join(name)
    }

    /// Saves `last.safetensors`, and `best.safetensors` when `best`, and the epoch's
    /// `epoch-NNN.safetensors` when `epoch_end` and [`Trainer::keep_epochs`] (one
    /// serialisation for all of them).
    pub fn save(&self, best: bool, epoch_end: bool) -> Result<()> {
        let last = self.path("last.safetensors");
        let best_path = self.path("best.safetensors");
        let epoch_path = self.path(&format!("epoch-{:03}.safetensors", self.state.epoch));
        let mut paths: Vec<&Path> = vec![&last];
        if best {
            paths.push(&best_path);
        }
        if epoch_end && self.keep_epochs {
            paths.push(&epoch_path);
        }
        checkpoint::save(
            &paths,
            &self.contract,
            &self.config,
            &self.state,
            &self.varmap,
            &self.optim.state(),
        )
    }

    fn log(&self, record: serde_json::Value) -> Result<()> {
        let path = self.path("log.jsonl");
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        writeln!(f, "{record}").map_err(io)
    }

    /// Runs the remaining epochs.
    pub fn run(&mut self) -> Result<Outcome> {
        let steps = self.steps_per_epoch();
        let total = (steps * self.config.epochs) as u64;
        let warmup = (self.config.warmup_epochs * steps as f64).round() as u64;
        let batcher = Batcher::new(
            self.train,
            &self.contract.heads,
            self.config.augment,
            self.config.seed,
        );
        let heads = self.contract.heads.clone();
        if self.max_steps.is_some_and(|m| self.state.global_step >= m) {
            return Ok(Outcome::StepLimit);
        }
        while self.state.epoch < self.config.epochs {
            let epoch = self.state.epoch;
            let order = epoch_order(self.train.len(), self.config.seed, epoch as u64);
            let bar = ProgressBar::new(steps as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "epoch {prefix} [{bar:30}] {pos}/{len} {per_sec} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_prefix(format!("{}/{}", epoch + 1, self.config.epochs));
            bar.set_position(self.state.step_in_epoch as u64);
            let (t0, mut data_s) = (Instant::now(), 0.0);
            let mut sums = vec![0.0f64; heads.len() + 1];
            let first = self.state.step_in_epoch;
            for step in first..steps {
                let idx = &order[step * self.config.batch..(step + 1) * self.config.batch];
                let td = Instant::now();
                let b = batcher.batch(idx, epoch as u64, true, &self.device)?;
                data_s += td.elapsed().as_secs_f64();
                let outs = self.net.forward_t(&b.input, true)?;
                let losses = heads
                    .iter()
                    .zip(&outs)
                    .zip(&b.targets)
                    .map(|((h, o), t)| head_loss(h, o, t))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                let total_loss = self.loss.combine(&losses)?;
                let grads = total_loss.backward()?;
                let lr = lr_at(
                    self.config.schedule,
                    self.config.lr,
                    self.state.global_step,
                    total,
                    warmup,
                );
                self.optim.step(&grads, lr)?;
                self.state.global_step += 1;
                self.state.step_in_epoch = step + 1;
                let values: Vec<f32> = losses
                    .iter()
                    .map(|l| l.to_scalar::<f32>())
                    .collect::<candle_core::Result<_>>()?;
                let tl = total_loss.to_scalar::<f32>()?;
                if !tl.is_finite() {
                    return Err(Error::Config(format!(
                        "training loss became {tl} at epoch {} step {}: lower --lr",
                        epoch + 1,
                        step + 1
                    )));
                }
                for (s, v) in sums.iter_mut().zip(values.iter().chain([tl].iter())) {
                    *s += *v as f64;
                }
                if self.log_steps {
                    self.log(json!({
                        "event": "step",
                        "epoch": epoch + 1,
                        "step": step + 1,
                        "global_step": self.state.global_step,
                        "lr": lr,
                        "loss": tl,
                        "head_losses": heads.iter().map(|h| h.name.clone()).zip(values.iter().copied()).collect::<std::collections::BTreeMap<_, _>>(),
                    }))?;
                }
                let at_limit = self.max_steps.is_some_and(|m| self.state.global_step >= m);
                let done = (step + 1 - first) as f64;
                let msg: Vec<String> = heads
                    .iter()
                    .zip(&sums)
                    .map(|(h, s)| format!("{} {:.3}", h.name, s / done))
                    .collect();
                bar.set_message(format!("{} lr {lr:.2e}", msg.join(" ")));
                bar.inc(1);
                if self.stop.load(Ordering::SeqCst) && step + 1 < steps {
                    bar.abandon();
                    self.save(false, false)?;
                    self.log(
                        json!({"event": "interrupted", "epoch": epoch + 1, "step": step + 1}),
                    )?;
                    return Ok(Outcome::Interrupted);
                }
                if at_limit && step + 1 < steps {
                    bar.abandon();
                    self.save(false, false)?;
                    self.log(json!({"event": "max_steps", "epoch": epoch + 1, "step": step + 1, "global_step": self.state.global_step}))?;
                    return Ok(Outcome::StepLimit);
                }
            }
            bar.finish_and_clear();
            let seconds = t0.elapsed().as_secs_f64();
            let ran = (steps - first).max(1) as f64;
            let stats = EpochStats {
                epoch: epoch + 1,
                train_head_losses: sums[..heads.len()].iter().map(|s| s / ran).collect(),
                train_loss: sums[heads.len()] / ran,
                seconds,
                data_seconds: data_s,
                img_per_s: ran * self.config.batch as f64 / seconds,
            };
            self.state.epoch += 1;
            self.state.step_in_epoch = 0;
            let tv = Instant::now();
            let val = if self.val.is_empty() {
                None
            } else {
                Some(evaluate(
                    &self.net,
                    self.val,
                    &heads,
                    self.config.batch.max(64),
                    &self.device,
                )?)
            };
            let val_seconds = tv.elapsed().as_secs_f64();
            let best = match &val {
                Some(v) if self.state.best_val_loss.is_none_or(|b| v.loss < b) => {
                    self.state.best_val_loss = Some(v.loss);
                    self.state.best_epoch = Some(epoch + 1);
                    true
                }
                None => true,
                _ => false,
            };
            self.save(best, true)?;
            let record = json!({
                "epoch": stats.epoch,
                "train_loss": stats.train_loss,
                "train_head_losses": heads.iter().map(|h| h.name.clone()).zip(stats.train_head_losses.iter().copied()).collect::<std::collections::BTreeMap<_, _>>(),
                "val_loss": val.as_ref().map(|v| v.loss),
                "val": val.as_ref().map(|v| v.report.summary()),
                "loss_weights": self.loss.effective_weights()?,
                "epoch_seconds": stats.seconds,
                "data_seconds": stats.data_seconds,
                "data_share": stats.data_seconds / stats.seconds.max(1e-9),
                "val_seconds": val_seconds,
                "img_per_s": stats.img_per_s,
                "best": best,
            });
            self.log(record)?;
            if self.verbose {
                println!(
                    "epoch {}/{}: train loss {:.4} | {:.0} img/s, {:.1} s (data {:.1}%) | val {}{}",
                    stats.epoch,
                    self.config.epochs,
                    stats.train_loss,
                    stats.img_per_s,
                    stats.seconds,
                    100.0 * stats.data_seconds / stats.seconds.max(1e-9),
                    val.as_ref()
                        .map(|v| format!("loss {:.4} {}", v.loss, v.report.one_line()))
                        .unwrap_or_else(|| "-".into()),
                    if best { " *best" } else { "" },
                );
            }
            self.history.push((stats, val));
            if self.stop.load(Ordering::SeqCst) && self.state.epoch < self.config.epochs {
                return Ok(Outcome::Interrupted);
            }
            if self.max_steps.is_some_and(|m| self.state.global_step >= m)
                && self.state.epoch < self.config.epochs
            {
                self.log(json!({"event": "max_steps", "epoch": epoch + 1, "step": steps, "global_step": self.state.global_step}))?;
                return Ok(Outcome::StepLimit);
            }
        }
        Ok(Outcome::Finished)
    }
}
