//! Faces in a frame, each cut the way the HydraNet was trained: the detector finds them,
//! [`models::crop::CropRule`] turns each upright with UTKFace's margins, and the crops
//! go through the network as one batch ([`Engine::predict_inputs`]).
use std::path::{Path, PathBuf};

use models::{
    crop::{Crop, CropRule},
    detect::{DetectConfig, Face},
    preprocess::preprocess_crop_into,
    Prediction,
};

use crate::{
    detect::{DetectBuffers, Detector},
    Engine, Error, Result,
};

/// Faces tracked at once at most; [`FaceOptions::cap`] may not exceed it.
pub const MAX_FACES: usize = 16;

/// The file name a release ships its detector under, beside the model.
pub const RELEASE_DETECTOR: &str = "face_detector.onnx";
/// The detector `scripts/fetch-detector.sh` installs (back-256: faces from about 20 px in
/// a 640-wide frame up to about 40 % of it).
pub const FETCHED_DETECTOR: &str = "models/blazeface/face_detection_back_256x256_barracuda.onnx";

/// How faces are found and cut.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceOptions {
    /// The detector's score threshold and NMS overlap.
    pub detect: DetectConfig,
    /// Detected box → network crop.
    pub crop: CropRule,
    /// Faces per frame run through the network (best first); the rest are counted.
    pub cap: usize,
    /// Run the detector on every this-many frames of a stream; the frames between reuse
    /// the last faces found (the HydraNet still reads every frame). 1: every frame.
    pub detect_every: u32,
}

impl Default for FaceOptions {
    fn default() -> Self {
        Self {
            detect: DetectConfig::default(),
            crop: CropRule::UTKFACE,
            cap: 8,
            detect_every: 1,
        }
    }
}

impl FaceOptions {
    /// Checks the cap.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.cap == 0 || self.cap > MAX_FACES {
            return Err(format!("face cap {} is outside 1..={MAX_FACES}", self.cap));
        }
        if !(1..=30).contains(&self.detect_every) {
            return Err(format!(
                "detecting every {} frames is outside 1..=30",
                self.detect_every
            ));
        }
        Ok(())
    }
}

/// Where to look for the detector when none is named: `$HYDRANET_DETECTOR`, the release's
/// own (`<exe>/../model/face_detector.onnx`), then the fetch script's, from the current
/// folder and from the workspace this binary was built in. The first that exists wins.
pub fn detector_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("HYDRANET_DETECTOR") {
        out.push(PathBuf::from(p));
    }
    if let Some(release) = std::env::current_exe().ok().and_then(|e| {
        e.parent()?
            .parent()
            .map(|d| d.join("model").join(RELEASE_DETECTOR))
    }) {
        out.push(release);
    }
    out.push(PathBuf::from(FETCHED_DETECTOR));
    out.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(FETCHED_DETECTOR),
    );
    out
}

/// The detector to use: `named` if given, else the first of [`detector_candidates`].
pub fn find_detector(named: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = named {
        return Ok(p.to_path_buf());
    }
    let candidates = detector_candidates();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| Error::NoDetector {
            looked: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// One frame's faces: the ones the network will see (best first, at most the cap), their
/// crops, and how many more were found.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// Faces kept, best first.
    pub faces: Vec<Face>,
    /// Each kept face's crop, in frame pixels.
    pub crops: Vec<Crop>,
    /// Faces found beyond the cap.
    pub over_cap: usize,
    /// The frame's width and height.
    pub size: (u32, u32),
}

/// The detector with its options and reused buffers.
pub struct FaceFinder {
    detector: Detector,
    options: FaceOptions,
    buffers: DetectBuffers,
    warp: Vec<u8>,
}

impl FaceFinder {
    /// Loads the detector at `path`.
    pub fn load(path: &Path, options: FaceOptions) -> Result<Self> {
        options.validate().map_err(Error::Config)?;
        Ok(Self {
            detector: Detector::load(path, options.detect)?,
            options,
            buffers: DetectBuffers::default(),
            warp: Vec::new(),
        })
    }

    /// The detector.
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// The options.
    pub fn options(&self) -> &FaceOptions {
        &self.options
    }

    /// Finds the faces of an RGB8 frame and their crops for a network whose input has
    /// `aspect` (width / height).
    pub fn find(&mut self, rgb: &[u8], width: u32, height: u32, aspect: f32) -> Result<Found> {
        let mut faces = self
            .detector
            .detect(rgb, width, height, &mut self.buffers)?;
        let over_cap = faces.len().saturating_sub(self.options.cap);
        faces.truncate(self.options.cap);
        let crops = faces
            .iter()
            .map(|f| self.options.crop.crop(f, aspect))
            .collect();
        Ok(Found {
            faces,
            crops,
            over_cap,
            size: (width, height),
        })
    }

    /// Preprocesses `crops` of the frame end to end into `input` (resized to fit) with
    /// `engine`'s contract, the network input of [`Engine::predict_inputs`].
    pub fn prepare(
        &mut self,
        engine: &Engine,
        rgb: &[u8],
        width: u32,
        height: u32,
        crops: &[Crop],
        input: &mut Vec<f32>,
    ) -> Result<()> {
        let spec = &engine.contract().preprocess;
        let len = spec.input_len();
        input.resize(crops.len() * len, 0.0);
        for (crop, slot) in crops.iter().zip(input.chunks_mut(len)) {
            preprocess_crop_into(rgb, width, height, crop, spec, &mut self.warp, slot)?;
        }
        Ok(())
    }

    /// Finds the faces of a frame and predicts each: [`FaceFinder::find`],
    /// [`FaceFinder::prepare`] and one batched run.
    pub fn predict(
        &mut self,
        engine: &Engine,
        rgb: &[u8],
        width: u32,
        height: u32,
    ) -> Result<(Found, Vec<Prediction>)> {
        let spec = &engine.contract().preprocess;
        let found = self.find(rgb, width, height, spec.width as f32 / spec.height as f32)?;
        let mut input = Vec::new();
        self.prepare(engine, rgb, width, height, &found.crops, &mut input)?;
        let preds = engine.predict_inputs(&input, found.faces.len(), &mut Vec::new())?;
        Ok((found, preds))
    }
}
