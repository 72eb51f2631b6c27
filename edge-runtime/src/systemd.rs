//! systemd integration for the service: READY once the loop runs, watchdog pings while the
//! processing loop is alive. Every call is a no-op outside systemd (no NOTIFY_SOCKET).
use std::{
    sync::atomic::Ordering::Relaxed,
    time::{Duration, Instant},
};

use crate::pipeline::Status;

/// systemd integration: READY=1 once the loop runs, WATCHDOG=1 while it is alive
/// (also while a lost camera is being retried: the process is healthy, the camera is not).
#[derive(Default)]
pub struct Systemd {
    ready: bool,
    source_ok: Option<bool>,
    watchdog: Option<Duration>,
    last_ping: Option<Instant>,
}

impl Systemd {
    /// Reads `WATCHDOG_USEC`; every call is a no-op outside systemd.
    pub fn new() -> Self {
        Self {
            watchdog: sd_notify::watchdog_enabled(),
            ..Self::default()
        }
    }

    /// Says READY on the first call (the model is loaded and the loop runs: a board that
    /// boots without its camera must not be restarted for it), keeps STATUS on the camera's
    /// state, and pings the watchdog at half its period.
    pub fn tick(&mut self, status: &Status) {
        use sd_notify::NotifyState;
        let ok = status.source_ok.load(Relaxed);
        if !self.ready || self.source_ok != Some(ok) {
            let text = if ok {
                "camera delivering"
            } else {
                "waiting for the camera (retrying)"
            };
            let ready = if self.ready {
                None
            } else {
                Some(NotifyState::Ready)
            };
            let states: Vec<NotifyState> = ready
                .into_iter()
                .chain([NotifyState::Status(text)])
                .collect();
            let _ = sd_notify::notify(&states);
            self.ready = true;
            self.source_ok = Some(ok);
        }
        if let Some(period) = self.watchdog {
            if self.last_ping.is_none_or(|t| t.elapsed() >= period / 2) {
                let _ = sd_notify::notify(&[NotifyState::Watchdog]);
                self.last_ping = Some(Instant::now());
            }
        }
    }
}
