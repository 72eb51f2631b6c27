//! The training loop, apart from the model (as in burn-train): it owns the optimiser, the
//! schedule, validation, logging and "when to checkpoint"; the checkpoint module owns
//! "how to save", the run log ([`super::log`]) what a log line holds.
//!
//! [`Trainer::run`] is the loop over epochs; each epoch is its steps
//! (`train_epoch`, which stops early on Ctrl-C or the step limit), each step one
//! optimiser update (`step`), and `end_epoch` validates, picks the best checkpoint, saves,
//! logs and prints.
use std::{
    collections::BTreeMap,
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
use models::{Contract, HeadSpec};

use super::{
    checkpoint::{self, TrainState},
    evaluate::{evaluate, EvalResult},
    log::{EpochRecord, Event, RunLog},
    loss::{masked_head_loss, LossCombiner},
    optim::Optimizer,
    schedule::lr_at,
    TrainConfig,
};
use crate::{
    data::{
        batch::{epoch_order, Batch},
        Batcher, ImageCache,
    },
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

    fn log(&self) -> RunLog {
        RunLog::new(&self.config.out)
    }

    /// Runs the remaining epochs.
    pub fn run(&mut self) -> Result<Outcome> {
        let steps = self.steps_per_epoch();
        // The batcher borrows the heads for the whole run while the steps borrow `self`
        // mutably: a copy of the (small) head list keeps the two apart.
        let heads = self.contract.heads.clone();
        let batcher = Batcher::new(self.train, &heads, self.config.augment, self.config.seed);
        if self.at_step_limit() {
            return Ok(Outcome::StepLimit);
        }
        while self.state.epoch < self.config.epochs {
            let epoch = self.state.epoch;
            let stats = match self.train_epoch(&batcher, steps)? {
                Ok(stats) => stats,
                Err(stopped) => return Ok(stopped),
            };
            self.end_epoch(stats)?;
            if self.stop.load(Ordering::SeqCst) && self.state.epoch < self.config.epochs {
                return Ok(Outcome::Interrupted);
            }
            if self.at_step_limit() && self.state.epoch < self.config.epochs {
                self.log().event(&Event::MaxSteps {
                    epoch: epoch + 1,
                    step: steps,
                    global_step: self.state.global_step,
                })?;
                return Ok(Outcome::StepLimit);
            }
        }
        Ok(Outcome::Finished)
    }

    fn at_step_limit(&self) -> bool {
        self.max_steps.is_some_and(|m| self.state.global_step >= m)
    }

    /// The rest of the current epoch's steps: its stats, or how the run stopped inside it
    /// (saved and logged).
    fn train_epoch(
        &mut self,
        batcher: &Batcher<'_>,
        steps: usize,
    ) -> Result<std::result::Result<EpochStats, Outcome>> {
        let epoch = self.state.epoch;
        let heads = self.contract.heads.clone();
        let order = epoch_order(self.train.len(), self.config.seed, epoch as u64);
        let bar = EpochBar::new(epoch, self.config.epochs, steps, self.state.step_in_epoch);
        let (t0, mut data_s) = (Instant::now(), 0.0);
        // Per head (weighted by its labelled samples), then the combined loss (per step).
        let mut sums = vec![0.0f64; heads.len() + 1];
        let mut counts = vec![0usize; heads.len()];
        let first = self.state.step_in_epoch;
        let bs = self.config.batch;
        let batch_at = |step: usize| order.get(step * bs..(step + 1) * bs);
        if let Some(b0) = batch_at(first) {
            batcher.prefetch(b0);
        }
        for step in first..steps {
            let idx = &order[step * bs..(step + 1) * bs];
            let td = Instant::now();
            let b = batcher.batch(idx, epoch as u64, true, &self.device)?;
            if let Some(next) = batch_at(step + 1) {
                batcher.prefetch(next);
            }
            data_s += td.elapsed().as_secs_f64();
            let out = self.step(&b, &heads, steps)?;
            self.state.step_in_epoch = step + 1;
            if !out.loss.is_finite() {
                return Err(Error::Config(format!(
                    "training loss became {} at epoch {} step {}: lower --lr",
                    out.loss,
                    epoch + 1,
                    step + 1
                )));
            }
            for (k, (v, n)) in out.head_losses.iter().zip(&b.labelled).enumerate() {
                sums[k] += *v as f64 * *n as f64;
                counts[k] += n;
            }
            sums[heads.len()] += out.loss as f64;
            if self.log_steps {
                self.log().event(&Event::Step {
                    epoch: epoch + 1,
                    step: step + 1,
                    global_step: self.state.global_step,
                    lr: out.lr,
                    loss: out.loss,
                    head_losses: named(&heads, out.head_losses.iter().copied()),
                    elapsed_s: t0.elapsed().as_secs_f64(),
                    data_s,
                })?;
            }
            bar.update(&heads, &sums, &counts, out.lr);
            let stopped = if self.stop.load(Ordering::SeqCst) {
                Some(Outcome::Interrupted)
            } else if self.at_step_limit() {
                Some(Outcome::StepLimit)
            } else {
                None
            };
            if let Some(outcome) = stopped.filter(|_| step + 1 < steps) {
                bar.abandon();
                self.save(false, false)?;
                self.log().event(&match outcome {
                    Outcome::Interrupted => Event::Interrupted {
                        epoch: epoch + 1,
                        step: step + 1,
                    },
                    _ => Event::MaxSteps {
                        epoch: epoch + 1,
                        step: step + 1,
                        global_step: self.state.global_step,
                    },
                })?;
                return Ok(Err(outcome));
            }
        }
        bar.finish();
        let seconds = t0.elapsed().as_secs_f64();
        let ran = (steps - first).max(1) as f64;
        Ok(Ok(EpochStats {
            epoch: epoch + 1,
            train_head_losses: sums
                .iter()
                .zip(&counts)
                .map(|(s, &n)| s / n.max(1) as f64)
                .collect(),
            train_loss: sums[heads.len()] / ran,
            seconds,
            data_seconds: data_s,
            img_per_s: ran * self.config.batch as f64 / seconds,
        }))
    }

    /// One optimiser step on batch `b`.
    fn step(&mut self, b: &Batch, heads: &[HeadSpec], steps: usize) -> Result<StepOutput> {
        let total = (steps * self.config.epochs) as u64;
        let warmup = (self.config.warmup_epochs * steps as f64).round() as u64;
        let outs = self.net.forward_t(&b.input, true)?;
        let losses = heads
            .iter()
            .enumerate()
            .map(|(k, h)| {
                masked_head_loss(
                    h,
                    &outs[k],
                    &b.targets[k],
                    b.masks[k].as_ref(),
                    b.labelled[k],
                )
            })
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
        let head_losses = losses
            .iter()
            .map(|l| l.to_scalar::<f32>())
            .collect::<candle_core::Result<_>>()?;
        Ok(StepOutput {
            head_losses,
            loss: total_loss.to_scalar::<f32>()?,
            lr,
        })
    }

    /// After an epoch's steps: validation, the best-checkpoint choice, the checkpoints,
    /// the log record and the printed line.
    fn end_epoch(&mut self, stats: EpochStats) -> Result<()> {
        let heads = self.contract.heads.clone();
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
                self.state.best_epoch = Some(stats.epoch);
                true
            }
            None => true,
            _ => false,
        };
        self.save(best, true)?;
        self.log().epoch(&EpochRecord {
            best,
            data_seconds: Some(stats.data_seconds),
            data_share: Some(stats.data_seconds / stats.seconds.max(1e-9)),
            epoch: stats.epoch,
            epoch_seconds: Some(stats.seconds),
            img_per_s: Some(stats.img_per_s),
            loss_weights: self.loss.effective_weights()?,
            train_head_losses: named(&heads, stats.train_head_losses.iter().copied()),
            train_loss: Some(stats.train_loss),
            val: val
                .as_ref()
                .and_then(|v| v.report.summary().as_object().cloned()),
            val_loss: val.as_ref().map(|v| v.loss),
            val_seconds: Some(val_seconds),
        })?;
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
        Ok(())
    }
}

