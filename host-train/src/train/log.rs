//! The run log, `RUN/log.jsonl`: one JSON line per epoch ([`EpochRecord`]) and one per
//! event ([`Event`]: a step with `--log-steps`, an interruption, the step limit). The
//! trainer writes these types and `report` reads them back, so a field is named once.
use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The log's file name in a run folder.
pub const FILE: &str = "log.jsonl";

/// One finished epoch. Fields are in alphabetical order, as the file has always had them;
/// all but `epoch` may be missing from what a reader is given (older or partial logs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Whether this epoch's checkpoint became `best.safetensors`.
    #[serde(default)]
    pub best: bool,
    /// Seconds spent building batches (augment + normalise).
    #[serde(default)]
    pub data_seconds: Option<f64>,
    /// `data_seconds` over `epoch_seconds`.
    #[serde(default)]
    pub data_share: Option<f64>,
    /// 1-based epoch.
    pub epoch: usize,
    /// Wall time of the epoch's training steps.
    #[serde(default)]
    pub epoch_seconds: Option<f64>,
    /// Training images per second.
    #[serde(default)]
    pub img_per_s: Option<f64>,
    /// Each head's effective loss weight.
    #[serde(default)]
    pub loss_weights: Vec<f32>,
    /// Mean training loss per head.
    #[serde(default)]
    pub train_head_losses: BTreeMap<String, f64>,
    /// Mean combined training loss (weighted as trained).
    #[serde(default)]
    pub train_loss: Option<f64>,
    /// Validation metrics (`n`, `age_mae`, `gender_acc`, …), when there was a split.
    #[serde(default)]
    pub val: Option<serde_json::Map<String, serde_json::Value>>,
    /// Validation loss (unweighted sum of the head losses).
    #[serde(default)]
    pub val_loss: Option<f64>,
    /// Seconds spent validating.
    #[serde(default)]
    pub val_seconds: Option<f64>,
}

/// Something that happened between epoch records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// One optimiser step (`--log-steps`).
    Step {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based step in the epoch.
        step: usize,
        /// Steps in all.
        global_step: u64,
        /// Learning rate of the step.
        lr: f64,
        /// Combined loss.
        loss: f32,
        /// Loss per head.
        head_losses: BTreeMap<String, f32>,
        /// Seconds since the epoch's (or the resumed part's) first step began, and of
        /// them, seconds spent building batches (decode-free: reading the cache, augmenting).
        elapsed_s: f64,
        data_s: f64,
    },
    /// Stopped by Ctrl-C after saving.
    Interrupted {
        /// 1-based epoch.
        epoch: usize,
        /// Steps done in it.
        step: usize,
    },
    /// Stopped at `--max-steps` after saving.
    MaxSteps {
        /// 1-based epoch.
        epoch: usize,
        /// Steps done in it.
        step: usize,
        /// Steps in all.
        global_step: u64,
    },
    /// An event this build does not know (a newer writer).
    #[serde(other)]
    Other,
}

/// Appends records to a run's log.
pub struct RunLog {
    path: PathBuf,
}

impl RunLog {
    /// The log of the run in folder `run`.
    pub fn new(run: &Path) -> Self {
        Self {
            path: run.join(FILE),
        }
    }

    /// Appends an epoch record.
    pub fn epoch(&self, record: &EpochRecord) -> Result<()> {
        self.append(record)
    }

    /// Appends an event.
    pub fn event(&self, event: &Event) -> Result<()> {
        self.append(event)
    }

    fn append(&self, record: &impl Serialize) -> Result<()> {
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        let line = serde_json::to_string(record)
            .map_err(|e| Error::Config(format!("cannot serialise a log record: {e}")))?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        writeln!(f, "{line}").map_err(io)
    }
}

/// One parsed line: the epoch record, or `None` for an event line (any line with an
/// `event` key, known or not).
pub fn parse_line(v: serde_json::Value) -> serde_json::Result<Option<EpochRecord>> {
    if v.get("event").is_some() {
        return Ok(None);
    }
    serde_json::from_value(v).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_events_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let log = RunLog::new(dir.path());
        let record = EpochRecord {
            best: true,
            data_seconds: Some(0.5),
            data_share: Some(0.1),
            epoch: 1,
            epoch_seconds: Some(5.0),
            img_per_s: Some(100.0),
            loss_weights: vec![1.0, 1.0],
            train_head_losses: [("age".to_string(), 0.5)].into(),
            train_loss: Some(1.5),
            val: serde_json::json!({"n": 10, "age_mae": 7.5})
                .as_object()
                .cloned(),
            val_loss: None,
            val_seconds: Some(0.2),
        };
        log.event(&Event::Interrupted { epoch: 1, step: 3 })
            .unwrap();
        log.epoch(&record).unwrap();
        log.event(&Event::MaxSteps {
            epoch: 2,
            step: 1,
            global_step: 9,
        })
        .unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], r#"{"event":"interrupted","epoch":1,"step":3}"#);
        assert!(
            lines[1].starts_with(r#"{"best":true,"data_seconds":0.5,"#),
            "{}",
            lines[1]
        );
        assert!(lines[1].contains(r#""val_loss":null"#), "{}", lines[1]);
        let parsed: Vec<Option<EpochRecord>> = lines
            .iter()
            .map(|l| parse_line(serde_json::from_str(l).unwrap()).unwrap())
            .collect();
        assert_eq!(parsed, [None, Some(record), None]);
        let unknown = serde_json::json!({"event": "something_new", "epoch": 4});
        assert_eq!(parse_line(unknown).unwrap(), None);
        assert!(parse_line(serde_json::json!({"loss": 1})).is_err());
    }
}
