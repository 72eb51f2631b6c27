//! `edge-runtime run`: camera (or folder, or pattern) → HydraNet → one JSON line per steady
//! prediction on stdout; progress and the final report on stderr.
use std::{
    io::Write,
    ops::ControlFlow,
    path::PathBuf,
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use edge_runtime::{
    pipeline::{self, Processed, Sink, Status},
    source::{CameraFormat, SourceOptions, SourceSpec},
};
use models::{smooth::SmoothConfig, GuideBox};
use serde_json::json;

/// Arguments of `run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// ONNX model file.
    #[arg(long)]
    pub model: PathBuf,
    /// Frame source: v4l:/dev/videoN, dir:PATH (stills), seq:PATH (image sequence) or pattern.
    #[arg(long, default_value = "v4l:/dev/video0")]
    pub source: SourceSpec,
    #[command(flatten)]
    pub capture: CaptureArgs,
    #[command(flatten)]
    pub detect: super::DetectArgs,
    /// The guide box, read when no detector is used: centre x, centre y and height, as
    /// fractions of the frame.
    #[arg(long, default_value = "0.5,0.5,0.7")]
    pub guide_box: GuideBox,
    /// Frames averaged per answer (1..=32).
    #[arg(long, default_value_t = 8)]
    pub smooth_window: usize,
    /// Print every processed frame (and with a detector every face, and frames with no
    /// face), not only steady answers.
    #[arg(long)]
    pub all: bool,
    /// Stop after this many printed predictions.
    #[arg(long)]
    pub max_predictions: Option<u64>,
    /// Stop after this many processed frames.
    #[arg(long)]
    pub frames: Option<u64>,
    /// Log progress (FPS, drops, stage times) every this many seconds; 0 = never.
    #[arg(long, default_value_t = 10.0)]
    pub progress: f64,
    /// tract threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// Source options shared by `run` and the kiosk.
#[derive(clap::Args, Debug, Clone)]
pub struct CaptureArgs {
    /// Camera pixel format.
    #[arg(long, value_enum, default_value_t = CameraFormat::Auto)]
    pub camera_format: CameraFormat,
    /// Capture width (cameras, pattern).
    #[arg(long, default_value_t = 640)]
    pub width: u32,
    /// Capture height (cameras, pattern).
    #[arg(long, default_value_t = 480)]
    pub height: u32,
    /// Frames per second asked of the source; 0 = as fast as possible (pattern, folders).
    #[arg(long, default_value_t = 30.0)]
    pub fps: f32,
    /// Seconds each image of a dir: source is shown.
    #[arg(long, default_value_t = 2.0)]
    pub hold: f32,
    /// Stop after the last image of a dir:/seq: source instead of starting again.
    #[arg(long)]
    pub once: bool,
}

impl CaptureArgs {
    /// As source options.
    pub fn options(&self) -> SourceOptions {
        SourceOptions {
            width: self.width,
            height: self.height,
            fps: self.fps,
            format: self.camera_format,
            hold: self.hold,
            looped: !self.once,
        }
    }
}

/// Ctrl-C and SIGTERM (systemd's stop) set the flag; the pipeline finishes its frame.
pub fn stop_flag() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    ctrlc::set_handler(move || s.store(true, Relaxed)).context("installing the signal handler")?;
    Ok(stop)
}

struct Printer {
    all: bool,
    printed: u64,
    max: Option<u64>,
    out: std::io::StdoutLock<'static>,
    systemd: edge_runtime::systemd::Systemd,
    progress: Option<Duration>,
    last_progress: Instant,
    at_last: (u64, u64),
}

impl Sink for Printer {
    fn frame(&mut self, p: &Processed<'_>) -> ControlFlow<()> {
        let mut lines = Vec::new();
        if !p.detecting() {
            if self.all || p.faces.iter().any(|f| f.smoothed.steady) {
                lines.push(p.to_json());
            }
        } else {
            // One line per face track; with --all a frame with no face says so.
            for f in p.faces.iter().filter(|f| self.all || f.smoothed.steady) {
                let mut v = p.face_json(f);
                v["frame"] = json!(p.frame.seq);
                if let Some(label) = &p.frame.label {
                    v["label"] = json!(label);
                }
                lines.push(v);
            }
            if self.all && p.faces.is_empty() {
                lines.push(json!({"frame": p.frame.seq, "faces": 0, "over_cap": p.over_cap}));
            }
        }
        for line in lines {
            // A closed stdout (the reader went away) ends the run cleanly.
            if writeln!(self.out, "{line}").is_err() || self.out.flush().is_err() {
                return ControlFlow::Break(());
            }
            self.printed += 1;
            if self.max.is_some_and(|m| self.printed >= m) {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    fn tick(&mut self, status: &Status) {
        self.systemd.tick(status);
        if let Some(every) = self.progress {
            let dt = self.last_progress.elapsed();
            if dt >= every {
                let processed = status.processed.load(Relaxed);
                let dropped = status.dropped.load(Relaxed);
                tracing::info!(
                    "{:.1} fps, {} processed, {} dropped{}",
                    (processed - self.at_last.0) as f64 / dt.as_secs_f64(),
                    processed,
                    dropped,
                    if status.source_ok.load(Relaxed) {
                        String::new()
                    } else {
                        ", source lost — retrying".into()
                    }
                );
                self.at_last = (processed, dropped);
                self.last_progress = Instant::now();
            }
        }
    }
}

pub fn run(a: Args) -> Result<ExitCode> {
    super::set_threads(a.threads)?;
    let engine = a
        .detect
        .load_engine(&a.model)
        .with_context(|| format!("loading {}", a.model.display()))?;
    let stop = stop_flag()?;
    let config = pipeline::Config {
        guide: a.guide_box,
        detector: a.detect.detector()?,
        faces: a.detect.options()?,
        smoothing: SmoothConfig {
            window: a.smooth_window,
            ..SmoothConfig::default()
        },
        max_frames: a.frames,
        ..pipeline::Config::default()
    };
    let status = Status::default();
    let mut printer = Printer {
        all: a.all,
        printed: 0,
        max: a.max_predictions,
        out: std::io::stdout().lock(),
        systemd: edge_runtime::systemd::Systemd::new(),
        progress: (a.progress > 0.0).then(|| Duration::from_secs_f64(a.progress)),
        last_progress: Instant::now(),
        at_last: (0, 0),
    };
    let opts = a.capture.options();
    let spec = a.source.clone();
    let report = pipeline::run(
        || spec.open(&opts),
        &engine,
        &config,
        &status,
        &stop,
        &mut printer,
    )
    .with_context(|| format!("running {} on {}", a.model.display(), a.source))?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    eprintln!("{}", json!({ "summary": report }));
    if report.processed == 0 {
        eprintln!("error: no frame was processed from {}", a.source);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
