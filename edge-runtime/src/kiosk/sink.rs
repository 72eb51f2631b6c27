//! The pipeline's sink in kiosk mode: every answer to the hub, a frame to the encoder
//! when someone watches, the FPS gauge and systemd's watchdog on each tick.
use std::{
    ops::ControlFlow,
    sync::{atomic::Ordering::Relaxed, Arc},
    time::{Duration, Instant},
};

use super::{hub::Hub, overlay::box_region};
use crate::pipeline::{Processed, Sink, Status};

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
        if self.hub.wants_frame(self.last_sent) {
            let boxes: Vec<_> = match p.region {
                Some(r) => vec![r],
                None => p
                    .faces
                    .iter()
                    .filter_map(|f| box_region(&f.bbox, p.frame.width, p.frame.height))
                    .collect(),
            };
            self.hub.offer_frame(p.frame, &boxes);
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
