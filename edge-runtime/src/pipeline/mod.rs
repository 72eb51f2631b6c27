//! Capture thread → inference → output: `capture` fills frames, `step` runs one frame
//! through the network, and [`run`] wires them with the queues and reports.
//!
//! The capture thread owns the source and never waits for inference: finished frames go
//! through a fixed-capacity lock-free queue (`heapless::spsc::Queue`), and empty buffers come
//! back through a second one, so after start-up no frame allocates. When inference is
//! slower than the camera the consumer takes the newest frame and recycles the older ones
//! (counted as dropped); when every buffer is in flight the capture thread overwrites its
//! own frame (also counted). A source that fails with a retryable error (camera unplugged,
//! busy, EIO) is reopened with exponential backoff while the process keeps running.
use std::{
    ops::ControlFlow,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use heapless::spsc::Queue;
use models::{smooth::SmoothConfig, track::TrackConfig, GuideBox, Region};
use serde::Serialize;

mod capture;
mod step;

use capture::Capture;
pub use step::FaceAnswer;
use step::FrameStep;

use crate::{
    faces::FaceOptions,
    source::{Frame, FrameSource, SourceError},
    Engine,
};

/// Frames that may wait for inference (the queue holds one less than its size).
const READY_SLOTS: usize = 4;
/// Buffers in circulation besides the one being captured into.
const SPARE_FRAMES: usize = READY_SLOTS + 1;
const FREE_SLOTS: usize = SPARE_FRAMES + 2;

/// How the pipeline runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The region of each frame the network sees when there is no detector.
    pub guide: GuideBox,
    /// The face detector: with one, the network sees every face it finds (an engine
    /// loaded with [`Engine::load_for_faces`] runs them as one batch).
    pub detector: Option<PathBuf>,
    /// How faces are found and cut (with a detector).
    pub faces: FaceOptions,
    /// How faces are followed from frame to frame (with a detector).
    pub tracking: TrackConfig,
    /// Temporal smoothing and the steady rule.
    pub smoothing: SmoothConfig,
    /// Stop after this many processed frames.
    pub max_frames: Option<u64>,
    /// First wait before reopening a lost source; doubles up to `retry_max`.
    pub retry_initial: Duration,
    /// Longest wait between reopen attempts.
    pub retry_max: Duration,
    /// Retry every source failure, not only the retryable ones (a kiosk never gives up:
    /// it shows "camera lost" and keeps trying); a source that ended still ends.
    pub keep_trying: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            guide: GuideBox::default(),
            detector: None,
            faces: FaceOptions::default(),
            tracking: TrackConfig::default(),
            smoothing: SmoothConfig::default(),
            max_frames: None,
            retry_initial: Duration::from_millis(250),
            retry_max: Duration::from_secs(5),
            keep_trying: false,
        }
    }
}

/// Live counters, shared with whoever reports health (the kiosk, the CLI).
#[derive(Debug, Default)]
pub struct Status {
    /// Frames the source delivered.
    pub captured: AtomicU64,
    /// Frames captured but never run (inference was busy).
    pub dropped: AtomicU64,
    /// Frames run through the network.
    pub processed: AtomicU64,
    /// Whether the source is delivering.
    pub source_ok: AtomicBool,
    /// Times the source was reopened after a failure.
    pub reconnects: AtomicU64,
    /// The last source error, for health reports (written on errors only).
    pub last_error: Mutex<Option<String>>,
    /// The source's own description once open.
    pub source: Mutex<Option<String>>,
}

/// Time spent per stage on one frame.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StageTimes {
    /// Capture and conversion to RGB (in the capture thread).
    pub capture: Duration,
    /// The face detector, its decoding and the crops (zero without a detector).
    pub detect: Duration,
    /// Guide-box or face crops, resize and normalisation.
    pub preprocess: Duration,
    /// The network.
    pub inference: Duration,
    /// Decoding, tracking, smoothing and the sink.
    pub output: Duration,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 1e2
}

impl StageTimes {
    fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "capture": ms(self.capture),
            "detect": ms(self.detect),
            "preprocess": ms(self.preprocess),
            "inference": ms(self.inference),
            "output": ms(self.output),
        })
    }
}

/// What the sink sees for each processed frame.
pub struct Processed<'a> {
    /// The frame (RGB8), valid during the call only.
    pub frame: &'a Frame,
    /// The guide box in this frame (without a detector).
    pub region: Option<Region>,
    /// One answer per face, best first: every tracked face with a detector (none when the
    /// frame has no face), the guide box's one without.
    pub faces: &'a [FaceAnswer],
    /// Faces found beyond the cap (or beyond the tracks there is room for).
    pub over_cap: usize,
    /// Stage times (`output` covers decoding, tracking and smoothing, not the sink).
    pub times: StageTimes,
}

