//! `edge-runtime predict`: one JSON line per image. Plain, the image is taken as an
//! aligned face crop; with `--detect`, the faces are found first and each gets its box,
//! score, keypoints (original image pixels) and the same head answers.
use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use edge_runtime::{faces::FaceFinder, Engine};
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
    #[command(flatten)]
    detect: super::DetectArgs,
}

/// Faces found in one image, as `predict --detect` prints them.
fn detect_json(
    finder: &mut FaceFinder,
    engine: &Engine,
    img: &image::DynamicImage,
) -> Result<serde_json::Value> {
    let rgb = img.to_rgb8();
    let (found, preds) = finder.predict(engine, rgb.as_raw(), rgb.width(), rgb.height())?;
    let round = |x: f32| (f64::from(x) * 10.0).round() / 10.0;
    let mut faces = Vec::with_capacity(preds.len());
    for (f, p) in found.faces.iter().zip(preds) {
        let mut v = json!({
            "box": [round(f.bbox.x), round(f.bbox.y), round(f.bbox.w), round(f.bbox.h)],
            "score": (f64::from(f.score) * 1e3).round() / 1e3,
            "keypoints": f.keypoints.iter().map(|k| [round(k[0]), round(k[1])]).collect::<Vec<_>>(),
        });
        if let (Some(o), serde_json::Value::Object(heads)) =
            (v.as_object_mut(), serde_json::to_value(p)?)
        {
            o.extend(heads);
        }
        faces.push(v);
    }
    Ok(json!({"faces": faces, "over_cap": found.over_cap, "size": [rgb.width(), rgb.height()]}))
}

pub fn run(a: Args) -> Result<ExitCode> {
    super::set_threads(a.threads)?;
    let engine = a
        .detect
        .load_engine(&a.model)
        .with_context(|| format!("loading {}", a.model.display()))?;
    let mut finder = match a.detect.detector()? {
        Some(path) => Some(
            FaceFinder::load(&path, a.detect.options()?)
                .with_context(|| format!("loading the face detector {}", path.display()))?,
        ),
        None => None,
    };
    let mut failed = 0usize;
    for path in &a.images {
        let result = load_image(path)
            .map_err(anyhow::Error::from)
            .and_then(|img| match finder.as_mut() {
                Some(finder) => detect_json(finder, &engine, &img),
                None => {
                    let mut preds = engine.predict(std::slice::from_ref(&img))?;
                    Ok(serde_json::to_value(preds.remove(0))?)
                }
            });
        match result {
            Ok(mut v) => {
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
