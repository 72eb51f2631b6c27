//! How well the face detector feeds the HydraNet, on camera-like scenes made of real faces
//! (`hydranet_fixture::scenes`: UTKFace crops pasted, scaled and turned on generated
//! backgrounds, so where each face is is known).
//!
//! ```sh
//! cargo run --release -p edge-runtime --example detect_eval -- \
//!     --model models/utkface/hydranet-utkface.onnx --data ../shared/datasets/utkface/UTKFace
//! ```
//!
//! - `--fit`: fits the crop rule on the *training* split: each face pasted alone and level,
//!   the detector run, and the pasted square (the aligned crop itself) the target. Prints
//!   the median scale and shifts, the numbers of `CropRule::UTKFACE`.
//! - otherwise, on the *validation* split: recall by face size, false faces per frame on
//!   scenes with no face, and the HydraNet's metrics through the detector and the crop rule
//!   against the same faces' original crops. A face's size is its pasted side divided by
//!   the rule's scale: the size of the box BlazeFace draws around it.
use std::{path::PathBuf, time::Instant};

use anyhow::{Context, Result};
use clap::Parser;
use edge_runtime::{
    faces::{find_detector, FaceFinder, FaceOptions},
    Engine, LoadOptions,
};
use hydranet_fixture::scenes::{self, Pasted};
use image::DynamicImage;
use models::{
    crop::CropRule,
    dataset::{load_image, scan_source, split},
    metrics::Evaluator,
    Prediction,
};
use rand::{seq::SliceRandom, Rng};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// HydraNet ONNX file.
    #[arg(long)]
    model: PathBuf,
    /// UTKFace folder.
    #[arg(long)]
    data: PathBuf,
    /// BlazeFace file (default: the installed one).
    #[arg(long)]
    detector: Option<PathBuf>,
    /// Faces to use.
    #[arg(long, default_value_t = 400)]
    faces: usize,
    /// Scenes with no face.
    #[arg(long, default_value_t = 200)]
    empty: usize,
    /// Fit the crop rule on the training split instead.
    #[arg(long)]
    fit: bool,
    /// Largest turn of a pasted face, degrees.
    #[arg(long, default_value_t = 20.0)]
    max_angle: f32,
    #[arg(long, default_value_t = 640)]
    width: u32,
    #[arg(long, default_value_t = 480)]
    height: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Detector score threshold.
    #[arg(long, default_value_t = models::detect::DetectConfig::default().min_score)]
    min_score: f32,
    /// Evaluate on the training split (to tune; the numbers to report come from `val`).
    #[arg(long)]
    train: bool,
}

fn median(v: &mut [f32]) -> f32 {
    v.sort_by(f32::total_cmp);
    v[v.len() / 2]
}

/// Median absolute deviation.
fn mad(v: &[f32], m: f32) -> f32 {
    let mut d: Vec<f32> = v.iter().map(|x| (x - m).abs()).collect();
    median(&mut d)
}

