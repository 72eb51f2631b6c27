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
pub mod source;
pub mod stats;
pub mod systemd;

pub use engine::Engine;
pub use error::{Error, Result};
