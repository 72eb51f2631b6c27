//! The crate's one error type.
#[cfg(feature = "std")]
use std::path::PathBuf;

use crate::prelude::*;

/// Everything that can go wrong in the contract crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A metadata map lacks a key the contract needs.
    #[error("model metadata has no `{0}` entry: this file carries no HydraNet contract")]
    MissingKey(String),
    /// The contract was written by a format version this build does not read.
    #[error("contract version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion {
        /// Version found in the metadata.
        found: String,
        /// Version this build reads.
        supported: u32,
    },
    /// A metadata value does not parse.
    #[error("metadata entry `{key}` is malformed: {reason}")]
    BadMetadata {
        /// Metadata key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A contract is internally inconsistent.
    #[error("invalid contract: {0}")]
    InvalidContract(String),
    /// Raw outputs do not match the heads.
    #[error("head `{head}` expects {expected} output values, got {got}")]
    OutputShape {
        /// Head name.
        head: String,
        /// Expected width.
        expected: usize,
        /// Received width.
        got: usize,
    },
    /// A file or folder could not be read.
    #[cfg(feature = "std")]
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An image could not be decoded.
    #[cfg(feature = "std")]
    #[error("cannot decode image {path}: {reason}")]
    Image {
        /// The path.
        path: PathBuf,
        /// The cause.
        reason: String,
    },
    /// A manifest row is wrong.
    #[cfg(feature = "std")]
    #[error("manifest {path}, line {line}: {reason}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A heads file is wrong.
    #[cfg(feature = "std")]
    #[error("heads file {path}, line {line}, column {column}: {reason}")]
    HeadsFile {
        /// The heads file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// What is wrong.
        reason: String,
    },
    /// A head has no labelled sample in the data.
    #[cfg(feature = "std")]
    #[error("head `{head}` has no labelled sample in {data}: {reason}")]
    NoLabels {
        /// The head.
        head: String,
        /// The data source(s).
        data: String,
        /// Why (no such column, every cell empty, ...).
        reason: String,
    },
    /// A data source held no usable sample.
    #[cfg(feature = "std")]
    #[error("no usable samples in {path} ({rejected} rejected){details}")]
    NoSamples {
        /// The folder or manifest.
        path: PathBuf,
        /// How many entries were rejected.
        rejected: usize,
        /// The first rejected entries and why, one per line.
        details: String,
    },
    /// A buffer has the wrong size.
    #[error("buffer size mismatch: expected {expected}, got {got}")]
    BufferSize {
        /// Expected length.
        expected: usize,
        /// Actual length.
        got: usize,
    },
}

/// Result alias of this crate.
pub type Result<T> = core::result::Result<T, Error>;