fn main() -> Result<()> {
    let a = Args::parse();
    let detector = find_detector(a.detector.as_deref())?;
    let mut finder = FaceFinder::load(
        &detector,
        FaceOptions {
            cap: edge_runtime::faces::MAX_FACES,
            detect: models::detect::DetectConfig {
                min_score: a.min_score,
                ..Default::default()
            },
            ..FaceOptions::default()
        },
    )
    .with_context(|| format!("loading {}", detector.display()))?;
    let engine = Engine::load_for_faces(&a.model, 4, LoadOptions::default())
        .with_context(|| format!("loading {}", a.model.display()))?;
    let heads = engine.contract().heads.clone();
    let scan =
        scan_source(&a.data, &heads).with_context(|| format!("reading {}", a.data.display()))?;
    let (train, val) = split(&scan.samples, 0.1);
    let mut rng = scenes::rng(a.seed);
    let mut pool = if a.fit || a.train { train } else { val };
    pool.shuffle(&mut rng);
    pool.truncate(a.faces);
    let (w, h) = (a.width, a.height);
    // A face's size: its pasted side over this (the median side per BlazeFace box side).
    const BOX_SCALE: f32 = 1.09;

    if a.fit {
        let (mut scale, mut sx, mut sy, mut eye, mut angle) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut template: Vec<Vec<f32>> = vec![Vec::new(); 2 * models::crop::TEMPLATE_POINTS];
        let mut missed = 0;
        for s in &pool {
            let face = load_image(&s.path)?.to_rgb8();
            let side = rng.random_range(100.0..260.0f32);
            let mut frame = scenes::background(&mut rng, w, h);
            let Some(at) = scenes::place(&mut rng, w, h, &[side], 0.0).pop() else {
                continue;
            };
            scenes::paste(&mut frame, &face, at);
            let found = finder.find(frame.as_raw(), w, h, 1.0)?;
            let Some(f) = found
                .faces
                .iter()
                .find(|f| {
                    let [x, y] = f.bbox.center();
                    at.contains(x, y)
                })
                .copied()
            else {
                missed += 1;
                continue;
            };
            let size = f.bbox.w.max(f.bbox.h);
            let [bx, by] = f.bbox.center();
            scale.push(at.side / size);
            sx.push((at.cx - bx) / size);
            sy.push((at.cy - by) / size);
            let [r, l] = [f.keypoints[0], f.keypoints[1]];
            eye.push(at.side / ((l[0] - r[0]).hypot(l[1] - r[1])));
            angle.push(CropRule::eye_angle(&f).to_degrees());
            for (k, kp) in f.keypoints[..models::crop::TEMPLATE_POINTS]
                .iter()
                .enumerate()
            {
                template[2 * k].push((kp[0] - (at.cx - at.side / 2.0)) / at.side);
                template[2 * k + 1].push((kp[1] - (at.cy - at.side / 2.0)) / at.side);
            }
        }
        let template: Vec<serde_json::Value> = template
            .iter_mut()
            .map(|v| {
                let m = median(v);
                json!({"median": m, "mad": mad(v, m)})
            })
            .collect();
        anyhow::ensure!(!scale.is_empty(), "no face found in {} scenes", pool.len());
        let stat = |v: &mut Vec<f32>| {
            let m = median(v);
            json!({"median": m, "mad": mad(v, m), "relative_mad": mad(v, m) / m.abs().max(1e-6)})
        };
        println!(
            "{}",
            json!({
                "fit": "train split", "faces": pool.len(), "found": scale.len(), "missed": missed,
                "scale_per_box": stat(&mut scale), "shift_x": stat(&mut sx), "shift_y": stat(&mut sy),
                "scale_per_eye_distance": stat(&mut eye), "eye_angle_degrees": stat(&mut angle),
                "template_xy_right_eye_left_eye_nose_mouth": template,
                "detector": detector.display().to_string(),
            })
        );
        return Ok(());
    }

    // Recall and the HydraNet through the detector, on scenes of one to three faces.
    const BINS: [(&str, f32); 3] = [("32-64", 32.0), ("64-128", 64.0), ("128+", 128.0)];
    let mut pasted_in = [0usize; 3];
    let mut found_in = [0usize; 3];
    let mut extra = 0usize;
    let mut frames = 0usize;
    let mut det_ms = 0.0f64;
    let mut through = Evaluator::new(&heads);
    let mut original = Evaluator::new(&heads);
    let mut pasted = Evaluator::new(&heads);
    let mut through64 = Evaluator::new(&heads);
    let mut original64 = Evaluator::new(&heads);
    let mut agree = [0usize; 2];
    // Crop errors against the pasted square: centre offset per side, |log| of the size
    // ratio (the rule's, then the box's), turn in degrees, the box centre's offset.
    let mut geometry: Vec<Vec<f32>> = vec![Vec::new(); 5];
    let mut next = 0;
    while next < pool.len() {
        let k = rng.random_range(1..=3usize).min(pool.len() - next);
        let sides: Vec<f32> = (0..k)
            .map(|_| rng.random_range(32.0..200.0f32) * BOX_SCALE)
            .collect();
        let placed: Vec<Pasted> = scenes::place(&mut rng, w, h, &sides, a.max_angle.to_radians());
        let mut frame = scenes::background(&mut rng, w, h);
        let mut images: Vec<DynamicImage> = Vec::new();
        for (i, at) in placed.iter().enumerate() {
            let img = load_image(&pool[next + i].path)?;
            scenes::paste(&mut frame, &img.to_rgb8(), *at);
            images.push(img);
        }
        let samples = &pool[next..next + placed.len()];
        next += placed.len().max(1);
        if placed.is_empty() {
            continue;
        }
        frames += 1;
        let t = Instant::now();
        let found = finder.find(frame.as_raw(), w, h, 1.0)?;
        det_ms += t.elapsed().as_secs_f64() * 1e3;
        let mut used = vec![false; found.faces.len()];
        let mut matched = Vec::new();
        for (i, at) in placed.iter().enumerate() {
            let bin = BINS
                .iter()
                .rposition(|(_, lo)| at.side / BOX_SCALE >= *lo)
                .unwrap_or(0);
            pasted_in[bin] += 1;
            let hit = found.faces.iter().enumerate().position(|(j, f)| {
                let [x, y] = f.bbox.center();
                !used[j] && at.contains(x, y) && f.bbox.w.max(f.bbox.h) < at.side
            });
            if let Some(j) = hit {
                used[j] = true;
                found_in[bin] += 1;
                matched.push((i, j, bin));
            }
        }
        extra += used.iter().filter(|u| !**u).count();
        for &(i, j, _) in &matched {
            let (at, f, c) = (placed[i], found.faces[j], found.crops[j]);
            let size = f.bbox.w.max(f.bbox.h);
            let [bx, by] = f.bbox.center();
            geometry[0].push((c.cx - at.cx).hypot(c.cy - at.cy) / at.side);
            geometry[1].push((c.height / at.side).ln().abs());
            geometry[2].push((size * BOX_SCALE / at.side).ln().abs());
            geometry[3].push((c.angle - at.angle).to_degrees().abs());
            geometry[4].push((bx - at.cx).hypot(by - at.cy) / at.side);
        }
        if matched.is_empty() {
            continue;
        }
        let crops: Vec<_> = matched.iter().map(|&(_, j, _)| found.crops[j]).collect();
        let mut input = Vec::new();
        finder.prepare(&engine, frame.as_raw(), w, h, &crops, &mut input)?;
        let via = engine.predict_inputs(&input, crops.len(), &mut Vec::new())?;
        // The pasted squares themselves, cut from the same frame: what a perfect detector
        // and crop rule would give at this resolution.
        let exact: Vec<_> = matched
            .iter()
            .map(|&(i, _, _)| {
                let at = placed[i];
                models::crop::Crop {
                    cx: at.cx,
                    cy: at.cy,
                    width: at.side,
                    height: at.side,
                    angle: at.angle,
                }
            })
            .collect();
        finder.prepare(&engine, frame.as_raw(), w, h, &exact, &mut input)?;
        let ideal = engine.predict_inputs(&input, exact.len(), &mut Vec::new())?;
        let mine: Vec<DynamicImage> = matched.iter().map(|&(i, _, _)| images[i].clone()).collect();
        let orig = engine.predict(&mine)?;
        for (((&(i, _, bin), p), o), e) in matched.iter().zip(&via).zip(&orig).zip(&ideal) {
            let t = &samples[i].targets;
            through.add(t, p);
            if bin >= 1 {
                pasted.add(t, e);
            }
            original.add(t, o);
            if bin >= 1 {
                through64.add(t, p);
                original64.add(t, o);
            }
            agree[0] += 1;
            agree[1] += same_classes(p, o) as usize;
        }
    }
    let mut empty_faces = 0usize;
    for _ in 0..a.empty {
        let frame = scenes::background(&mut rng, w, h);
        empty_faces += finder.find(frame.as_raw(), w, h, 1.0)?.faces.len();
    }
    let recall: Vec<_> = BINS
        .iter()
        .enumerate()
        .map(|(b, (name, _))| {
            json!({"face_px": name, "faces": pasted_in[b], "found": found_in[b],
                   "recall": found_in[b] as f64 / pasted_in[b].max(1) as f64})
        })
        .collect();
    let (n64, f64_) = (pasted_in[1] + pasted_in[2], found_in[1] + found_in[2]);
    let (t, o, t64, o64) = (
        through.report(),
        original.report(),
        through64.report(),
        original64.report(),
    );
    println!(
        "{}",
        json!({
            "split": if a.train { "train" } else { "validation" }, "min_score": a.min_score, "frames": frames, "size": [w, h], "max_angle_degrees": a.max_angle,
            "recall_by_size": recall,
            "recall_64_up": f64_ as f64 / n64.max(1) as f64,
            "unmatched_detections_in_face_scenes": extra,
            "empty_frames": a.empty, "false_faces_per_empty_frame": empty_faces as f64 / a.empty.max(1) as f64,
            "detect_ms_mean": det_ms / frames.max(1) as f64,
            "hydranet": {
                "through_detector": t.summary(), "original_crops": o.summary(),
                "through_detector_64_up": t64.summary(), "original_crops_64_up": o64.summary(),
                "pasted_squares_64_up": pasted.report().summary(),
                "same_class_answers": agree[1] as f64 / agree[0].max(1) as f64,
            },
            "crop_rule": CropRule::UTKFACE,
            "crop_error_medians": {
                "centre_per_side": median(&mut geometry[0]), "size_log_ratio": median(&mut geometry[1]),
                "box_size_log_ratio": median(&mut geometry[2]), "turn_degrees": median(&mut geometry[3]),
                "box_centre_per_side": median(&mut geometry[4]),
            },
            "detector": detector.display().to_string(),
            "model": a.model.display().to_string(),
        })
    );
    Ok(())
}

/// Whether two predictions pick the same class on every class head.
fn same_classes(a: &Prediction, b: &Prediction) -> bool {
    use models::HeadOutput;
    a.heads.iter().zip(&b.heads).all(|((_, x), (_, y))| match (x, y) {
        (HeadOutput::Binary { index: i, .. }, HeadOutput::Binary { index: j, .. })
        | (HeadOutput::Multiclass { index: i, .. }, HeadOutput::Multiclass { index: j, .. }) => {
            i == j
        }
        _ => true,
    })
}
