//! `edge-runtime predict`.
use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;
use edge_runtime::Engine;
use models::dataset::load_image;
use serde_json::json;

/// Arguments of `predict`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// ONNX model file.
    #[arg(long)]
    model: PathBuf,
    /// Images.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// tract threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

pub fn run(a: Args) -> Result<ExitCode> {
    super::set_threads(a.threads)?;
    let engine = Engine::load(&a.model, 1)?;
    let mut failed = 0usize;
    for path in &a.images {
        let result = load_image(path)
            .map_err(anyhow::Error::from)
            .and_then(|img| {
                engine
                    .predict(std::slice::from_ref(&img))
                    .map_err(anyhow::Error::from)
            });
        match result {
            Ok(mut preds) => {
                let mut v = serde_json::to_value(preds.remove(0))?;
                v["file"] = json!(path.display().to_string());
                println!("{v}");
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {}: {e:#}", path.display());
            }
        }
    }
    let n = a.images.len();
    if failed > 0 {
        eprintln!("predicted {} of {n} images; {failed} failed", n - failed);
        Ok(ExitCode::FAILURE)
    } else {
        Ok(ExitCode::SUCCESS)
    }
}
