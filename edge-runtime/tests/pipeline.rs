//! The frame pipeline on the fixture model: real sources, real inference, the queue's
//! drop accounting, a source that fails and comes back, and sources that cannot work.
use std::{
    ops::ControlFlow,
    path::Path,
    process::Command,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed},
    time::Duration,
};

use edge_runtime::{
    pipeline::{self, PipelineError, Processed, Sink, Status},
    source::{Frame, FrameSource, SourceError, SourceOptions, SourceSpec},
    Engine,
};
use hydranet_fixture::Fixture;

fn engine() -> Engine {
    let f = Fixture::load().unwrap();
    Engine::load(&f.model_path(), 1).unwrap()
}

fn pattern(fps: f32) -> SourceOptions {
    SourceOptions {
        width: 320,
        height: 240,
        fps,
        ..SourceOptions::default()
    }
}

#[derive(Default)]
struct Collect {
    frames: Vec<u64>,
    steady: usize,
    sleep: Duration,
    ticks: usize,
}

impl Sink for Collect {
    fn frame(&mut self, p: &Processed<'_>) -> ControlFlow<()> {
        assert_eq!(
            p.frame.rgb.len(),
            (p.frame.width * p.frame.height * 3) as usize
        );
        let r = p.region.expect("no detector: the guide box");
        assert!(r.x + r.width <= p.frame.width);
        assert_eq!(p.faces.len(), 1, "the guide box's one answer");
        self.frames.push(p.frame.seq);
        self.steady += p.faces[0].smoothed.steady as usize;
        std::thread::sleep(self.sleep);
        ControlFlow::Continue(())
    }

    fn tick(&mut self, _: &Status) {
        self.ticks += 1;
    }
}

/// Runs the pattern source at `fps` through the pipeline with `config`.
fn run_pattern(fps: f32, config: &pipeline::Config, sink: &mut Collect) -> pipeline::Report {
    let engine = engine();
    let (status, stop) = (Status::default(), AtomicBool::new(false));
    let opts = pattern(fps);
    pipeline::run(
        || SourceSpec::Pattern.open(&opts),
        &engine,
        config,
        &status,
        &stop,
        sink,
    )
    .unwrap()
}

#[test]
fn pattern_frames_flow_and_become_steady() {
    let config = pipeline::Config {
        max_frames: Some(40),
        ..pipeline::Config::default()
    };
    let mut sink = Collect::default();
    let report = run_pattern(0.0, &config, &mut sink);
    assert_eq!(report.processed, 40);
    assert_eq!(sink.frames.len(), 40);
    assert!(
        sink.frames.windows(2).all(|w| w[0] < w[1]),
        "frames in order"
    );
    assert!(sink.steady > 0, "a still scene settles");
    assert!(report.captured >= report.processed);
    assert!(report.stages.inference_ms > 0.0 && report.stages.capture_ms > 0.0);
    assert_eq!(report.reconnects, 0);
}

#[test]
fn slow_inference_drops_frames_instead_of_stalling_capture() {
    let config = pipeline::Config {
        max_frames: Some(8),
        ..pipeline::Config::default()
    };
    let mut sink = Collect {
        sleep: Duration::from_millis(40),
        ..Collect::default()
    };
    let report = run_pattern(200.0, &config, &mut sink);
    // Capture ran at its own pace (~8 frames per 40 ms sink) while 8 were processed:
    // the rest are counted as dropped, and the consumer always took the newest.
    assert!(report.captured > 3 * report.processed, "{report:?}");
    assert!(
        report.dropped + report.processed + 8 >= report.captured,
        "{report:?}"
    );
    assert!(report.dropped > 0);
    let gaps = sink.frames.windows(2).filter(|w| w[1] - w[0] > 1).count();
    assert!(gaps > 0, "newest frames were taken: {:?}", sink.frames);
}

/// A camera that unplugs: gives `good` frames, then fails until reopened; the first two
/// reopen attempts fail as a missing device would.
struct Unplugging {
    inner: Box<dyn FrameSource>,
    left: usize,
}

impl FrameSource for Unplugging {
    fn describe(&self) -> String {
        format!("unplugging {}", self.inner.describe())
    }

    fn next_frame(&mut self, frame: &mut Frame) -> Result<(), SourceError> {
        if self.left == 0 {
            return Err(SourceError::Lost {
                source_name: "camera".into(),
                reason: "VIDIOC_DQBUF: No such device (os error 19)".into(),
            });
        }
        self.left -= 1;
        self.inner.next_frame(frame)
    }
}

