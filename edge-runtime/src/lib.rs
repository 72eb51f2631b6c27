//! `edge-runtime`: runs an exported HydraNet ONNX file with tract.
//!
//! The file carries its contract in `metadata_props`; the runtime needs nothing else.
//!
//! - [`engine`]: loads the file (load-time graph rewrites included) and runs it;
//! - [`detect`]: the face detector (BlazeFace) that finds the faces the engine reads;
//! - [`faces`]: detector + crop rule + cap: a frame's faces as one network batch;
//! - [`qconv`]: the integer convolution that the engine fuses QDQ chains into;
//! - [`maxpool`], [`depthwise`], [`pointwise`]: max pooling, depthwise and 1x1 float
//!   convolution on the edge runtime's own loops (tract's were slow);
//! - `dequant` (private): constant `DequantizeLinear`s folded into float weights at load;
//! - [`source`]: frame sources (V4L2 cameras, image folders and sequences, a test pattern);
//! - [`pipeline`]: capture thread → per-frame inference (guide box, or faces and their
//!   tracks) → smoothing → a sink;
//! - [`kiosk`] (feature `kiosk`): the camera kiosk's HTTP server, page and metrics;
//! - [`systemd`]: READY and watchdog notifications;
//! - [`stats`]: the latency statistics `bench` prints;
//! - [`error`]: the error type.
pub mod depthwise;
mod dequant;
pub mod detect;
pub mod engine;
pub mod error;
pub mod faces;
#[cfg(feature = "kiosk")]
pub mod kiosk;
pub mod maxpool;
mod nchw_op;
pub mod pipeline;
pub mod pointwise;
pub mod qconv;
pub mod source;
pub mod stats;
pub mod systemd;

pub use engine::{Engine, Int8Kernel, LoadOptions};
pub use error::{Error, Result};
