//! `host-train`: trains the HydraNet with Candle on the host and exports it.
//!
//! The binary's subcommands live in `cli/`; this library holds what they and the
//! cross-crate tests share: the input pipeline ([`data`]), the networks ([`net`]), the
//! training loop and its parts ([`train`]), the synthetic data set ([`synth`]).
pub mod data;
pub mod device;
pub mod error;
pub mod export;
pub mod kernels;
pub mod net;
pub mod quant;
pub mod report;
pub mod synth;
pub mod train;

pub use error::{Error, Result};
