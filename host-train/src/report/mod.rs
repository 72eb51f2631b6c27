//! Model-card material (`host-train report`): training curves from a run's `log.jsonl`,
//! confusion matrices, a predicted-vs-true scatter (PNG, drawn with plotters and an
//! embedded font), and the fairness table with the goal checks (markdown and JSON).
//!
//! The metrics themselves come from [`models::metrics`] (the ones `eval` prints); this
//! module only arranges and draws them.
use std::path::PathBuf;

pub mod curves;
pub mod fairness;
pub mod plot;

/// Errors of the report module.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line of a training log is not what the trainer writes.
    #[error("{path}:{line}: {reason}")]
    Log {
        /// The log file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Drawing or encoding a plot failed.
    #[error("plot {path}: {reason}")]
    Plot {
        /// The PNG being written.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// Nothing to draw.
    #[error("{0}")]
    Empty(String),
}

/// Result alias of the report module.
pub type Result<T> = std::result::Result<T, ReportError>;
