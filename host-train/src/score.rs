//! What scoring needs before the numbers: the network (from a checkpoint, or rebuilt from
//! an exported ONNX file exactly as the file says) and the images of one split, read and
//! preprocessed for its contract. `eval`, `report` and `train --export` share it.
use std::path::{Path, PathBuf};

use candle_core::Device;
use models::{
    dataset::{label_counts, split, DataSource},
    Contract,
};

use crate::{
    data::ImageCache, export::import::load_onnx, net::HydraNet, train::setup::load_for_inference,
    Error, Result,
};

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
            let (net, _vm, mut ck) = load_for_inference(c, dev)?;
            ck.contract.test_time_flip = test_time_flip;
            Ok(Loaded {
                net: net.with_test_time_flip(test_time_flip),
                contract: ck.contract,
                val_fraction: ck.config.val_fraction,
                path: c.to_path_buf(),
            })
        }
        (None, Some(m)) => {
            let im = load_onnx(m, dev)?;
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
        (None, None) => Err(Error::Config("give --checkpoint or --model".into())),
    }
}

/// The images of one split, read and preprocessed for `contract`.
pub struct Scored {
    /// The folder or manifests, for messages.
    pub source: String,
    /// The readable images.
    pub cache: ImageCache,
    /// Files skipped: malformed names and unreadable images.
    pub skipped: usize,
}

/// Reads `which` split of `source`, warning about every skipped file and every head the
/// data does not label (its metrics are then empty); fails when no image is readable.
pub fn load_split(
    source: &DataSource,
    contract: &Contract,
    which: Split,
    val_fraction: f64,
) -> Result<Scored> {
    let scan = source.scan(&contract.heads)?;
    if let Some(r) = scan.rejection_report() {
        tracing::warn!("{}: {r}", source.describe());
    }
    let rejected = scan.rejected.len();
    let samples = match which {
        Split::All => scan.samples,
        Split::Val => split(&scan.samples, val_fraction).1,
        Split::Train => split(&scan.samples, val_fraction).0,
    };
    for (h, n) in contract
        .heads
        .iter()
        .zip(label_counts(&samples, contract.heads.len()))
    {
        if n == 0 {
            tracing::warn!(
                "{}: no image of this split is labelled for head `{}` (column `{}`)",
                source.describe(),
                h.name,
                h.column()
            );
        }
    }
    let cache = ImageCache::build(&samples, &contract.preprocess, None);
    for s in &cache.skipped {
        tracing::warn!(
            "skipped unreadable image {}: {}",
            s.path.display(),
            s.reason
        );
    }
    if cache.is_empty() {
        return Err(Error::Config(format!(
            "no readable images in {}",
            source.describe()
        )));
    }
    let skipped = rejected + cache.skipped.len();
    Ok(Scored {
        source: source.describe(),
        cache,
        skipped,
    })
}
