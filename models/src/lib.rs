//! The HydraNet contract: everything the training host and the edge runtime must agree on.
//!
//! This crate knows neither Candle nor tract. It holds the head specifications and their
//! labels ([`heads`]), the one preprocessing function ([`preprocess`]), the decoding of raw
//! head outputs into typed predictions ([`decode`]), the versioned contract that travels in
//! an ONNX file's `metadata_props` ([`contract`]), data set readers ([`dataset`]) and the
//! metrics both sides report ([`metrics`]).
#![warn(missing_docs)]

pub mod contract;
pub mod dataset;
pub mod decode;
pub mod error;
pub mod heads;
pub mod metrics;
pub mod preprocess;
pub mod smooth;

pub use contract::{Calibration, Contract, Quantization, CONTRACT_VERSION};
pub use decode::{HeadOutput, Prediction};
pub use error::{Error, Result};
pub use heads::{HeadKind, HeadSpec};
pub use preprocess::{GuideBox, PreprocessSpec, Region};
