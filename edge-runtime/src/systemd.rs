//! systemd integration for the service: READY once frames flow, watchdog pings while the
//! processing loop is alive. Every call is a no-op outside systemd (no NOTIFY_SOCKET).
use std::{
    sync::atomic::Ordering::Relaxed,
    time::{Duration, Instant},
};

use crate::pipeline::Status;

/// systemd integration: READY=1 once frames flow, WATCHDOG=1 while the loop is alive
/// (also while a lost camera is being retried: the process is healthy, the camera is not).
#[derive(Default)]
pub struct Systemd {
    ready: bool,
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

    /// Pings the watchdog at half its period and says READY once.
    pub fn tick(&mut self, status: &Status) {
        use sd_notify::NotifyState;
        if !self.ready && status.processed.load(Relaxed) > 0 {
            self.ready = true;
            let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status("running")]);
        }
        if let Some(period) = self.watchdog {
            if self.last_ping.is_none_or(|t| t.elapsed() >= period / 2) {
                let _ = sd_notify::notify(&[NotifyState::Watchdog]);
                self.last_ping = Some(Instant::now());
            }
        }
    }
}
