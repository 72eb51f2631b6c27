//! A V4L2 camera through the `v4l` crate: MMAP streaming, the pixel format negotiated from
//! what the device offers, frames converted to RGB into the caller's buffer.
use std::{
    io,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::Serialize;
use v4l::{
    buffer::Type,
    capability::Flags,
    format::FourCC,
    framesize::FrameSizeEnum,
    io::{mmap::Stream, traits::CaptureStream},
    video::{capture::Parameters, Capture},
    Device, Format,
};

use super::{convert, CameraFormat, Frame, FrameSource, SourceError, SourceOptions};

/// Buffers the driver cycles through: enough that capture never waits on conversion.
const BUFFERS: u32 = 4;
/// A camera that sends nothing for this long is treated as lost.
const FRAME_TIMEOUT: Duration = Duration::from_secs(3);
/// `ENOTTY`: the node does not answer V4L2 ioctls (not a camera).
const ENOTTY: i32 = 25;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pixel {
    Yuyv,
    Mjpeg,
    Rgb24,
}

impl Pixel {
    fn fourcc(self) -> FourCC {
        FourCC::new(match self {
            Self::Yuyv => b"YUYV",
            Self::Mjpeg => b"MJPG",
            Self::Rgb24 => b"RGB3",
        })
    }

    fn preference(format: CameraFormat) -> &'static [Pixel] {
        match format {
            // Cheapest to convert first: RGB24 is a copy, YUYV a few integer operations,
            // MJPEG a JPEG decode.
            CameraFormat::Auto => &[Self::Rgb24, Self::Yuyv, Self::Mjpeg],
            CameraFormat::Yuyv => &[Self::Yuyv],
            CameraFormat::Mjpeg => &[Self::Mjpeg],
            CameraFormat::Rgb24 => &[Self::Rgb24],
        }
    }
}

/// An open, streaming camera.
pub struct Camera {
    name: String,
    // Declared before `device`: the stream unmaps and stops before the device closes.
    stream: Stream<'static>,
    _device: Device,
    pixel: Pixel,
    width: u32,
    height: u32,
    stride: usize,
    fps: Option<f32>,
}

fn io_error(name: &str, what: &str, e: io::Error) -> SourceError {
    let reason = format!("{what}: {e}");
    match (e.kind(), e.raw_os_error()) {
        (io::ErrorKind::PermissionDenied, _) => SourceError::Fatal {
            source_name: name.into(),
            reason: format!("{reason} (is the user in group `video`?)"),
        },
        (_, Some(ENOTTY)) => SourceError::Fatal {
            source_name: name.into(),
            reason: format!("{reason} (not a V4L2 device)"),
        },
        // Absent, busy, unplugged, I/O error, timeout: it may come back.
        _ => SourceError::Lost {
            source_name: name.into(),
            reason,
        },
    }
}

impl Camera {
    /// Opens `path`, negotiates the format and starts nothing yet (streaming starts with
    /// the first frame).
    pub fn open(path: &Path, opts: &SourceOptions) -> Result<Self, SourceError> {
        let name = format!("v4l:{}", path.display());
        let device = Device::with_path(path).map_err(|e| io_error(&name, "cannot open", e))?;
        let caps = device
            .query_caps()
            .map_err(|e| io_error(&name, "cannot query capabilities", e))?;
        if !caps.capabilities.contains(Flags::VIDEO_CAPTURE)
            || !caps.capabilities.contains(Flags::STREAMING)
        {
            return Err(SourceError::Fatal {
                source_name: name,
                reason: format!(
                    "`{}` ({}) is not a streaming video capture device",
                    caps.card, caps.driver
                ),
            });
        }
        let offered: Vec<FourCC> = device
            .enum_formats()
            .map_err(|e| io_error(&name, "cannot list formats", e))?
            .into_iter()
            .map(|d| d.fourcc)
            .collect();
        let wanted = Pixel::preference(opts.format);
        let pixel = wanted
            .iter()
            .copied()
            .find(|p| offered.contains(&p.fourcc()))
            .ok_or_else(|| SourceError::Fatal {
                source_name: name.clone(),
                reason: format!(
                    "offers {} but none of {} (try --camera-format auto)",
                    list(&offered),
                    list(&wanted.iter().map(|p| p.fourcc()).collect::<Vec<_>>())
                ),
            })?;
        let format = device
            .set_format(&Format::new(opts.width, opts.height, pixel.fourcc()))
            .map_err(|e| io_error(&name, "cannot set the format", e))?;
        if format.fourcc != pixel.fourcc() {
            return Err(SourceError::Fatal {
                source_name: name,
                reason: format!(
                    "asked for {} and the driver chose {}",
                    pixel.fourcc(),
                    format.fourcc
                ),
            });
        }
        if (format.width, format.height) != (opts.width, opts.height) {
            tracing::info!(
                "{name}: {}x{} asked, the driver chose {}x{}",
                opts.width,
                opts.height,
                format.width,
                format.height
            );
        }
        let fps = if opts.fps > 0.0 {
            match device.set_params(&Parameters::with_fps(opts.fps.round().max(1.0) as u32)) {
                Ok(p) if p.interval.numerator > 0 => {
                    Some(p.interval.denominator as f32 / p.interval.numerator as f32)
                }
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!("{name}: frame rate not set ({e}); using the driver's");
                    None
                }
            }
        } else {
            None
        };
        let mut stream = Stream::with_buffers(&device, Type::VideoCapture, BUFFERS)
            .map_err(|e| io_error(&name, "cannot map buffers", e))?;
        stream.set_timeout(FRAME_TIMEOUT);
        Ok(Self {
            name,
            stream,
            _device: device,
            pixel,
            width: format.width,
            height: format.height,
            stride: format.stride as usize,
            fps,
        })
    }
}

