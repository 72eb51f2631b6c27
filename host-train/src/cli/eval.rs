//! `host-train eval`.
use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use host_train::{
    data::ImageCache,
    device,
    export::import::load_onnx,
    train::{evaluate::evaluate, setup::load_for_inference},
};
use models::dataset::{scan_source, split};

use super::DataArgs;

/// Which part of the data to score.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Split {
    /// Every image (a held-out folder).
    All,
    /// The validation split of the checkpoint's run (same hash, same fraction).
    Val,
    /// The training split.
    Train,
}

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
    /// Print one JSON object (the last line) instead of tables.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let dev = device::open(&a.device)?;
    let (net, contract, val_fraction, what) = match (&a.checkpoint, &a.model) {
        (Some(c), _) => {
            let (net, _vm, ck) =
                load_for_inference(c, &dev).with_context(|| format!("loading {}", c.display()))?;
            (net, ck.contract, ck.config.val_fraction, c.clone())
        }
        (None, Some(m)) => {
            let im = load_onnx(m, &dev).with_context(|| format!("loading {}", m.display()))?;
            let recorded = im
                .contract
                .training
                .get("val_fraction")
                .and_then(|v| v.parse().ok());
            let vf = a.val_fraction.or(recorded).unwrap_or(0.1);
            (im.net, im.contract, vf, m.clone())
        }
        (None, None) => anyhow::bail!("give --checkpoint or --model"),
    };
    let source = a.data.source()?;
    let scan = scan_source(&source, &contract.heads)
        .with_context(|| format!("reading {}", source.display()))?;
    if let Some(r) = scan.rejection_report() {
        tracing::warn!("{}: {r}", source.display());
    }
    let samples = match a.split {
        Split::All => scan.samples,
        Split::Val => split(&scan.samples, val_fraction).1,
        Split::Train => split(&scan.samples, val_fraction).0,
    };
    let cache = ImageCache::build(&samples, &contract.preprocess, None);
    for s in &cache.skipped {
        tracing::warn!(
            "skipped unreadable image {}: {}",
            s.path.display(),
            s.reason
        );
    }
    anyhow::ensure!(
        !cache.is_empty(),
        "no readable images in {}",
        source.display()
    );
    let r = evaluate(&net, &cache, &contract.heads, a.batch, &dev)?;
    if a.json {
        let mut v = r.report.to_json();
        v["skipped"] = serde_json::json!(scan.rejected.len() + cache.skipped.len());
        v["checkpoint"] = serde_json::json!(what.display().to_string());
        println!("{v}");
    } else {
        println!(
            "{} on {} ({:?} split)",
            what.display(),
            source.display(),
            a.split
        );
        print!("{}", r.report.table());
    }
    Ok(ExitCode::SUCCESS)
}
