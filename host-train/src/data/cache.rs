//! Decoded images at the training size, as RGB8, in one contiguous buffer.
use std::{sync::atomic::AtomicUsize, time::Instant};

use models::{
    dataset::{load_image, Rejected, Sample},
    preprocess::resize_rgb,
    PreprocessSpec,
};
use rayon::prelude::*;

/// Every usable sample's pixels, decoded and resized once.
pub struct ImageCache {
    /// Width = height of the cached images.
    pub spec: PreprocessSpec,
    /// Samples whose image decoded, in input order.
    pub samples: Vec<Sample>,
    /// `samples.len() * height * width * 3` bytes, HWC per image.
    pub pixels: Vec<u8>,
    /// Samples whose image could not be read or decoded.
    pub skipped: Vec<Rejected>,
    /// Wall time of the build in seconds.
    pub build_seconds: f64,
}

impl ImageCache {
    /// Decodes and resizes `samples` in parallel (rayon). Images that fail are skipped and
    /// reported in `skipped`; `progress` is bumped once per image.
    pub fn build(
        samples: &[Sample],
        spec: &PreprocessSpec,
        progress: Option<&AtomicUsize>,
    ) -> Self {
        let t0 = Instant::now();
        let results: Vec<Result<Vec<u8>, String>> = samples
            .par_iter()
            .map(|s| {
                let r = load_image(&s.path)
                    .map(|img| resize_rgb(&img, spec).into_raw())
                    .map_err(|e| e.to_string());
                if let Some(p) = progress {
                    p.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                r
            })
            .collect();
        let per = spec.input_len();
        let mut pixels = Vec::with_capacity(per * samples.len());
        let mut kept = Vec::with_capacity(samples.len());
        let mut skipped = Vec::new();
        for (s, r) in samples.iter().zip(results) {
            match r {
                Ok(px) => {
                    pixels.extend_from_slice(&px);
                    kept.push(s.clone());
                }
                Err(reason) => skipped.push(Rejected {
                    path: s.path.clone(),
                    reason,
                }),
            }
        }
        Self {
            spec: spec.clone(),
            samples: kept,
            pixels,
            skipped,
            build_seconds: t0.elapsed().as_secs_f64(),
        }
    }

    /// Number of cached images.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The HWC pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let per = self.spec.input_len();
        &self.pixels[i * per..(i + 1) * per]
    }
}