fn list(f: &[FourCC]) -> String {
    f.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl FrameSource for Camera {
    fn describe(&self) -> String {
        format!(
            "{} ({} {}x{}{})",
            self.name,
            self.pixel.fourcc(),
            self.width,
            self.height,
            self.fps.map(|f| format!(" @{f:.0}")).unwrap_or_default()
        )
    }

    fn next_frame(&mut self, frame: &mut Frame) -> Result<(), SourceError> {
        let (buf, meta) = self
            .stream
            .next()
            .map_err(|e| io_error(&self.name, "capture failed", e))?;
        let t0 = Instant::now();
        let used = (meta.bytesused as usize).min(buf.len());
        let data = if used == 0 { buf } else { &buf[..used] };
        let lost = |e: convert::ConvertError| SourceError::Lost {
            source_name: self.name.clone(),
            reason: format!("bad frame: {e}"),
        };
        match self.pixel {
            Pixel::Yuyv => {
                let rgb = frame.resize(self.width, self.height);
                convert::yuyv_to_rgb(data, self.width, self.height, self.stride, rgb)
                    .map_err(lost)?;
            }
            Pixel::Rgb24 => {
                let rgb = frame.resize(self.width, self.height);
                convert::rgb24_copy(data, self.width, self.height, self.stride, rgb)
                    .map_err(lost)?;
            }
            Pixel::Mjpeg => {
                let (w, h) = convert::mjpeg_to_rgb(data, &mut frame.rgb).map_err(lost)?;
                frame.width = w;
                frame.height = h;
            }
        }
        frame.captured = Instant::now();
        frame.capture_time = t0.elapsed();
        frame.label = None;
        Ok(())
    }
}

/// One camera and what it offers, for `edge-runtime sources`.
#[derive(Debug, Serialize)]
pub struct CameraInfo {
    /// Device node.
    pub path: PathBuf,
    /// The driver's name for it.
    pub card: String,
    /// Driver.
    pub driver: String,
    /// Bus (e.g. `usb-0000:01:00.0-1.3`).
    pub bus: String,
    /// Whether it captures video (metadata nodes do not).
    pub capture: bool,
    /// Pixel formats with their sizes.
    pub formats: Vec<FormatInfo>,
    /// Why it could not be inspected, if it could not.
    pub error: Option<String>,
}

/// One pixel format of a camera.
#[derive(Debug, Serialize)]
pub struct FormatInfo {
    /// FourCC, e.g. `YUYV`.
    pub fourcc: String,
    /// The driver's description.
    pub description: String,
    /// Whether this runtime can convert it.
    pub supported: bool,
    /// Frame sizes: `640x480` or a stepwise range.
    pub sizes: Vec<String>,
}

/// Every `/dev/video*` node and what it offers; a node that cannot be opened is listed
/// with the reason.
pub fn list_cameras() -> Vec<CameraInfo> {
    let mut nodes: Vec<PathBuf> = v4l::context::enum_devices()
        .into_iter()
        .map(|n| n.path().to_path_buf())
        .collect();
    nodes.sort();
    nodes.into_iter().map(|p| inspect(&p)).collect()
}

fn inspect(path: &Path) -> CameraInfo {
    let mut info = CameraInfo {
        path: path.into(),
        card: String::new(),
        driver: String::new(),
        bus: String::new(),
        capture: false,
        formats: Vec::new(),
        error: None,
    };
    let result = (|| -> io::Result<()> {
        let dev = Device::with_path(path)?;
        let caps = dev.query_caps()?;
        info.card = caps.card;
        info.driver = caps.driver;
        info.bus = caps.bus;
        info.capture = caps.capabilities.contains(Flags::VIDEO_CAPTURE);
        if !info.capture {
            return Ok(());
        }
        for d in dev.enum_formats()? {
            let supported = [Pixel::Yuyv, Pixel::Mjpeg, Pixel::Rgb24]
                .iter()
                .any(|p| p.fourcc() == d.fourcc);
            let sizes = dev
                .enum_framesizes(d.fourcc)
                .unwrap_or_default()
                .into_iter()
                .map(|s| match s.size {
                    FrameSizeEnum::Discrete(d) => format!("{}x{}", d.width, d.height),
                    FrameSizeEnum::Stepwise(s) => format!(
                        "{}x{}..{}x{} step {}x{}",
                        s.min_width,
                        s.min_height,
                        s.max_width,
                        s.max_height,
                        s.step_width,
                        s.step_height
                    ),
                })
                .collect();
            info.formats.push(FormatInfo {
                fourcc: d.fourcc.to_string(),
                description: d.description,
                supported,
                sizes,
            });
        }
        Ok(())
    })();
    if let Err(e) = result {
        info.error = Some(e.to_string());
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_camera_is_retryable_and_a_non_camera_is_not() {
        let opts = SourceOptions::default();
        let err = Camera::open(Path::new("/dev/video-does-not-exist"), &opts)
            .err()
            .unwrap();
        assert!(err.is_retryable(), "{err}");
        assert!(err.to_string().contains("/dev/video-does-not-exist"));
        // /dev/null opens but answers no V4L2 ioctl.
        let err = Camera::open(Path::new("/dev/null"), &opts).err().unwrap();
        assert!(!err.is_retryable(), "{err}");
        assert!(err.to_string().contains("not a V4L2 device"), "{err}");
    }

    #[test]
    fn auto_prefers_the_cheapest_conversion() {
        assert_eq!(
            Pixel::preference(CameraFormat::Auto),
            &[Pixel::Rgb24, Pixel::Yuyv, Pixel::Mjpeg]
        );
        assert_eq!(Pixel::Mjpeg.fourcc().to_string(), "MJPG");
    }
}
