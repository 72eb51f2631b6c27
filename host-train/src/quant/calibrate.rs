//! Calibration: run real images through the Candle model, observe every activation point,
//! choose each point's uint8 range.
//!
//! Two passes over the images: the first finds each point's range, the second fills a
//! histogram of |x| over it, from which `percentile` and `entropy` pick a
//! clipping threshold.
//!
//! 8192 bins (TensorRT uses 2048 with 128 levels): the entropy search cannot clip below
//! `levels` bins, and uint8's 256 levels at 2048 bins would never clip below 1/8 of the
//! largest value seen.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
};

use candle_core::{Device, Result as CResult, Tensor};
use models::{
    dataset::{is_validation, load_image, parse_utkface_name, stable_hash},
    preprocess::preprocess,
    PreprocessSpec,
};
use rayon::prelude::*;

use super::{ActQuant, Method};
use crate::{
    net::{HydraNet, Tap},
    Error, Result,
};

const BINS: usize = 8192;
const PERCENTILE: f64 = 99.99;

/// Preprocessed calibration images.
pub struct CalibrationSet {
    /// `[count, 3, H, W]` as one buffer.
    pub inputs: Vec<f32>,
    /// Images decoded.
    pub count: usize,
    /// Files that could not be decoded, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// Image files found (after leaving out the validation split).
    pub candidates: usize,
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .map(|e| {
            matches!(
                e.to_ascii_lowercase().as_str(),
                "jpg" | "jpeg" | "png" | "bmp" | "webp" | "gif" | "tif" | "tiff"
            )
        })
        .unwrap_or(false)
}

/// Reads up to `count` images of `dir`, in a fixed pseudo-random order (UTKFace names sort
/// by age, so the first N would all be children). Files named like UTKFace images that
/// fall in the validation split of `val_fraction` are left out, so validation metrics
/// stay honest.
pub fn load_images(
    dir: &Path,
    spec: &PreprocessSpec,
    count: usize,
    val_fraction: Option<f64>,
) -> Result<CalibrationSet> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::Io {
        path: dir.into(),
        source: e,
    })?;
    let mut files: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_image(p))
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            let held_out = match val_fraction {
                Some(f) => parse_utkface_name(&name).is_ok() && is_validation(&name, f),
                None => false,
            };
            (!held_out).then(|| (stable_hash(name.as_bytes()), p))
        })
        .collect();
    files.sort();
    let candidates = files.len();
    // Decode a few more than asked for so a handful of broken files do not shrink the set.
    let want = count.min(candidates);
    let mut inputs = Vec::new();
    let mut skipped = Vec::new();
    let mut decoded = 0;
    for chunk in files.chunks(want.max(1)) {
        if decoded >= want {
            break;
        }
        let results: Vec<std::result::Result<Vec<f32>, String>> = chunk
            .par_iter()
            .map(|(_, p)| {
                load_image(p)
                    .map(|img| preprocess(&img, spec))
                    .map_err(|e| e.to_string())
            })
            .collect();
        for ((_, p), r) in chunk.iter().zip(results) {
            if decoded >= want {
                break;
            }
            match r {
                Ok(v) => {
                    inputs.extend(v);
                    decoded += 1;
                }
                Err(e) => skipped.push((p.clone(), e)),
            }
        }
    }
    if decoded == 0 {
        return Err(Error::Config(format!(
            "calibration folder {} has no usable images ({} image files{}, {} unreadable)",
            dir.display(),
            candidates,
            if val_fraction.is_some() {
                " outside the validation split"
            } else {
                ""
            },
            skipped.len()
        )));
    }
    Ok(CalibrationSet {
        inputs,
        count: decoded,
        skipped,
        candidates,
    })
}

#[derive(Debug, Clone)]
struct PointStats {
    min: f32,
    max: f32,
    absmax: f32,
    hist: Vec<u64>,
}

/// Records each point's range (first pass) or |x| histogram (second pass).
#[derive(Default)]
struct Observer {
    histogram: AtomicBool,
    points: Mutex<BTreeMap<String, PointStats>>,
}

impl Tap for Observer {
    fn at(&self, point: &str, x: Tensor) -> CResult<Tensor> {
        let v = x
            .flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1::<f32>()?;
        let Ok(mut points) = self.points.lock() else {
            candle_core::bail!("calibration observer poisoned");
        };
        let s = points.entry(point.to_string()).or_insert(PointStats {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            absmax: 0.0,
            hist: vec![0; BINS],
        });
        if self.histogram.load(Ordering::Relaxed) {
            let width = s.absmax / BINS as f32;
            if width > 0.0 {
                for a in v.iter().map(|x| x.abs()) {
                    let b = ((a / width) as usize).min(BINS - 1);
                    s.hist[b] += 1;
                }
            } else {
                s.hist[0] += v.len() as u64;
            }
        } else {
            for &a in &v {
                if a.is_finite() {
                    s.min = s.min.min(a);
                    s.max = s.max.max(a);
                    s.absmax = s.absmax.max(a.abs());
                }
            }
        }
        Ok(x)
    }
}

/// Runs the calibration images through `net` (twice: ranges, then histograms) and
/// returns each activation point's uint8 grid.
pub fn calibrate(
    net: HydraNet,
    set: &CalibrationSet,
    spec: &PreprocessSpec,
    method: Method,
    batch: usize,
    device: &Device,
) -> Result<BTreeMap<String, ActQuant>> {
    let per = spec.input_len();
    let obs = Arc::new(Observer::default());
    let net = net.with_tap(obs.clone());
    for histogram in [false, true] {
        obs.histogram.store(histogram, Ordering::Relaxed);
        for chunk in set.inputs.chunks(per * batch.max(1)) {
            let n = chunk.len() / per;
            let x = Tensor::from_slice(chunk, spec.input_shape(n).to_vec(), device)?;
            net.forward_t(&x, false)?;
        }
    }
    let points = obs
        .points
        .lock()
        .map_err(|_| Error::Config("calibration observer poisoned".into()))?;
    Ok(points
        .iter()
        .map(|(name, s)| (name.clone(), choose(s, method)))
        .collect())
}

