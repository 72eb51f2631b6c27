//! One frame through the network. Without a detector the network sees the guide box;
//! with one, every face found (up to the cap) is cut upright, all go through the network
//! as one batch, and each is smoothed on its own track. Capture knows nothing of this.
use std::time::Instant;

use models::{
    crop::Crop,
    decode::decode,
    detect::{BoxF, Face},
    preprocess::preprocess_region_into,
    smooth::{Smoothed, Smoother},
    track::Tracker,
    Contract, Prediction, Region,
};

use super::{Config, PipelineError, StageTimes};
use crate::{
    faces::{FaceFinder, Found, MAX_FACES},
    source::Frame,
    Engine,
};

/// One face's answer in a frame.
#[derive(Debug, Clone)]
pub struct FaceAnswer {
    /// The face's track: stable while the face stays in view (0: the guide box).
    pub track: u64,
    /// The detector's box in frame pixels (the guide box without a detector).
    pub bbox: BoxF,
    /// The detection (none for the guide box).
    pub face: Option<Face>,
    /// The part of the frame the network saw, when a detector cut it.
    pub crop: Option<Crop>,
    /// This frame's own answer.
    pub raw: Prediction,
    /// The answer smoothed over this track's recent frames.
    pub smoothed: Smoothed,
}

/// What one frame gave.
pub(super) struct Answer {
    /// The guide box (without a detector).
    pub region: Option<Region>,
    /// One answer per face (the guide box's one without a detector), best first.
    pub faces: Vec<FaceAnswer>,
    /// Faces found beyond the cap.
    pub over_cap: usize,
    /// Stage times (`output` covers decoding, tracking and smoothing).
    pub times: StageTimes,
}

/// How the frame is read: a fixed region, or faces found and tracked.
enum Mode<'a> {
    Guide(Smoother),
    Faces {
        finder: Box<FaceFinder>,
        tracker: Box<Tracker<Smoother, MAX_FACES>>,
        fresh: Smoother,
        padded: Vec<f32>,
        engine: &'a Engine,
        /// The last detection, and frames since it ran.
        last: Option<(Found, u32)>,
    },
}

/// The per-frame inference state: the engine, the smoothers and the reused buffers.
pub(super) struct FrameStep<'a> {
    engine: &'a Engine,
    contract: &'a Contract,
    config: &'a Config,
    mode: Mode<'a>,
    input: Vec<f32>,
    canvas: Vec<u8>,
}

impl<'a> FrameStep<'a> {
    pub fn new(engine: &'a Engine, config: &'a Config) -> Result<Self, PipelineError> {
        let contract = engine.contract();
        let smoother = Smoother::new(&contract.heads, config.smoothing)
            .map_err(|e| PipelineError::Config(e.to_string()))?;
        let mode = match &config.detector {
            None => Mode::Guide(smoother),
            Some(path) => Mode::Faces {
                finder: Box::new(
                    FaceFinder::load(path, config.faces).map_err(PipelineError::Engine)?,
                ),
                tracker: Box::new(Tracker::new(config.tracking)),
                fresh: smoother,
                padded: Vec::new(),
                engine,
                last: None,
            },
        };
        Ok(Self {
            engine,
            contract,
            config,
            mode,
            input: vec![0f32; contract.preprocess.input_len()],
            canvas: Vec::new(),
        })
    }

    /// Forgets the recent frames (a reopened camera may point elsewhere).
    pub fn reset(&mut self) {
        match &mut self.mode {
            Mode::Guide(s) => s.reset(),
            Mode::Faces { tracker, last, .. } => {
                tracker.clear();
                *last = None;
            }
        }
    }

    /// Runs `frame` through the network.
    pub fn run(&mut self, frame: &Frame) -> Result<Answer, PipelineError> {
        let spec = &self.contract.preprocess;
        let t0 = Instant::now();
        match &mut self.mode {
            Mode::Guide(smoother) => {
                let region = self.config.guide.region(frame.width, frame.height, spec);
                preprocess_region_into(
                    &frame.rgb,
                    frame.width,
                    frame.height,
                    region,
                    spec,
                    &mut self.canvas,
                    &mut self.input,
                )?;
                let t1 = Instant::now();
                let raw = self
                    .engine
                    .run_raw(&self.input)
                    .map_err(PipelineError::Engine)?;
                let t2 = Instant::now();
                let per: Vec<&[f32]> = raw.iter().map(|h| h[0].as_slice()).collect();
                let prediction = decode(&self.contract.heads, &per)?;
                let smoothed = smoother.push(&prediction)?;
                Ok(Answer {
                    region: Some(region),
                    faces: vec![FaceAnswer {
                        track: 0,
                        bbox: BoxF {
                            x: region.x as f32,
                            y: region.y as f32,
                            w: region.width as f32,
                            h: region.height as f32,
                        },
                        face: None,
                        crop: None,
                        raw: prediction,
                        smoothed,
                    }],
                    over_cap: 0,
                    times: StageTimes {
                        capture: frame.capture_time,
                        detect: Default::default(),
                        preprocess: t1 - t0,
                        inference: t2 - t1,
                        output: t2.elapsed(),
                    },
                })
            }
            Mode::Faces {
                finder,
                tracker,
                fresh,
                padded,
                engine,
                last,
            } => {
                let aspect = spec.width as f32 / spec.height as f32;
                let every = finder.options().detect_every;
                let found = match last.take() {
                    // Between detections the faces are where they were last seen.
                    Some((found, age)) if age + 1 < every && found_fits(&found, frame) => {
                        *last = Some((found.clone(), age + 1));
                        found
                    }
                    _ => {
                        let found = finder
                            .find(&frame.rgb, frame.width, frame.height, aspect)
                            .map_err(PipelineError::Engine)?;
                        *last = Some((found.clone(), 0));
                        found
                    }
                };
                let t1 = Instant::now();
                finder
                    .prepare(
                        engine,
                        &frame.rgb,
                        frame.width,
                        frame.height,
                        &found.crops,
                        &mut self.input,
                    )
                    .map_err(PipelineError::Engine)?;
                let t2 = Instant::now();
                let preds = engine
                    .predict_inputs(&self.input, found.faces.len(), padded)
                    .map_err(PipelineError::Engine)?;
                let t3 = Instant::now();
                let boxes: Vec<BoxF> = found.faces.iter().map(|f| f.bbox).collect();
                let slots = tracker.update(&boxes, || fresh.clone());
                let mut faces = Vec::with_capacity(preds.len());
                let mut untracked = 0;
                for (((face, crop), raw), slot) in
                    found.faces.iter().zip(&found.crops).zip(preds).zip(slots)
                {
                    // No free track (more faces than tracks): counted with the over-cap ones.
                    let Some(track) = slot.and_then(|i| tracker.track_mut(i)) else {
                        untracked += 1;
                        continue;
                    };
                    let smoothed = track.state.push(&raw)?;
                    faces.push(FaceAnswer {
                        track: track.id,
                        bbox: face.bbox,
                        face: Some(*face),
                        crop: Some(*crop),
                        raw,
                        smoothed,
                    });
                }
                Ok(Answer {
                    region: None,
                    faces,
                    over_cap: found.over_cap + untracked,
                    times: StageTimes {
                        capture: frame.capture_time,
                        detect: t1 - t0,
                        preprocess: t2 - t1,
                        inference: t3 - t2,
                        output: t3.elapsed(),
                    },
                })
            }
        }
    }
}

/// Whether a detection still applies to `frame` (a reopened camera may change its size).
fn found_fits(found: &Found, frame: &Frame) -> bool {
    found.size == (frame.width, frame.height)
}
