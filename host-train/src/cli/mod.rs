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
use models::dataset::DataSource;

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

/// `--data DIR`, `--manifest CSV` (repeatable), or both.
#[derive(clap::Args, Debug, Clone)]
#[group(required = true, multiple = true)]
pub struct DataArgs {
    /// Folder of UTKFace-named images (`age_gender_race_date.jpg.chip.jpg`); with
    /// `--manifest`, the folder the manifests' relative paths start in.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// CSV manifest with a header `path,<column>,...` (e.g. `path,age,gender,ethnicity`),
    /// paths relative to `--data` or else to the manifest. Repeat it to combine sources,
    /// each labelling what it has; an empty cell leaves that head unlabelled.
    #[arg(long)]
    pub manifest: Vec<PathBuf>,
}

impl DataArgs {
    /// The data source; checks that each part exists.
    pub fn source(&self) -> Result<DataSource> {
        for p in self.data.iter().chain(&self.manifest) {
            if !p.exists() {
                bail!("data source {} does not exist", p.display());
            }
        }
        if let Some(d) = &self.data {
            if !d.is_dir() {
                bail!(
                    "--data {} is not a folder (use --manifest for a CSV file)",
                    d.display()
                );
            }
        }
        for m in &self.manifest {
            if !m.is_file() {
                bail!("manifest {} is not a file", m.display());
            }
        }
        if self.data.is_none() && self.manifest.is_empty() {
            bail!("give --data DIR and/or --manifest CSV");
        }
        Ok(DataSource {
            images: self.data.clone(),
            manifests: self.manifest.clone(),
        })
    }
}