fn choose(s: &PointStats, method: Method) -> ActQuant {
    // A point that never saw a finite value.
    if s.min.partial_cmp(&s.max).is_none_or(|o| o.is_gt()) {
        return ActQuant::from_range(0.0, 0.0);
    }
    let signed = s.min < 0.0;
    let width = s.absmax / BINS as f32;
    let threshold = match method {
        Method::Minmax => return ActQuant::from_range(s.min, s.max),
        Method::Percentile => percentile_bin(&s.hist, PERCENTILE) as f32 * width,
        Method::Entropy => entropy_bin(&s.hist, if signed { 128 } else { 256 }) as f32 * width,
    };
    ActQuant::from_range(s.min.max(-threshold), s.max.min(threshold))
}

/// The upper edge (in bins) below which `pct` percent of the mass lies.
fn percentile_bin(hist: &[u64], pct: f64) -> usize {
    let total: u64 = hist.iter().sum();
    let target = total as f64 * pct / 100.0;
    let mut acc = 0u64;
    for (i, &h) in hist.iter().enumerate() {
        acc += h;
        if acc as f64 >= target {
            return i + 1;
        }
    }
    hist.len()
}

/// TensorRT's entropy calibration: the clipping edge (in bins) whose `levels`-level
/// quantization of the clipped histogram is closest (KL divergence) to it.
fn entropy_bin(hist: &[u64], levels: usize) -> usize {
    let n = hist.len();
    if n <= levels {
        return n;
    }
    let mut best = (f64::INFINITY, n);
    // Every 8th edge: the divergence changes slowly, and it bounds the search's cost.
    for edge in (levels..=n).step_by(8) {
        // Reference: the histogram clipped at `edge`, outliers folded into the last bin.
        let mut p: Vec<f64> = hist[..edge].iter().map(|&v| v as f64).collect();
        p[edge - 1] += hist[edge..].iter().sum::<u64>() as f64;
        // Candidate: `levels` merged bins, spread evenly over their non-empty source bins.
        let mut q = vec![0f64; edge];
        for j in 0..levels {
            let (a, b) = (j * edge / levels, (j + 1) * edge / levels);
            let src = &hist[a..b];
            let nonzero = src.iter().filter(|&&v| v > 0).count();
            if nonzero == 0 {
                continue;
            }
            let mass = src.iter().sum::<u64>() as f64 / nonzero as f64;
            for (k, &v) in src.iter().enumerate() {
                if v > 0 {
                    q[a + k] = mass;
                }
            }
        }
        let (ps, qs) = (p.iter().sum::<f64>(), q.iter().sum::<f64>());
        if ps == 0.0 || qs == 0.0 {
            continue;
        }
        let kl: f64 = p
            .iter()
            .zip(&q)
            .filter(|(&pv, _)| pv > 0.0)
            .map(|(&pv, &qv)| {
                let (pn, qn) = (pv / ps, (qv / qs).max(1e-12));
                pn * (pn / qn).ln()
            })
            .sum();
        if kl < best.0 {
            best = (kl, edge);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(values: &[f32]) -> PointStats {
        let absmax = values.iter().fold(0f32, |m, v| m.max(v.abs()));
        let mut hist = vec![0u64; BINS];
        for v in values {
            hist[((v.abs() / (absmax / BINS as f32)) as usize).min(BINS - 1)] += 1;
        }
        PointStats {
            min: values.iter().copied().fold(f32::INFINITY, f32::min),
            max: values.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            absmax,
            hist,
        }
    }

    #[test]
    fn clipping_methods_ignore_a_rare_outlier_minmax_keeps_it() {
        // 100k values in [0, 1) and one at 50.
        let mut v: Vec<f32> = (0..100_000).map(|i| (i % 1000) as f32 / 1000.0).collect();
        v.push(50.0);
        let s = stats(&v);
        let mm = choose(&s, Method::Minmax);
        assert!((mm.scale - 50.0 / 255.0).abs() < 1e-5);
        for m in [Method::Percentile, Method::Entropy] {
            let q = choose(&s, m);
            let top = q.dequantize(255);
            assert!((0.9..=3.0).contains(&top), "{m}: range top {top}");
            assert_eq!(
                q.zero_point, 0,
                "{m}: non-negative data keeps zero at code 0"
            );
        }
    }

    #[test]
    fn signed_points_keep_both_sides() {
        let v: Vec<f32> = (0..20_000)
            .map(|i| ((i as f32) * 0.01).sin() * 3.0)
            .collect();
        let q = choose(&stats(&v), Method::Entropy);
        assert!(q.dequantize(0) < -1.0 && q.dequantize(255) > 1.0, "{q:?}");
        assert!((100..156).contains(&q.zero_point), "{q:?}");
    }

    #[test]
    fn a_folder_without_images_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("hydranet-calib-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("notes.txt"), "not an image").unwrap();
        std::fs::write(dir.join("broken.jpg"), "not a jpeg either").unwrap();
        let e = load_images(&dir, &PreprocessSpec::new(16), 8, None)
            .err()
            .expect("no usable images");
        let msg = e.to_string();
        assert!(
            msg.contains(&dir.display().to_string()) && msg.contains("1 unreadable"),
            "{msg}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
