//! The library's error type.
use std::path::PathBuf;

/// Errors of `host-train`'s library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Candle operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The contract crate refused something.
    #[error(transparent)]
    Contract(#[from] models::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A checkpoint is unreadable, truncated or from something else.
    #[error("checkpoint {path} is unusable: {reason}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A setting makes no sense.
    #[error("{0}")]
    Config(String),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;