impl Processed<'_> {
    /// Whether a detector found the faces (otherwise the guide box was read).
    pub fn detecting(&self) -> bool {
        self.region.is_none()
    }

    /// The JSON of this frame, which the kiosk streams. Without a detector: the smoothed
    /// answer per head, the frame's own answer, the guide box. With one: `faces`, one
    /// object per face as [`Processed::face_json`] gives, and `over_cap`. Both carry the
    /// frame number, stage times in ms and the source's label if it has one.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = match (self.region, self.faces.first()) {
            (Some(region), Some(f)) => {
                let mut v = self.face_json(f);
                v["box"] = serde_json::json!(region);
                if let Some(o) = v.as_object_mut() {
                    o.remove("track");
                }
                v
            }
            _ => serde_json::json!({
                "faces": self.faces.iter().map(|f| self.face_json(f)).collect::<Vec<_>>(),
                "over_cap": self.over_cap,
                "size": [self.frame.width, self.frame.height],
            }),
        };
        v["frame"] = serde_json::json!(self.frame.seq);
        v["ms"] = self.times.to_json();
        if let Some(label) = &self.frame.label {
            v["label"] = serde_json::json!(label);
        }
        v
    }

    /// One face's JSON: its track, box `[x, y, w, h]`, detector score and keypoints (in
    /// frame pixels), whether its answer is steady, the smoothing window, the smoothed
    /// answer per head and this frame's own answer. `run` prints one line per face.
    pub fn face_json(&self, f: &FaceAnswer) -> serde_json::Value {
        let mut heads = serde_json::Map::new();
        for (name, h) in &f.smoothed.heads {
            heads.insert(name.clone(), serde_json::json!(h));
        }
        let round = |x: f32| (f64::from(x) * 10.0).round() / 10.0;
        let mut v = serde_json::json!({
            "track": f.track,
            "box": [round(f.bbox.x), round(f.bbox.y), round(f.bbox.w), round(f.bbox.h)],
            "steady": f.smoothed.steady,
            "window": f.smoothed.frames,
            "smoothed": heads,
            "raw": f.raw,
        });
        if let Some(face) = &f.face {
            v["score"] = serde_json::json!((f64::from(face.score) * 1e3).round() / 1e3);
            v["keypoints"] = serde_json::json!(face
                .keypoints
                .iter()
                .map(|k| [round(k[0]), round(k[1])])
                .collect::<Vec<_>>());
        }
        v
    }
}

/// Where results go.
pub trait Sink {
    /// Called for every processed frame; `Break` stops the pipeline.
    fn frame(&mut self, processed: &Processed<'_>) -> ControlFlow<()>;
    /// Called at least every 100 ms whatever the source does (liveness, watchdogs).
    fn tick(&mut self, _status: &Status) {}
}

/// Per-stage totals.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StageTotals {
    /// Mean capture/convert time, ms.
    pub capture_ms: f64,
    /// Mean detector time, ms.
    pub detect_ms: f64,
    /// Mean preprocess time, ms.
    pub preprocess_ms: f64,
    /// Mean inference time, ms.
    pub inference_ms: f64,
    /// Mean output time, ms.
    pub output_ms: f64,
}

/// How a run went.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Source description (the last one opened).
    pub source: Option<String>,
    /// Frames delivered by the source.
    pub captured: u64,
    /// Frames run.
    pub processed: u64,
    /// Frames dropped because inference was busy.
    pub dropped: u64,
    /// Reopens after failures.
    pub reconnects: u64,
    /// Wall time from the first processed frame to the end, seconds.
    pub seconds: f64,
    /// Processed frames per second over that time.
    pub fps: f64,
    /// Mean per-stage times over processed frames.
    pub stages: StageTotals,
    /// Why it stopped.
    pub ended: String,
}