/// What one optimiser step reports.
struct StepOutput {
    /// Loss per head.
    head_losses: Vec<f32>,
    /// Combined loss.
    loss: f32,
    /// Learning rate used.
    lr: f64,
}

/// Values keyed by head name, as the log has them.
fn named<T>(heads: &[HeadSpec], values: impl Iterator<Item = T>) -> BTreeMap<String, T> {
    heads.iter().map(|h| h.name.clone()).zip(values).collect()
}

/// The progress bar of one epoch: running mean loss per head and the learning rate.
struct EpochBar(ProgressBar);

impl EpochBar {
    fn new(epoch: usize, epochs: usize, steps: usize, done: usize) -> Self {
        let bar = ProgressBar::new(steps as u64);
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {per_sec} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, epochs));
        bar.set_position(done as u64);
        Self(bar)
    }

    fn update(&self, heads: &[HeadSpec], sums: &[f64], counts: &[usize], lr: f64) {
        let msg: Vec<String> = heads
            .iter()
            .zip(sums.iter().zip(counts))
            .map(|(h, (s, &n))| format!("{} {:.3}", h.name, s / n.max(1) as f64))
            .collect();
        self.0.set_message(format!("{} lr {lr:.2e}", msg.join(" ")));
        self.0.inc(1);
    }

    fn abandon(&self) {
        self.0.abandon();
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
