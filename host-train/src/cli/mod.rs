//! One file per subcommand: its arguments and its handler.
pub mod average;
pub mod bench;
pub mod eval;
pub mod export;
pub mod finetune;
pub mod report;
pub mod synth;
pub mod train;

use std::path::PathBuf;

use anyhow::{bail, Result};

/// Sets the thread count for Candle (which reads `RAYON_NUM_THREADS`) and rayon's pool.
pub fn set_threads(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        if n == 0 {
            bail!("--threads must be at least 1");
        }
        // Edition 2021: set_var is safe; nothing else runs yet.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()?;
    }
    Ok(())
}

/// `--data DIR` or `--manifest CSV`.
#[derive(clap::Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct DataArgs {
    /// Folder of UTKFace-named images (`age_gender_race_date.jpg.chip.jpg`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// CSV manifest with a header `path,age,gender,ethnicity` (paths relative to it).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
}

impl DataArgs {
    /// The folder or manifest; checks that it exists.
    pub fn source(&self) -> Result<PathBuf> {
        let p = self
            .data
            .clone()
            .or_else(|| self.manifest.clone())
            .unwrap_or_default();
        if !p.exists() {
            bail!("data source {} does not exist", p.display());
        }
        if self.manifest.is_some() && !p.is_file() {
            bail!("manifest {} is not a file", p.display());
        }
        if self.data.is_some() && !p.is_dir() {
            bail!(
                "--data {} is not a folder (use --manifest for a CSV file)",
                p.display()
            );
        }
        Ok(p)
    }
}
