//! `edge-runtime info`.
use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;
use edge_runtime::Engine;

/// Arguments of `info`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// ONNX model file.
    #[arg(long)]
    model: PathBuf,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let engine = Engine::load(&a.model, 1)?;
    println!("{}", serde_json::to_string_pretty(engine.contract())?);
    let f = engine.fused();
    if f.convolutions > 0 {
        // stderr: stdout stays the contract's JSON.
        eprintln!(
            "int8: {} convolutions on the edge runtime's integer kernel, {} quantize/dequantize pairs in their epilogues, {} in one pass",
            f.convolutions, f.pairs_in_epilogues, f.pairs
        );
    }
    Ok(ExitCode::SUCCESS)
}
