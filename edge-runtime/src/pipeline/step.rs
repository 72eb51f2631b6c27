//! One frame through the network: the region the network sees, preprocessing into a
//! reused buffer, inference, decoding and smoothing. Capture knows nothing of this, so a
//! detector and per-face tracks can replace the fixed region here alone.
use std::time::Instant;

use models::{
    decode::decode,
    preprocess::preprocess_region_into,
    smooth::{Smoothed, Smoother},
    Contract, Prediction, Region,
};

use super::{Config, PipelineError, StageTimes};
use crate::{source::Frame, Engine};

/// What one frame gave.
pub(super) struct Answer {
    /// The part of the frame the network saw.
    pub region: Region,
    /// This frame's own answer.
    pub raw: Prediction,
    /// The answer smoothed over recent frames.
    pub smoothed: Smoothed,
    /// Stage times (`output` covers decoding and smoothing).
    pub times: StageTimes,
}

/// The per-frame inference state: the engine, the smoother and the reused buffers.
pub(super) struct FrameStep<'a> {
    engine: &'a Engine,
    contract: &'a Contract,
    config: &'a Config,
    smoother: Smoother,
    input: Vec<f32>,
    canvas: Vec<u8>,
}

impl<'a> FrameStep<'a> {
    pub fn new(engine: &'a Engine, config: &'a Config) -> Result<Self, PipelineError> {
        let contract = engine.contract();
        let smoother = Smoother::new(&contract.heads, config.smoothing)
            .map_err(|e| PipelineError::Config(e.to_string()))?;
        Ok(Self {
            engine,
            contract,
            config,
            smoother,
            input: vec![0f32; contract.preprocess.input_len()],
            canvas: Vec::new(),
        })
    }

    /// Forgets the recent frames (a reopened camera may point elsewhere).
    pub fn reset(&mut self) {
        self.smoother.reset();
    }

    /// Runs `frame` through the network.
    pub fn run(&mut self, frame: &Frame) -> Result<Answer, PipelineError> {
        let spec = &self.contract.preprocess;
        let t0 = Instant::now();
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
        let smoothed = self.smoother.push(&prediction)?;
        Ok(Answer {
            region,
            raw: prediction,
            smoothed,
            times: StageTimes {
                capture: frame.capture_time,
                preprocess: t1 - t0,
                inference: t2 - t1,
                output: t2.elapsed(),
            },
        })
    }
}
