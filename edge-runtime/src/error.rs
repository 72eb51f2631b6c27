//! The library's error type. Every variant names the file it is about.
use std::path::PathBuf;

/// Errors of the edge runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read model {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The bytes are not an ONNX model.
    #[error("{path} is not an ONNX model (truncated or another format?): {reason}")]
    NotOnnx {
        /// The file.
        path: PathBuf,
        /// Decoder message.
        reason: String,
    },
    /// The ONNX model carries no usable HydraNet contract.
    #[error("{path} has no usable HydraNet contract: {source}")]
    Contract {
        /// The file.
        path: PathBuf,
        /// What the contract reader said.
        source: models::Error,
    },
    /// The ONNX graph does not match its contract.
    #[error("{path} is not a HydraNet: {reason}")]
    NotHydraNet {
        /// The file.
        path: PathBuf,
        /// The mismatch.
        reason: String,
    },
    /// tract could not load, optimise or run the model.
    #[error("tract failed on {path}: {reason}")]
    Tract {
        /// The file.
        path: PathBuf,
        /// tract's error chain.
        reason: String,
    },
    /// The ONNX file is not a face detector this build runs.
    #[error("{path} is not a BlazeFace face detector: {reason}")]
    NotDetector {
        /// The file.
        path: PathBuf,
        /// The mismatch.
        reason: String,
    },
    /// No detector was named and none is installed.
    #[error("no face detector found (looked for {looked}); run scripts/fetch-detector.sh or pass --detector FILE")]
    NoDetector {
        /// The paths tried.
        looked: String,
    },
    /// Options that cannot work.
    #[error("{0}")]
    Config(String),
    /// Input of the wrong size.
    #[error("input has {got} values, the model takes {expected} per batch")]
    InputSize {
        /// Expected length.
        expected: usize,
        /// Received length.
        got: usize,
    },
    /// Decoding outputs failed.
    #[error(transparent)]
    Decode(#[from] models::Error),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;
