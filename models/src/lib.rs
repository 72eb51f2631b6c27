//! The HydraNet contract: everything the training host and the edge runtime must agree on.
//!
//! This crate knows neither Candle nor tract. It holds the head specifications and their
//! labels ([`heads`], declared by a user in a heads file: [`heads_file`]), the one preprocessing function ([`preprocess`]), the decoding of raw
//! head outputs into typed predictions ([`decode`]), the versioned contract that travels in
//! an ONNX file's `metadata_props` ([`contract`]), temporal smoothing of live answers
//! ([`smooth`]), face detections decoded, cut into the crops the network was trained on and followed across
//! frames ([`detect`], [`crop`], [`track`]),
//! the values of ONNX tensors as both sides read them ([`tensor`]), data set
//! readers ([`dataset`]), the metrics both sides report ([`metrics`]) and the error type
//! ([`error`]).
//!
//! Without the default `std` feature the crate is `no_std` + `alloc`: the contract, head
//! specifications, output decoding, smoothing and the preprocessing *spec* (guide box,
//! regions, face crops) still build, for a microcontroller-class status display; the image functions,
//! data sets and metrics need `std`. The `defmt` feature derives `defmt::Format` on the
//! prediction types.
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

extern crate alloc;

/// The `alloc` names every module uses, so the same code builds with and without `std`.
mod prelude {
    pub use alloc::{
        format,
        string::{String, ToString},
        vec,
        vec::Vec,
    };
}

pub mod contract;
pub mod crop;
#[cfg(feature = "std")]
pub mod dataset;
pub mod decode;
pub mod detect;
pub mod error;
pub mod heads;
#[cfg(feature = "std")]
pub mod heads_file;
#[cfg(feature = "std")]
pub mod metrics;
pub mod preprocess;
pub mod smooth;
pub mod tensor;
pub mod track;

pub use contract::{Calibration, Contract, Quantization, CONTRACT_VERSION};
pub use decode::{HeadOutput, Prediction};
pub use error::{Error, Result};
pub use heads::{HeadKind, HeadSpec, Labeling};
pub use preprocess::{GuideBox, PreprocessSpec, Region};
