//! `host-train synth`.
use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};

/// Arguments of `synth`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Number of images.
    #[arg(long, default_value_t = 2000)]
    count: usize,
    /// Side of each image in pixels (UTKFace crops are 200).
    #[arg(long, default_value_t = 200)]
    size: u32,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(a: Args) -> Result<ExitCode> {
    host_train::synth::generate(&a.out, a.count, a.size, a.seed)
        .with_context(|| format!("writing synthetic faces to {}", a.out.display()))?;
    println!("wrote {} synthetic faces to {}", a.count, a.out.display());
    Ok(ExitCode::SUCCESS)
}
