//! What the pipeline thread publishes and the web clients read.
//!
//! The pipeline never waits for a client: predictions go to a bounded broadcast (a client
//! that falls behind is dropped and counted), the newest prediction and the newest JPEG sit
//! in `watch` slots (a slow reader just skips to the newest), and frames are JPEG-encoded
//! once for all stream clients, on their own thread, at a capped rate, and only while
//! someone watches.
use std::{
    ops::ControlFlow,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
        Arc, Condvar, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use models::Region;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{broadcast, watch};

use crate::pipeline::{Processed, Sink, Status};

/// Predictions a slow `/events` client may fall behind before it is dropped.
pub const EVENT_BACKLOG: usize = 64;

/// The frame waiting to be encoded.
#[derive(Default)]
struct Pending {
    rgb: Vec<u8>,
    width: u32,
    height: u32,
    region: Option<Region>,
    fresh: bool,
    closed: bool,
}

/// Shared state between the pipeline, the encoder and the HTTP handlers.
pub struct Hub {
    /// The pipeline's counters.
    pub status: Arc<Status>,
    /// Newest prediction (JSON).
    pub prediction: watch::Sender<Option<Arc<str>>>,
    /// Every prediction (JSON), for `/events`.
    pub events: broadcast::Sender<Arc<str>>,
    /// Newest JPEG frame with the guide box drawn.
    pub jpeg: watch::Sender<Option<Bytes>>,
    /// Inference latency, seconds.
    pub latency: Histogram,
    /// Connected `/stream.mjpg` clients.
    pub stream_clients: AtomicUsize,
    /// Connected `/events` clients.
    pub event_clients: AtomicUsize,
    /// Clients dropped for not keeping up.
    pub slow_dropped: AtomicU64,
    /// Requests refused (limits, tokens, bad requests).
    pub refused: AtomicU64,
    /// Processed frames per second, over the last second (f64 bits).
    pub fps_bits: AtomicU64,
    pending: Mutex<Pending>,
    wake: Condvar,
    /// Minimum time between encoded frames.
    stream_period: Duration,
    jpeg_quality: u8,
}

impl Hub {
    /// A hub whose stream runs at most at `stream_fps`.
    pub fn new(status: Arc<Status>, stream_fps: f32, jpeg_quality: u8) -> Arc<Self> {
        let buckets = prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 12);
        Arc::new(Self {
            status,
            prediction: watch::channel(None).0,
            events: broadcast::channel(EVENT_BACKLOG).0,
            jpeg: watch::channel(None).0,
            latency: Histogram::new(buckets),
            stream_clients: AtomicUsize::new(0),
            event_clients: AtomicUsize::new(0),
            slow_dropped: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            fps_bits: AtomicU64::new(0f64.to_bits()),
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            stream_period: Duration::from_secs_f32(1.0 / stream_fps.max(0.1)),
            jpeg_quality: jpeg_quality.clamp(10, 100),
        })
    }

    /// Processed frames per second (last second).
    pub fn fps(&self) -> f64 {
        f64::from_bits(self.fps_bits.load(Relaxed))
    }

    /// Stops the encoder thread.
    pub fn close(&self) {
        if let Ok(mut p) = self.pending.lock() {
            p.closed = true;
        }
        self.wake.notify_all();
    }

    /// The encoder thread's loop: waits for a fresh frame, draws the guide box, encodes.
    pub fn encode_loop(&self) {
        let mut work = Pending::default();
        let mut jpeg = Vec::new();
        loop {
            {
                let Ok(mut p) = self.pending.lock() else {
                    return;
                };
                while !p.fresh && !p.closed {
                    p = match self.wake.wait(p) {
                        Ok(p) => p,
                        Err(_) => return,
                    };
                }
                if p.closed {
                    return;
                }
                // Swap buffers: the pipeline fills the other one while this one encodes.
                std::mem::swap(&mut *p, &mut work);
                p.fresh = false;
            }
            if let Some(r) = work.region {
                draw_box(&mut work.rgb, work.width, work.height, r);
            }
            jpeg.clear();
            let mut encoder =
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, self.jpeg_quality);
            match encoder.encode(
                &work.rgb,
                work.width,
                work.height,
                image::ExtendedColorType::Rgb8,
            ) {
                Ok(()) => {
                    self.jpeg.send_replace(Some(Bytes::copy_from_slice(&jpeg)));
                }
                Err(e) => tracing::warn!("kiosk: frame not encoded: {e}"),
            }
        }
    }
}