/// Runs the pipeline until the source ends, `stop` is set, the sink breaks or
/// `max_frames` are processed. `open` is called for the first open and every reopen.
/// An unrecoverable source error is returned after the frames already captured are done.
pub fn run<O, S>(
    open: O,
    engine: &Engine,
    config: &Config,
    status: &Status,
    stop: &AtomicBool,
    sink: &mut S,
) -> Result<Report, PipelineError>
where
    O: FnMut() -> Result<Box<dyn FrameSource>, SourceError> + Send,
    S: Sink + ?Sized,
{
    if engine.batch() != 1 {
        return Err(PipelineError::Config(format!(
            "the engine runs batches of {}; frames go one at a time",
            engine.batch()
        )));
    }
    let mut step = FrameStep::new(engine, config)?;
    let mut ready: Queue<Frame, READY_SLOTS> = Queue::new();
    let mut free: Queue<Frame, FREE_SLOTS> = Queue::new();
    let (ready_tx, mut ready_rx) = ready.split();
    let (mut free_tx, free_rx) = free.split();
    for _ in 0..SPARE_FRAMES {
        // Cannot fail: the free queue holds every buffer there is.
        let _ = free_tx.enqueue(Frame::default());
    }
    let capture_done = AtomicBool::new(false);
    let fatal: Mutex<Option<SourceError>> = Mutex::new(None);

    thread::scope(|scope| {
        let capture = Capture {
            open,
            config,
            status,
            stop,
            ready: ready_tx,
            free: free_rx,
            consumer: thread::current(),
            fatal: &fatal,
            done: &capture_done,
        };
        let capture = scope.spawn(move || capture.run());

        let mut totals = [Duration::ZERO; 5];
        let mut first: Option<Instant> = None;
        let mut processed = 0u64;
        let mut last_tick = Instant::now();
        let mut reconnects_seen = 0;
        let mut ended = "source ended".to_string();
        let mut error = None;
        loop {
            if last_tick.elapsed() >= Duration::from_millis(100) {
                sink.tick(status);
                last_tick = Instant::now();
            }
            if stop.load(Relaxed) {
                ended = "stopped".into();
                break;
            }
            let mut latest: Option<Frame> = None;
            while let Some(f) = ready_rx.dequeue() {
                if let Some(old) = latest.replace(f) {
                    status.dropped.fetch_add(1, Relaxed);
                    let _ = free_tx.enqueue(old);
                }
            }
            let Some(frame) = latest else {
                if capture_done.load(Relaxed) && !ready_rx.ready() {
                    break;
                }
                thread::park_timeout(Duration::from_millis(50));
                continue;
            };
            let reconnects = status.reconnects.load(Relaxed);
            if reconnects != reconnects_seen {
                // A reopened camera may point elsewhere: old frames say nothing now.
                reconnects_seen = reconnects;
                step.reset();
            }
            let flow = step.run(&frame).map(|answer| {
                let t = answer.times;
                for (total, d) in totals.iter_mut().zip([
                    t.capture,
                    t.detect,
                    t.preprocess,
                    t.inference,
                    t.output,
                ]) {
                    *total += d;
                }
                sink.frame(&Processed {
                    frame: &frame,
                    region: answer.region,
                    faces: &answer.faces,
                    over_cap: answer.over_cap,
                    times: t,
                })
            });
            let _ = free_tx.enqueue(frame);
            capture.thread().unpark();
            first.get_or_insert_with(Instant::now);
            processed += 1;
            status.processed.fetch_add(1, Relaxed);
            match flow {
                Ok(ControlFlow::Continue(())) => {}
                Ok(ControlFlow::Break(())) => {
                    ended = "the output asked to stop".into();
                    break;
                }
                Err(e) => {
                    error = Some(e);
                    ended = "error".into();
                    break;
                }
            }
            if config.max_frames.is_some_and(|m| processed >= m) {
                ended = format!("{processed} frames processed");
                break;
            }
        }
        // The capture thread checks `stop` between frames; a camera read returns within
        // its timeout.
        stop.store(true, Relaxed);
        let _ = capture.join();
        if let Some(e) = error {
            return Err(e);
        }
        if let Some(e) = fatal.lock().ok().and_then(|mut f| f.take()) {
            if !matches!(e, SourceError::Ended { .. }) {
                return Err(PipelineError::Source(e));
            }
        }
        let seconds = first.map(|t| t.elapsed().as_secs_f64()).unwrap_or(0.0);
        let mean = |d: Duration| {
            if processed == 0 {
                0.0
            } else {
                d.as_secs_f64() * 1e3 / processed as f64
            }
        };
        Ok(Report {
            source: status.source.lock().ok().and_then(|s| s.clone()),
            captured: status.captured.load(Relaxed),
            processed,
            dropped: status.dropped.load(Relaxed),
            reconnects: status.reconnects.load(Relaxed),
            seconds,
            fps: if seconds > 0.0 {
                processed.saturating_sub(1) as f64 / seconds
            } else {
                0.0
            },
            stages: StageTotals {
                capture_ms: mean(totals[0]),
                detect_ms: mean(totals[1]),
                preprocess_ms: mean(totals[2]),
                inference_ms: mean(totals[3]),
                output_ms: mean(totals[4]),
            },
            ended,
        })
    })
}

/// Why the pipeline stopped early.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The source cannot work (and is not worth retrying).
    #[error(transparent)]
    Source(SourceError),
    /// The model failed on a frame.
    #[error(transparent)]
    Engine(crate::Error),
    /// A frame could not be prepared, or the network's answer not decoded or smoothed.
    #[error("frame: {0}")]
    Frame(#[from] models::Error),
    /// The configuration is invalid.
    #[error("pipeline configuration: {0}")]
    Config(String),
}
