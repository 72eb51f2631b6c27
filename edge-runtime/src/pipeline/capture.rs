//! The capture thread: opens the source (and reopens it after a failure, with backoff),
//! fills recycled buffers and hands them to inference without ever waiting for it.
use std::{
    sync::{
        atomic::{AtomicBool, Ordering::Relaxed},
        Mutex,
    },
    thread::{self, Thread},
    time::{Duration, Instant},
};

use heapless::spsc::{Consumer, Producer};

use super::{Config, Status};
use crate::source::{Frame, FrameSource, SourceError};

/// What the capture thread shares with the rest of the pipeline.
pub(super) struct Capture<'a, O> {
    /// Opens the source (first open and every reopen).
    pub open: O,
    pub config: &'a Config,
    pub status: &'a Status,
    pub stop: &'a AtomicBool,
    /// Finished frames, to inference.
    pub ready: Producer<'a, Frame>,
    /// Empty buffers, back from inference.
    pub free: Consumer<'a, Frame>,
    /// The inference thread, woken when a frame is ready or capture ends.
    pub consumer: Thread,
    /// The error that ended capture, for the pipeline's result.
    pub fatal: &'a Mutex<Option<SourceError>>,
    /// Set once capture has ended.
    pub done: &'a AtomicBool,
}

impl<O> Capture<'_, O>
where
    O: FnMut() -> Result<Box<dyn FrameSource>, SourceError>,
{
    /// Captures until `stop`, the source ends, or an error not worth retrying.
    pub fn run(mut self) {
        let mut frame = Frame::default();
        let mut source: Option<Box<dyn FrameSource>> = None;
        let mut backoff = self.config.retry_initial;
        let mut seq = 0u64;
        let mut failed_once = false;
        while !self.stop.load(Relaxed) {
            if source.is_none() {
                match (self.open)() {
                    Ok(s) => {
                        if failed_once {
                            self.status.reconnects.fetch_add(1, Relaxed);
                        }
                        tracing::info!("source: {}", s.describe());
                        if let Ok(mut d) = self.status.source.lock() {
                            *d = Some(s.describe());
                        }
                        source = Some(s);
                    }
                    Err(e) => {
                        failed_once = true;
                        if self.retry(e, &mut backoff) {
                            continue;
                        }
                        break;
                    }
                }
            }
            let Some(src) = source.as_mut() else {
                continue;
            };
            match src.next_frame(&mut frame) {
                Ok(()) => {
                    self.status.source_ok.store(true, Relaxed);
                    backoff = self.config.retry_initial;
                    frame.seq = seq;
                    seq += 1;
                    self.status.captured.fetch_add(1, Relaxed);
                    if !src.is_live() {
                        self.wait_for_demand();
                    }
                    self.hand_over(&mut frame);
                }
                Err(e) => {
                    source = None;
                    failed_once = true;
                    if !self.retry(e, &mut backoff) {
                        break;
                    }
                }
            }
        }
        self.done.store(true, Relaxed);
        self.consumer.unpark();
    }

    /// On demand (an unpaced source): make the next frame only once inference has taken
    /// the last one (one frame ahead: capture overlaps inference, and no frame is made to
    /// be dropped).
    fn wait_for_demand(&self) {
        while !self.stop.load(Relaxed) {
            if self.ready.is_empty() && self.free.ready() {
                break;
            }
            thread::park_timeout(Duration::from_millis(20));
        }
    }

    /// Queues `frame` for inference and takes a spare buffer in its place; with no room
    /// or no spare, the frame is dropped (counted) and its buffer reused.
    fn hand_over(&mut self, frame: &mut Frame) {
        // Only this thread enqueues, so a ready queue with room stays so.
        if !self.ready.ready() {
            self.status.dropped.fetch_add(1, Relaxed);
            return;
        }
        let Some(spare) = self.free.dequeue() else {
            self.status.dropped.fetch_add(1, Relaxed);
            return;
        };
        let full = std::mem::replace(frame, spare);
        if let Err(back) = self.ready.enqueue(full) {
            *frame = back;
        }
        self.consumer.unpark();
    }

    /// Records a source failure; true when it is worth another try (after the backoff),
    /// false when capture must end (the error is kept for the pipeline's result).
    fn retry(&self, e: SourceError, backoff: &mut Duration) -> bool {
        self.status.source_ok.store(false, Relaxed);
        if let Ok(mut last) = self.status.last_error.lock() {
            *last = Some(e.to_string());
        }
        let ended = matches!(e, SourceError::Ended { .. });
        if !(e.is_retryable() || (self.config.keep_trying && !ended)) {
            if !ended {
                tracing::error!("{e}");
            }
            if let Ok(mut f) = self.fatal.lock() {
                *f = Some(e);
            }
            return false;
        }
        tracing::warn!("{e}; retrying in {:.2} s", backoff.as_secs_f32());
        sleep_unless_stopped(*backoff, self.stop);
        *backoff = (*backoff * 2).min(self.config.retry_max);
        true
    }
}

fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    while !stop.load(Relaxed) {
        let now = Instant::now();
        if now >= end {
            break;
        }
        thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}
