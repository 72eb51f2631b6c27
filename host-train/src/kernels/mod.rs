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
pub mod pool;

use std::mem::MaybeUninit;

use candle_core::{backend::BackendStorage, bail, CpuStorage, Layout, Result};
use serde::{Deserialize, Serialize};

/// The contiguous f32 data a custom op reads; `op` and `what` name it in errors.
fn f32_data<'a>(s: &'a CpuStorage, l: &Layout, op: &str, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        bail!("{op}: {what} must be f32, got {:?}", s.dtype());
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("{op}: {what} must be contiguous"),
    }
}

/// As [`f32_data`], for the buffer an in-place op writes.
fn f32_data_mut<'a>(
    s: &'a mut CpuStorage,
    l: &Layout,
    op: &str,
    what: &str,
) -> Result<&'a mut [f32]> {
    let dtype = s.dtype();
    let CpuStorage::F32(v) = s else {
        bail!("{op}: {what} must be f32, got {dtype:?}");
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&mut v[a..b]),
        None => bail!("{op}: {what} must be contiguous"),
    }
}

/// A new buffer of `len` floats written by `init`, without zeroing it first: the large
/// im2row and product buffers are overwritten anyway, and zeroing them cost a pass over
/// memory per op (about 6 % of a training step in the profile).
///
/// # Safety
/// `init` must write every element.
unsafe fn filled(len: usize, init: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    init(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: the caller guarantees `init` initialised all `len` elements.
    unsafe { v.set_len(len) };
    v
}

/// Largest absolute element-wise difference of two same-shaped tensors (kernel tests).
#[cfg(test)]
fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar())
        .expect("same-shaped f32 tensors")
}

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
