//! `edge-runtime`: runs an exported HydraNet ONNX file with tract.
//!
//! The file carries its contract in `metadata_props`; the runtime needs nothing else.
//! [`engine`] loads and runs it; [`stats`] holds the latency statistics `bench` prints.
mod dequant;
pub mod engine;
pub mod error;
#[cfg(feature = "kiosk")]
pub mod kiosk;
pub mod pipeline;
pub mod qconv;
pub mod source;
pub mod stats;
pub mod systemd;

pub use engine::{Engine, Int8Kernel, LoadOptions};
pub use error::{Error, Result};
