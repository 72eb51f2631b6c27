//! `host-train eval`.
use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, Result};
pub use host_train::score::Split;
use host_train::{
    device,
    score::{self, Scored},
    train::evaluate::evaluate,
};
use models::Contract;

use super::DataArgs;

/// Arguments of `eval`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Checkpoint (`best.safetensors` or `last.safetensors` of a run).
    #[arg(long, required_unless_present = "model", conflicts_with = "model")]
    checkpoint: Option<PathBuf>,
    /// An exported ONNX file instead (fp32 or int8), rebuilt in Candle: int8 weights are
    /// dequantized and int8 activations rounded to their grids, as the file says.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Validation fraction for `--split` with `--model` (default: the one the file's
    /// training run recorded, else 0.1).
    #[arg(long)]
    val_fraction: Option<f64>,
    #[command(flatten)]
    data: DataArgs,
    /// Which images to score.
    #[arg(long, value_enum, default_value_t = Split::All)]
    split: Split,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Score a checkpoint with test-time flip (the mean over the image and its mirror), as
    /// `export --test-time-flip` would run it. An ONNX file follows its own contract.
    #[arg(long, conflicts_with = "model")]
    test_time_flip: bool,
    /// Print one JSON object (the last line) instead of tables.
    #[arg(long)]
    json: bool,
}

/// Names the file of a failed [`score::load`] (`--checkpoint` or `--model`).
pub fn loading(checkpoint: Option<&Path>, model: Option<&Path>) -> String {
    let file = checkpoint.or(model).unwrap_or(Path::new(""));
    format!("loading {}", file.display())
}

/// [`score::load_split`] of `--data` or `--manifest`, with the source named in the error.
pub fn load_split(
    data: &DataArgs,
    contract: &Contract,
    which: Split,
    val_fraction: f64,
) -> Result<Scored> {
    let source = data.source()?;
    score::load_split(&source, contract, which, val_fraction)
        .with_context(|| format!("reading {}", source.describe()))
}

pub fn run(a: Args) -> Result<ExitCode> {
    let dev = device::open(&a.device)?;
    let (checkpoint, model) = (a.checkpoint.as_deref(), a.model.as_deref());
    let m = score::load(checkpoint, model, a.val_fraction, a.test_time_flip, &dev)
        .with_context(|| loading(checkpoint, model))?;
    let d = load_split(&a.data, &m.contract, a.split, m.val_fraction)?;
    let r = evaluate(&m.net, &d.cache, &m.contract.heads, a.batch, &dev)?;
    if a.json {
        let mut v = r.report.to_json();
        v["skipped"] = serde_json::json!(d.skipped);
        v["checkpoint"] = serde_json::json!(m.path.display().to_string());
        println!("{v}");
    } else {
        println!("{} on {} ({:?} split)", m.path.display(), d.source, a.split);
        print!("{}", r.report.table());
    }
    Ok(ExitCode::SUCCESS)
}
