//! `host-train export`.
use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use host_train::export::{export_checkpoint, ExportOptions, IR_VERSION, OPSET};

/// Arguments of `export`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Checkpoint to export.
    #[arg(long)]
    checkpoint: PathBuf,
    /// ONNX file to write.
    #[arg(long)]
    out: PathBuf,
    /// Keep BatchNormalization nodes instead of folding them into the convolutions.
    #[arg(long)]
    keep_batchnorm: bool,
}

/// Exports `checkpoint` to `out` and says what was written.
pub fn export(
    checkpoint: &std::path::Path,
    out: &std::path::Path,
    keep_batchnorm: bool,
) -> Result<()> {
    let contract = export_checkpoint(
        checkpoint,
        out,
        ExportOptions {
            fold_batchnorm: !keep_batchnorm,
        },
    )
    .with_context(|| format!("exporting {} to {}", checkpoint.display(), out.display()))?;
    let size = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    println!(
        "wrote {} ({:.2} MB, ONNX IR {IR_VERSION}, opset {OPSET}, {}, BatchNorm {}; heads: {})",
        out.display(),
        size as f64 / 1e6,
        contract.architecture,
        if keep_batchnorm { "kept" } else { "folded" },
        contract
            .heads
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

pub fn run(a: Args) -> Result<ExitCode> {
    export(&a.checkpoint, &a.out, a.keep_batchnorm)?;
    Ok(ExitCode::SUCCESS)
}
