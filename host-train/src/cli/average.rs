//! `host-train average`: one model from the mean of several checkpoints' weights.
use std::{path::PathBuf, process::ExitCode};

use anyhow::{bail, Context, Result};
use host_train::{device, train::average::average_checkpoints};

/// Arguments of `average`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Checkpoints of one model (same heads, body and input size), e.g. a run's
    /// `epoch-NNN.safetensors` (`train --keep-epochs`) or runs fine-tuned from one start.
    #[arg(required = true, num_args = 2.., value_name = "CHECKPOINT")]
    checkpoints: Vec<PathBuf>,
    /// Checkpoint to write (weights and BatchNorm statistics; no optimiser state).
    #[arg(long)]
    out: PathBuf,
    /// Images to recompute the BatchNorm statistics on: the training split of this
    /// UTKFace-named folder or CSV manifest (default: the first checkpoint's run data).
    #[arg(long, value_name = "DIR|CSV")]
    bn_data: Option<PathBuf>,
    /// Keep the mean of the checkpoints' BatchNorm statistics instead of recomputing
    /// them (no data needed; usually worse, as the statistics depend on the weights).
    #[arg(long, conflicts_with = "bn_data")]
    keep_batch_norm: bool,
    /// Batch size of the BatchNorm passes.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Runs `average`.
pub fn run(a: Args) -> Result<ExitCode> {
    if a.batch < 2 {
        bail!("--batch must be at least 2 (BatchNorm statistics need a batch)");
    }
    let dev = device::open(&a.device)?;
    let paths: Vec<&std::path::Path> = a.checkpoints.iter().map(PathBuf::as_path).collect();
    let summary = average_checkpoints(
        &paths,
        &a.out,
        a.bn_data.as_deref(),
        a.keep_batch_norm,
        a.batch,
        &dev,
    )
    .with_context(|| format!("averaging into {}", a.out.display()))?;
    println!(
        "wrote {}: mean of {} checkpoints, BatchNorm statistics {}",
        a.out.display(),
        summary.sources,
        match summary.batch_norm_images {
            Some(n) => format!("recomputed on {n} training images"),
            None => "averaged".into(),
        }
    );
    Ok(ExitCode::SUCCESS)
}
