//! Fast CPU kernels behind Candle's custom-op interface, so the model code stays plain
//! Candle and Candle's own path stays one flag away (`--kernels candle`) for side-by-side
//! measurement.
//!
//! Why our own: Candle 0.11 computes a convolution's input gradient with a direct
//! `conv_transpose2d` loop and its weight gradient as a convolution whose kernel is the
//! whole feature map; both are several times slower than the forward pass (profile in
//! docs/measurements.md). Here all three are im2col/col2im + one packed GEMM (the `gemm`
//! crate Candle itself uses), with rayon across the images of a batch.
pub mod adamw;
pub mod batchnorm;
pub mod conv;
mod matmul;

use serde::{Deserialize, Serialize};

/// Which implementation runs the convolutions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kernels {
    /// Candle's built-in ops.
    Candle,
    /// This module's im2col + GEMM convolutions (CPU; other devices use Candle's).
    #[default]
    Fast,
}

impl std::fmt::Display for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kernels::Candle => "candle",
            Kernels::Fast => "fast",
        })
    }
}
