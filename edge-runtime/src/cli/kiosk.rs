//! `edge-runtime kiosk`: the camera, the model and a full-screen page for a browser.
use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use edge_runtime::{kiosk, pipeline, source::SourceSpec};
use models::{smooth::SmoothConfig, GuideBox};

/// Arguments of `kiosk`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// ONNX model file.
    #[arg(long)]
    model: PathBuf,
    /// Frame source: v4l:/dev/videoN, dir:PATH, seq:PATH or pattern.
    #[arg(long, default_value = "v4l:/dev/video0")]
    source: SourceSpec,
    #[command(flatten)]
    capture: super::run::CaptureArgs,
    #[command(flatten)]
    detect: super::DetectArgs,
    /// The guide box, shown and read when no detector is used: centre x, centre y and
    /// height, as fractions of the frame.
    #[arg(long, default_value = "0.5,0.5,0.7")]
    guide_box: GuideBox,
    /// Frames averaged per answer (1..=32).
    #[arg(long, default_value_t = 8)]
    smooth_window: usize,
    /// Address to serve on. Loopback by default: the board's own browser.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Token required on /api/*, /events, /healthz and /metrics (Bearer header or ?token=).
    #[arg(long, env = "HYDRANET_KIOSK_TOKEN")]
    token: Option<String>,
    /// Most video frames per second sent to browsers.
    #[arg(long, default_value_t = 15.0)]
    stream_fps: f32,
    /// JPEG quality of the video stream.
    #[arg(long, default_value_t = 75)]
    jpeg_quality: u8,
    /// Close a connection that has not sent its request headers after this many seconds
    /// (half-open and trickling clients).
    #[arg(long, default_value_t = 10.0)]
    header_timeout: f64,
    /// Drop a client that has not read for this many seconds (a stalled stream).
    #[arg(long, default_value_t = 5.0)]
    write_timeout: f64,
    /// Most simultaneous video clients (and, separately, event clients).
    #[arg(long, default_value_t = 64)]
    max_clients: usize,
    /// tract threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn seconds(v: f64, flag: &str) -> Result<std::time::Duration> {
    anyhow::ensure!(
        v.is_finite() && v > 0.0,
        "{flag} must be a positive number of seconds"
    );
    Ok(std::time::Duration::from_secs_f64(v))
}

pub fn run(a: Args) -> Result<ExitCode> {
    super::set_threads(a.threads)?;
    if !a.listen.ip().is_loopback() && a.token.is_none() {
        tracing::warn!(
            "kiosk: listening on {} without --token: anyone on the network can read the predictions",
            a.listen
        );
    }
    let engine = a
        .detect
        .load_engine(&a.model)
        .with_context(|| format!("loading {}", a.model.display()))?;
    let stop = super::run::stop_flag()?;
    let config = pipeline::Config {
        guide: a.guide_box,
        detector: a.detect.detector()?,
        faces: a.detect.options()?,
        smoothing: SmoothConfig {
            window: a.smooth_window,
            ..SmoothConfig::default()
        },
        ..pipeline::Config::default()
    };
    let opts = kiosk::Options {
        listen: a.listen,
        token: a.token,
        stream_fps: a.stream_fps,
        jpeg_quality: a.jpeg_quality,
        header_timeout: seconds(a.header_timeout, "--header-timeout")?,
        write_timeout: seconds(a.write_timeout, "--write-timeout")?,
        max_stream_clients: a.max_clients,
        max_event_clients: a.max_clients,
        ..kiosk::Options::default()
    };
    let source_opts = a.capture.options();
    let spec = a.source.clone();
    let report = kiosk::serve(|| spec.open(&source_opts), &engine, &config, &opts, stop)
        .with_context(|| format!("kiosk on {} with {}", a.listen, a.source))?;
    eprintln!("{}", serde_json::json!({ "summary": report }));
    Ok(ExitCode::SUCCESS)
}
