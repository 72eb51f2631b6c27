//! What the pipeline thread publishes and the web clients read, and the encoder thread
//! that turns offered frames into the stream's JPEGs.
//!
//! The pipeline never waits for a client: predictions go to a bounded broadcast (a client
//! that falls behind is dropped and counted), the newest prediction and the newest JPEG sit
//! in `watch` slots (a slow reader just skips to the newest), and frames are JPEG-encoded
//! once for all stream clients, on their own thread, at a capped rate, and only while
//! someone watches.
use std::{
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

use super::overlay::draw_box;
use crate::{pipeline::Status, source::Frame};

/// Predictions a slow `/events` client may fall behind before it is dropped.
pub const EVENT_BACKLOG: usize = 64;

/// The frame waiting to be encoded.
#[derive(Default)]
struct Pending {
    rgb: Vec<u8>,
    width: u32,
    height: u32,
    boxes: Vec<Region>,
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

    /// Whether a new frame should be offered to the encoder now: someone watches the
    /// stream and the last offer (`last`) is at least one stream period old.
    pub fn wants_frame(&self, last: Option<Instant>) -> bool {
        self.stream_clients.load(Relaxed) > 0
            && last.is_none_or(|t| t.elapsed() >= self.stream_period)
    }

    /// Hands `frame` (with the boxes to draw: the guide box, or one per face) to the
    /// encoder thread; the pipeline's own buffer goes back to it at once.
    pub fn offer_frame(&self, frame: &Frame, boxes: &[Region]) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.rgb.clear();
            pending.rgb.extend_from_slice(&frame.rgb);
            pending.width = frame.width;
            pending.height = frame.height;
            pending.boxes.clear();
            pending.boxes.extend_from_slice(boxes);
            pending.fresh = true;
        }
        self.wake.notify_one();
    }

    /// Stops the encoder thread.
    pub fn close(&self) {
        if let Ok(mut p) = self.pending.lock() {
            p.closed = true;
        }
        self.wake.notify_all();
    }

    /// The encoder thread's loop: waits for a fresh frame, draws its boxes, encodes.
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
            for r in &work.boxes {
                draw_box(&mut work.rgb, work.width, work.height, *r);
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
