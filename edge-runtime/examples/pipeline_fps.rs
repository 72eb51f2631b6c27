//! The whole pipeline's speed with the face detector: capture → detect → the HydraNet
//! batch → tracks → a sink, on a 640x480 frame with 0, 1, 2 and 4 faces (shared UTKFace
//! faces pasted on a generated background), held still by a `dir:` source, which decodes
//! it once and copies it per frame as a camera's driver hands over a buffer. Run it on
//! one core to read "FPS on one core":
//!
//!   taskset -c 0 cargo run --release -p edge-runtime --example pipeline_fps -- \
//!       --model models/utkface/hydranet-utkface-int8.onnx
use std::{ops::ControlFlow, path::PathBuf, sync::atomic::AtomicBool};

use anyhow::{Context, Result};
use clap::Parser;
use edge_runtime::{
    faces::find_detector,
    pipeline::{self, Processed, Sink, Status},
    source::{SourceOptions, SourceSpec},
    Engine, LoadOptions,
};
use hydranet_fixture::{scenes, utkface_dir, SHARED_FACES};

#[derive(Parser)]
struct Args {
    /// HydraNet ONNX file.
    #[arg(long)]
    model: PathBuf,
    /// BlazeFace file (default: the installed one).
    #[arg(long)]
    detector: Option<PathBuf>,
    /// Frames processed per face count.
    #[arg(long, default_value_t = 300)]
    frames: u64,
    /// Run the detector on every Nth frame.
    #[arg(long, default_value_t = 1)]
    detect_every: u32,
}

struct Count(usize);

impl Sink for Count {
    fn frame(&mut self, p: &Processed<'_>) -> ControlFlow<()> {
        self.0 += p.faces.len();
        ControlFlow::Continue(())
    }
}

fn main() -> Result<()> {
    let a = Args::parse();
    let detector = find_detector(a.detector.as_deref())?;
    let engine = Engine::load_for_faces(&a.model, 8, LoadOptions::default())
        .with_context(|| format!("loading {}", a.model.display()))?;
    let spots = [
        (170.0, 150.0),
        (470.0, 150.0),
        (170.0, 350.0),
        (470.0, 350.0),
    ];
    for k in [0usize, 1, 2, 4] {
        let dir = tempfile::tempdir()?;
        for f in 0..1 {
            let mut frame = scenes::background(&mut scenes::rng(40), 640, 480);
            for (i, (cx, cy)) in spots.iter().take(k).enumerate() {
                let face = image::open(utkface_dir().join(SHARED_FACES[i]))?.to_rgb8();
                let at = scenes::Pasted {
                    cx: cx + 2.0 * f as f32,
                    cy: *cy,
                    side: 180.0,
                    angle: 0.0,
                };
                scenes::paste(&mut frame, &face, at);
            }
            frame.save(dir.path().join(format!("{f}.png")))?;
        }
        let config = pipeline::Config {
            detector: Some(detector.clone()),
            faces: edge_runtime::faces::FaceOptions {
                detect_every: a.detect_every,
                ..Default::default()
            },
            max_frames: Some(a.frames),
            ..pipeline::Config::default()
        };
        let opts = SourceOptions {
            fps: 0.0,
            hold: 3600.0,
            ..SourceOptions::default()
        };
        let spec = SourceSpec::Dir(dir.path().into());
        let (status, stop) = (Status::default(), AtomicBool::new(false));
        let mut sink = Count(0);
        let r = pipeline::run(
            || spec.open(&opts),
            &engine,
            &config,
            &status,
            &stop,
            &mut sink,
        )?;
        let s = r.stages;
        println!(
            "{}",
            serde_json::json!({
                "faces_in_frame": k, "detect_every": a.detect_every, "faces_per_frame_found": sink.0 as f64 / r.processed.max(1) as f64,
                "fps": r.fps, "processed": r.processed, "dropped": r.dropped,
                "ms": {"capture": s.capture_ms, "detect": s.detect_ms, "preprocess": s.preprocess_ms,
                       "inference": s.inference_ms, "output": s.output_ms},
                "model": a.model.display().to_string(), "detector": detector.display().to_string(),
            })
        );
    }
    Ok(())
}
