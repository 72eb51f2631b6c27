//! One file per subcommand: its arguments and its handler.
pub mod bench;
pub mod eval;
pub mod info;
pub mod kernels;
#[cfg(feature = "kiosk")]
pub mod kiosk;
pub mod predict;
pub mod run;
pub mod sources;

/// Sets tract's executor to `n` threads (1 = tract's default, single-threaded).
pub fn set_threads(n: usize) -> anyhow::Result<()> {
    use tract_linalg::multithread::{set_default_executor, Executor};
    anyhow::ensure!(n >= 1, "--threads must be at least 1");
    set_default_executor(if n == 1 {
        Executor::SingleThread
    } else {
        Executor::multithread(n)
    });
    Ok(())
}

/// `--int8-kernel`, for the commands that measure (`bench`, `eval`).
#[derive(clap::Args, Debug)]
pub struct Int8KernelArg {
    /// Who runs an int8 file's convolutions (for side-by-side measurements).
    #[arg(long, value_enum, default_value_t = edge_runtime::Int8Kernel::Edge)]
    int8_kernel: edge_runtime::Int8Kernel,
}

impl Int8KernelArg {
    pub fn kernel(&self) -> edge_runtime::Int8Kernel {
        self.int8_kernel
    }

    /// Loads `model` for batches of `batch` with this choice.
    pub fn load(
        &self,
        model: &std::path::Path,
        batch: usize,
    ) -> anyhow::Result<edge_runtime::Engine> {
        let options = edge_runtime::LoadOptions {
            int8_kernel: self.int8_kernel,
        };
        Ok(edge_runtime::Engine::load_with(model, batch, options)?)
    }
}

/// Face detection flags of `predict`, `run` and the kiosk.
#[derive(clap::Args, Debug, Clone)]
pub struct DetectArgs {
    /// Find the faces first (with the installed detector unless --detector names one):
    /// every face found goes through the network, each with its own box and answer.
    #[arg(long)]
    pub detect: bool,
    /// BlazeFace ONNX file (implies --detect). Default: the release's
    /// model/face_detector.onnx, $HYDRANET_DETECTOR, or the one
    /// scripts/fetch-detector.sh installed.
    #[arg(long)]
    pub detector: Option<std::path::PathBuf>,
    /// Faces per frame run through the network, best first; more are counted (1..=16).
    #[arg(long, default_value_t = 8)]
    pub max_faces: usize,
    /// Least detector score of a face (0..1).
    #[arg(long, default_value_t = models::detect::DetectConfig::default().min_score)]
    pub min_score: f32,
    /// Run the detector on every Nth frame of a stream (`run`, the kiosk); the frames
    /// between reuse its faces. 1 = every frame.
    #[arg(long, default_value_t = 1)]
    pub detect_every: u32,
}

impl DetectArgs {
    /// The detector to use, if detection is on.
    pub fn detector(&self) -> anyhow::Result<Option<std::path::PathBuf>> {
        if !self.detect && self.detector.is_none() {
            return Ok(None);
        }
        Ok(Some(edge_runtime::faces::find_detector(
            self.detector.as_deref(),
        )?))
    }

    /// The face options these flags say.
    pub fn options(&self) -> anyhow::Result<edge_runtime::faces::FaceOptions> {
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.min_score),
            "--min-score {} is outside 0..1",
            self.min_score
        );
        let o = edge_runtime::faces::FaceOptions {
            detect: models::detect::DetectConfig {
                min_score: self.min_score,
                ..Default::default()
            },
            cap: self.max_faces,
            detect_every: self.detect_every,
            ..Default::default()
        };
        o.validate().map_err(anyhow::Error::msg)?;
        Ok(o)
    }

    /// Loads `model` for this mode: batches up to the face cap with a detector.
    pub fn load_engine(&self, model: &std::path::Path) -> anyhow::Result<edge_runtime::Engine> {
        Ok(if self.detect || self.detector.is_some() {
            edge_runtime::Engine::load_for_faces(model, self.max_faces, Default::default())?
        } else {
            edge_runtime::Engine::load(model, 1)?
        })
    }
}
