//! `edge-runtime eval`: the same metrics and JSON as `host-train eval`, computed through
//! tract on the board.
use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};

use models::{
    dataset::{load_image, split, DataSource},
    metrics::Evaluator,
};
use serde_json::json;

/// Which part of the data to score.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Split {
    /// Every image (a held-out folder).
    All,
    /// The validation split of the model's training run (same hash, same fraction).
    Val,
    /// The training split.
    Train,
}

/// Arguments of `eval`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// ONNX model file.
    #[arg(long)]
    model: PathBuf,
    /// UTKFace-named folder (or, as before `--manifest`, one CSV manifest); with
    /// `--manifest`, the folder the manifests' relative paths start in.
    #[arg(long, required_unless_present = "manifest")]
    data: Option<PathBuf>,
    /// CSV manifest `path,<column>,...` with the columns of the model's heads (its
    /// contract names them); repeatable, each labelling what it has.
    #[arg(long)]
    manifest: Vec<PathBuf>,
    /// Which images to score.
    #[arg(long, value_enum, default_value_t = Split::All)]
    split: Split,
    /// Validation fraction for `--split` (default: the one the model's training run
    /// recorded in its contract, else 0.1).
    #[arg(long)]
    val_fraction: Option<f64>,
    /// Images per tract run.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// tract threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[command(flatten)]
    int8: super::Int8KernelArg,
    /// Print one JSON object (the last line) instead of tables.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    super::set_threads(a.threads)?;
    let engine = a.int8.load(&a.model, a.batch)?;
    let heads = engine.contract().heads.clone();
    for p in a.data.iter().chain(&a.manifest) {
        anyhow::ensure!(p.exists(), "data source {} does not exist", p.display());
    }
    let source = match (&a.data, a.manifest.is_empty()) {
        (Some(d), true) => DataSource::from_path(d),
        (images, _) => DataSource {
            images: images.clone(),
            manifests: a.manifest.clone(),
        },
    };
    let what = source.describe();
    let scan = source
        .scan(&heads)
        .with_context(|| format!("reading {what}"))?;
    if let Some(r) = scan.rejection_report() {
        tracing::warn!("{what}: {r}");
    }
    let val_fraction = a
        .val_fraction
        .or_else(|| {
            engine
                .contract()
                .training
                .get("val_fraction")
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.1);
    let samples = match a.split {
        Split::All => scan.samples,
        Split::Val => split(&scan.samples, val_fraction).1,
        Split::Train => split(&scan.samples, val_fraction).0,
    };
    let mut ev = Evaluator::new(&heads);
    let mut skipped = scan.rejected.len();
    for chunk in samples.chunks(a.batch.max(1) * 8) {
        let mut images = Vec::with_capacity(chunk.len());
        let mut targets = Vec::with_capacity(chunk.len());
        for s in chunk {
            match load_image(&s.path) {
                Ok(img) => {
                    images.push(img);
                    targets.push(&s.targets);
                }
                Err(e) => {
                    skipped += 1;
                    tracing::warn!("skipped: {e}");
                }
            }
        }
        for (p, t) in engine.predict(&images)?.iter().zip(targets) {
            ev.add(t, p);
        }
    }
    let report = ev.report();
    anyhow::ensure!(report.n > 0, "no readable images in {what}");
    for h in report.heads.iter().filter(|h| h.n == 0) {
        tracing::warn!("{what} labels no image for head `{}`", h.name);
    }
    if a.json {
        let mut v = report.to_json();
        v["skipped"] = json!(skipped);
        v["model"] = json!(a.model.display().to_string());
        println!("{v}");
    } else {
        println!("{} on {what}", a.model.display());
        print!("{}", report.table());
    }
    Ok(ExitCode::SUCCESS)
}