/// Draws the guide box: a 3-pixel green frame with dark edges, visible on any background.
pub fn draw_box(rgb: &mut [u8], width: u32, height: u32, r: Region) {
    let (w, h) = (width as i64, height as i64);
    let mut put = |x: i64, y: i64, c: [u8; 3]| {
        if (0..w).contains(&x) && (0..h).contains(&y) {
            let i = ((y * w + x) * 3) as usize;
            if let Some(px) = rgb.get_mut(i..i + 3) {
                px.copy_from_slice(&c);
            }
        }
    };
    let (x0, y0) = (r.x as i64, r.y as i64);
    let (x1, y1) = (x0 + r.width as i64 - 1, y0 + r.height as i64 - 1);
    for t in -2..=2i64 {
        let c = if t.abs() == 2 {
            [0, 40, 0]
        } else {
            [60, 230, 90]
        };
        for x in x0 - 2..=x1 + 2 {
            put(x, y0 + t, c);
            put(x, y1 + t, c);
        }
        for y in y0 - 2..=y1 + 2 {
            put(x0 + t, y, c);
            put(x1 + t, y, c);
        }
    }
}

/// The pipeline's sink in kiosk mode.
pub struct KioskSink {
    hub: Arc<Hub>,
    systemd: crate::systemd::Systemd,
    last_sent: Option<Instant>,
    window_start: Instant,
    window_frames: u64,
}

impl KioskSink {
    /// A sink publishing into `hub`.
    pub fn new(hub: Arc<Hub>) -> Self {
        Self {
            hub,
            systemd: crate::systemd::Systemd::new(),
            last_sent: None,
            window_start: Instant::now(),
            window_frames: 0,
        }
    }
}

impl Sink for KioskSink {
    fn frame(&mut self, p: &Processed<'_>) -> ControlFlow<()> {
        let json: Arc<str> = p.to_json().to_string().into();
        self.hub.latency.observe(p.times.inference.as_secs_f64());
        // No receiver is not an error: nobody is listening right now.
        let _ = self.hub.events.send(json.clone());
        self.hub.prediction.send_replace(Some(json));
        self.window_frames += 1;
        let watched = self.hub.stream_clients.load(Relaxed) > 0;
        let due = self
            .last_sent
            .is_none_or(|t| t.elapsed() >= self.hub.stream_period);
        if watched && due {
            if let Ok(mut pending) = self.hub.pending.lock() {
                pending.rgb.clear();
                pending.rgb.extend_from_slice(&p.frame.rgb);
                pending.width = p.frame.width;
                pending.height = p.frame.height;
                pending.region = Some(p.region);
                pending.fresh = true;
            }
            self.hub.wake.notify_one();
            self.last_sent = Some(Instant::now());
        }
        ControlFlow::Continue(())
    }

    fn tick(&mut self, status: &Status) {
        self.systemd.tick(status);
        let dt = self.window_start.elapsed();
        if dt >= Duration::from_secs(1) {
            let fps = self.window_frames as f64 / dt.as_secs_f64();
            self.hub.fps_bits.store(fps.to_bits(), Relaxed);
            self.window_frames = 0;
            self.window_start = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_box_is_drawn_inside_the_frame_only() {
        let (w, h) = (20u32, 10u32);
        let mut rgb = vec![0u8; (w * h * 3) as usize];
        let r = Region {
            x: 0,
            y: 0,
            width: 20,
            height: 10,
        };
        draw_box(&mut rgb, w, h, r);
        assert_eq!(&rgb[0..3], &[60, 230, 90], "corner on the line");
        let centre = ((5 * w + 10) * 3) as usize;
        assert_eq!(&rgb[centre..centre + 3], &[0, 0, 0], "inside untouched");
    }
}
