//! Frame sources: where pictures come from. A camera (V4L2), a folder of stills, an image
//! sequence played at a fixed rate, or a synthetic pattern — all behind [`FrameSource`], so
//! the pipeline and the kiosk never know which.
//!
//! Every source writes interleaved RGB8 into a [`Frame`] the caller owns and reuses: the
//! frame path does not allocate per frame once the buffers have their size.
use std::{
    fmt,
    path::PathBuf,
    str::FromStr,
    time::{Duration, Instant},
};

pub mod convert;
pub mod folder;
pub mod pattern;
#[cfg(target_os = "linux")]
pub mod v4l;

/// One picture, interleaved RGB8, row-major, no padding.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes.
    pub rgb: Vec<u8>,
    /// Frame number, counted by the pipeline from 0.
    pub seq: u64,
    /// When the source delivered it.
    pub captured: Instant,
    /// Time spent capturing and converting it to RGB.
    pub capture_time: Duration,
    /// What the source says this frame shows (a file name), if anything.
    pub label: Option<String>,
}

impl Default for Frame {
    fn default() -> Self {
        Self {
            width: 0,
            height: 0,
            rgb: Vec::new(),
            seq: 0,
            captured: Instant::now(),
            capture_time: Duration::ZERO,
            label: None,
        }
    }
}

impl Frame {
    /// Sizes the buffer for `width x height` (keeping its allocation) and returns it.
    pub fn resize(&mut self, width: u32, height: u32) -> &mut [u8] {
        self.width = width;
        self.height = height;
        self.rgb.resize(width as usize * height as usize * 3, 0);
        &mut self.rgb
    }
}

/// Why a source gave no frame.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source is finished (the last image of a folder was shown).
    #[error("{source_name}: no more frames")]
    Ended {
        /// The source.
        source_name: String,
    },
    /// The device went away or failed (unplugged, busy, EIO, timeout): worth retrying.
    #[error("{source_name}: {reason}")]
    Lost {
        /// The source.
        source_name: String,
        /// What happened.
        reason: String,
    },
    /// The source can never work as asked (missing folder, no usable format).
    #[error("{source_name}: {reason}")]
    Fatal {
        /// The source.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
}

impl SourceError {
    /// Whether reopening the source later may help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Lost { .. })
    }
}

/// A producer of frames.
pub trait FrameSource: Send {
    /// What it is, for messages: `v4l:/dev/video0 (YUYV 640x480 @30)`.
    fn describe(&self) -> String;
    /// Fills `frame` with the next picture (its pixels, size, `captured`, `label`); blocks
    /// as long as the source paces itself.
    fn next_frame(&mut self, frame: &mut Frame) -> Result<(), SourceError>;
    /// Whether frames arrive on their own clock (a camera, a paced pattern): then capture
    /// keeps going and inference takes the newest. An unpaced file or pattern source is
    /// read on demand instead, so no frame is made only to be dropped.
    fn is_live(&self) -> bool {
        true
    }
}

/// Camera pixel format preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CameraFormat {
    /// The cheapest one the device offers: RGB24, then YUYV, then MJPEG.
    #[default]
    Auto,
    /// Packed YUV 4:2:2.
    Yuyv,
    /// Motion JPEG.
    Mjpeg,
    /// Packed 24-bit RGB.
    Rgb24,
}

/// Options shared by the sources that have a size or a rate.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceOptions {
    /// Requested width (cameras, pattern).
    pub width: u32,
    /// Requested height (cameras, pattern).
    pub height: u32,
    /// Frames per second; 0 = as fast as possible (pattern, folders).
    pub fps: f32,
    /// Camera pixel format.
    pub format: CameraFormat,
    /// Seconds each still of a `dir:` source is shown.
    pub hold: f32,
    /// Start again after the last image of a `dir:` or `seq:` source.
    pub looped: bool,
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self {
            width: 640,
            height: 480,
            fps: 30.0,
            format: CameraFormat::Auto,
            hold: 2.0,
            looped: true,
        }
    }
}

/// Which source, parsed from `--source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// `v4l:/dev/video0`
    V4l(PathBuf),
    /// `dir:PATH`: each image shown as a still for `hold` seconds.
    Dir(PathBuf),
    /// `seq:PATH`: one image per frame, at `fps`.
    Seq(PathBuf),
    /// `pattern`: a synthetic test scene.
    Pattern,
}

impl FromStr for SourceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, rest) = s.split_once(':').unwrap_or((s, ""));
        let path = |what: &str| {
            if rest.is_empty() {
                Err(format!("source `{s}` needs a path: `{what}:PATH`"))
            } else {
                Ok(PathBuf::from(rest))
            }
        };
        match kind {
            "v4l" => Ok(Self::V4l(path("v4l")?)),
            "dir" => Ok(Self::Dir(path("dir")?)),
            "seq" => Ok(Self::Seq(path("seq")?)),
            "pattern" if rest.is_empty() => Ok(Self::Pattern),
            _ => Err(format!(
                "unknown source `{s}`: use v4l:/dev/videoN, dir:PATH, seq:PATH or pattern"
            )),
        }
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4l(p) => write!(f, "v4l:{}", p.display()),
            Self::Dir(p) => write!(f, "dir:{}", p.display()),
            Self::Seq(p) => write!(f, "seq:{}", p.display()),
            Self::Pattern => f.write_str("pattern"),
        }
    }
}

impl SourceSpec {
    /// Opens the source. A camera that is absent or busy is a [`SourceError::Lost`], so the
    /// caller may wait for it; a folder without images is [`SourceError::Fatal`].
    pub fn open(&self, opts: &SourceOptions) -> Result<Box<dyn FrameSource>, SourceError> {
        match self {
            #[cfg(target_os = "linux")]
            Self::V4l(p) => Ok(Box::new(v4l::Camera::open(p, opts)?)),
            #[cfg(not(target_os = "linux"))]
            Self::V4l(_) => Err(SourceError::Fatal {
                source_name: self.to_string(),
                reason: "V4L2 cameras exist on Linux only".into(),
            }),
            Self::Dir(p) => Ok(Box::new(folder::Folder::stills(p, opts)?)),
            Self::Seq(p) => Ok(Box::new(folder::Folder::sequence(p, opts)?)),
            Self::Pattern => Ok(Box::new(pattern::Pattern::new(opts))),
        }
    }
}

/// Sleeps until `next` (if it is in the future) and moves it one period on; a source that
/// fell behind does not try to catch up with a burst.
pub(crate) fn pace(next: &mut Option<Instant>, fps: f32) {
    if fps <= 0.0 {
        return;
    }
    let period = Duration::from_secs_f32(1.0 / fps);
    let now = Instant::now();
    let due = next.unwrap_or(now);
    if due > now {
        std::thread::sleep(due - now);
    }
    *next = Some(due.max(now) + period);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print_back() {
        for s in ["v4l:/dev/video0", "dir:faces", "seq:/tmp/x y", "pattern"] {
            let spec: SourceSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
        }
        for bad in ["", "v4l", "v4l:", "dir:", "camera:/dev/video0", "pattern:3"] {
            let err = bad.parse::<SourceSpec>().unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn frames_keep_their_allocation() {
        let mut f = Frame::default();
        f.resize(64, 48);
        let ptr = f.rgb.as_ptr();
        f.resize(32, 24);
        f.resize(64, 48);
        assert_eq!(f.rgb.as_ptr(), ptr);
        assert_eq!(f.rgb.len(), 64 * 48 * 3);
    }
}
