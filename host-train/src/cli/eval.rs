//! `host-train eval`.
use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, Result};
use candle_core::Device;
use host_train::{
    data::ImageCache,
    device,
    export::import::load_onnx,
    net::HydraNet,
    train::{evaluate::evaluate, setup::load_for_inference},
};
use models::{
    dataset::{scan_source, split},
    Contract,
};

use super::DataArgs;

/// Which part of the data to score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Split {
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
    /// Score a checkpoint with test-time flip (the mean over the image and its mirror), as
    /// `export --test-time-flip` would run it. An ONNX file follows its own contract.
    #[arg(long, conflicts_with = "model")]
    test_time_flip: bool,
    /// Print one JSON object (the last line) instead of tables.
    #[arg(long)]
    json: bool,
}

/// A network to score: from a checkpoint or rebuilt from an ONNX file.
pub struct Loaded {
    /// The network.
    pub net: HydraNet,
    /// Its contract.
    pub contract: Contract,
    /// The validation fraction of its training run (for `--split`).
    pub val_fraction: f64,
    /// The file it came from.
    pub path: PathBuf,
}

/// Loads `checkpoint` or `model` (an ONNX file); `val_fraction` overrides the fraction an
/// ONNX file recorded; `test_time_flip` runs a checkpoint as a flip export would.
pub fn load(
    checkpoint: Option<&Path>,
    model: Option<&Path>,
    val_fraction: Option<f64>,
    test_time_flip: bool,
    dev: &Device,
) -> Result<Loaded> {
    match (checkpoint, model) {
        (Some(c), _) => {
            let (net, _vm, mut ck) =
                load_for_inference(c, dev).with_context(|| format!("loading {}", c.display()))?;
            ck.contract.test_time_flip = test_time_flip;
            Ok(Loaded {
                net: net.with_test_time_flip(test_time_flip),
                contract: ck.contract,
                val_fraction: ck.config.val_fraction,
                path: c.to_path_buf(),
            })
        }
        (None, Some(m)) => {
            let im = load_onnx(m, dev).with_context(|| format!("loading {}", m.display()))?;
            let recorded = im
                .contract
                .training
                .get("val_fraction")
                .and_then(|v| v.parse().ok());
            Ok(Loaded {
                net: im.net,
                contract: im.contract,
                val_fraction: val_fraction.or(recorded).unwrap_or(0.1),
                path: m.to_path_buf(),
            })
        }
        (None, None) => anyhow::bail!("give --checkpoint or --model"),
    }
}

/// The images of one split, read and preprocessed for `contract`.
pub struct Scored {
    /// The folder or manifest.
    pub source: PathBuf,
    /// The readable images.
    pub cache: ImageCache,
    /// Files skipped: malformed names and unreadable images.
    pub skipped: usize,
}

/// Reads `split` of the data source (warning about every skipped file); fails when no
/// image is readable.
pub fn load_split(
    data: &DataArgs,
    contract: &Contract,
    which: Split,
    val_fraction: f64,
) -> Result<Scored> {
    let source = data.source()?;
    let scan = scan_source(&source, &contract.heads)
        .with_context(|| format!("reading {}", source.display()))?;
    if let Some(r) = scan.rejection_report() {
        tracing::warn!("{}: {r}", source.display());
    }
    let rejected = scan.rejected.len();
    let samples = match which {
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
    let skipped = rejected + cache.skipped.len();
    Ok(Scored {
        source,
        cache,
        skipped,
    })
}

pub fn run(a: Args) -> Result<ExitCode> {
    let dev = device::open(&a.device)?;
    let m = load(
        a.checkpoint.as_deref(),
        a.model.as_deref(),
        a.val_fraction,
        a.test_time_flip,
        &dev,
    )?;
    let d = load_split(&a.data, &m.contract, a.split, m.val_fraction)?;
    let r = evaluate(&m.net, &d.cache, &m.contract.heads, a.batch, &dev)?;
    if a.json {
        let mut v = r.report.to_json();
        v["skipped"] = serde_json::json!(d.skipped);
        v["checkpoint"] = serde_json::json!(m.path.display().to_string());
        println!("{v}");
    } else {
        println!(
            "{} on {} ({:?} split)",
            m.path.display(),
            d.source.display(),
            a.split
        );
        print!("{}", r.report.table());
    }
    Ok(ExitCode::SUCCESS)
}
