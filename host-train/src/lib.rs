//! `host-train`: trains the HydraNet with Candle on the host and exports it.
//!
//! The binary's subcommands live in `cli/`; this library holds what they and the
//! cross-crate tests share, lowest first:
//! - [`error`], [`device`] (CPU or CUDA), [`files`] (atomic writes, portable names),
//!   [`names`] (the checkpoint's tensor names);
//! - [`kernels`]: the fast CPU convolution, BatchNorm and AdamW kernels;
//! - [`data`]: decoding, caching, augmentation and batching of the images; [`synth`]: the
//!   synthetic face set;
//! - [`net`]: the networks (one file each) and the pretrained-weight loader;
//! - [`quant`]: int8 number formats and calibration (no files);
//! - [`train`]: the training loop and its parts, checkpoints, fine-tuning, averaging;
//! - [`export`]: ONNX export (fp32 and int8) and its import back into Candle;
//! - [`score`]: a network and one split of the data, loaded for scoring;
//! - [`report`]: model-card material (curves, plots, fairness).
pub mod data;
pub mod device;
pub mod error;
pub mod export;
pub mod files;
pub mod kernels;
pub mod names;
pub mod net;
pub mod quant;
pub mod report;
pub mod score;
pub mod synth;
pub mod train;

pub use error::{Error, Result};