#[test]
fn a_lost_source_is_reopened_with_backoff_and_the_run_goes_on() {
    let engine = engine();
    let config = pipeline::Config {
        max_frames: Some(12),
        retry_initial: Duration::from_millis(10),
        retry_max: Duration::from_millis(40),
        ..pipeline::Config::default()
    };
    let (status, stop) = (Status::default(), AtomicBool::new(false));
    let opens = AtomicUsize::new(0);
    let opts = pattern(100.0);
    let mut sink = Collect::default();
    let report = pipeline::run(
        || {
            let n = opens.fetch_add(1, Relaxed);
            if n == 1 || n == 2 {
                return Err(SourceError::Lost {
                    source_name: "v4l:/dev/video9".into(),
                    reason: "cannot open: No such file or directory (os error 2)".into(),
                });
            }
            Ok(Box::new(Unplugging {
                inner: SourceSpec::Pattern.open(&opts)?,
                left: 5,
            }))
        },
        &engine,
        &config,
        &status,
        &stop,
        &mut sink,
    )
    .unwrap();
    assert_eq!(report.processed, 12, "{report:?}");
    assert!(report.reconnects >= 2, "{report:?}");
    assert!(opens.load(Relaxed) >= 5);
    let last = status.last_error.lock().unwrap().clone().unwrap();
    assert!(last.contains("No such"), "{last}");
}

#[test]
fn a_source_that_cannot_work_is_an_error_naming_it() {
    let engine = engine();
    let empty = tempfile::tempdir().unwrap();
    let spec = SourceSpec::Dir(empty.path().to_path_buf());
    let opts = SourceOptions::default();
    let (status, stop) = (Status::default(), AtomicBool::new(false));
    let err = pipeline::run(
        || spec.open(&opts),
        &engine,
        &pipeline::Config::default(),
        &status,
        &stop,
        &mut Collect::default(),
    )
    .unwrap_err();
    assert!(matches!(err, PipelineError::Source(_)));
    assert!(
        err.to_string()
            .contains(&empty.path().display().to_string()),
        "{err}"
    );
    assert!(!status.source_ok.load(Relaxed));
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edge-runtime"))
}

fn faces(dir: &Path) -> Vec<String> {
    let names = ["a_light.png", "b_dark.png"];
    for (i, name) in names.iter().enumerate() {
        let v = 60 + 120 * i as u8;
        image::RgbImage::from_fn(96, 80, |x, y| image::Rgb([v, (x * 2) as u8, (y * 3) as u8]))
            .save(dir.join(name))
            .unwrap();
    }
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn run_prints_one_json_line_per_frame_and_a_summary() {
    let f = Fixture::load().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let names = faces(dir.path());
    let out = bin()
        .args(["run", "--model"])
        .arg(f.model_path())
        .arg("--source")
        .arg(format!("dir:{}", dir.path().display()))
        .args([
            "--fps",
            "0",
            "--hold",
            "0",
            "--once",
            "--all",
            "--progress",
            "0",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let labels: Vec<&str> = lines.iter().filter_map(|l| l["label"].as_str()).collect();
    assert_eq!(labels, names, "{stderr}");
    for l in &lines {
        assert!(l["smoothed"]["age"]["value"].as_f64().is_some(), "{l}");
        assert!(l["raw"]["ethnicity"]["label"].is_string(), "{l}");
        assert!(l["ms"]["inference"].as_f64().unwrap() >= 0.0);
    }
    let summary = stderr.lines().find(|l| l.contains("\"summary\"")).unwrap();
    let summary: serde_json::Value = serde_json::from_str(summary).unwrap();
    assert_eq!(summary["summary"]["processed"], 2);
}

#[test]
fn run_refuses_a_bad_source_and_a_missing_camera_is_retried_until_stopped() {
    let f = Fixture::load().unwrap();
    let out = bin()
        .args(["run", "--model"])
        .arg(f.model_path())
        .args(["--source", "webcam0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("webcam0"));
    if cfg!(target_os = "linux") {
        // A camera that is not there is waited for (it may be plugged in), not an exit.
        let mut child = bin()
            .args(["run", "--model"])
            .arg(f.model_path())
            .args(["--source", "v4l:/dev/video-absent"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        assert!(
            child.try_wait().unwrap().is_none(),
            "still waiting for the camera"
        );
        // SIGTERM, as systemd stops it: a clean exit with the summary.
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("/dev/video-absent") && stderr.contains("retrying"),
            "{stderr}"
        );
        assert!(stderr.contains("no frame was processed"), "{stderr}");
    }
}

/// Under systemd (Type=notify, WatchdogSec): READY as soon as the loop runs, even with the
/// camera missing (a board must not be restarted for its camera), then watchdog pings.
#[cfg(target_os = "linux")]
#[test]
fn tells_systemd_ready_and_pings_the_watchdog_while_the_camera_is_missing() {
    use std::os::unix::net::UnixDatagram;
    let f = Fixture::load().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut child = bin()
        .args(["run", "--model"])
        .arg(f.model_path())
        .args(["--source", "v4l:/dev/video-absent", "--progress", "0"])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "200000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 512];
    let t0 = std::time::Instant::now();
    while !(got.contains("READY=1") && got.matches("WATCHDOG=1").count() >= 2)
        && t0.elapsed() < Duration::from_secs(10)
    {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
            got.push('\n');
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(got.contains("READY=1"), "{got}");
    assert!(got.contains("STATUS=waiting for the camera"), "{got}");
    assert!(got.matches("WATCHDOG=1").count() >= 2, "{got}");
}
