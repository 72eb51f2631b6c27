//! Integer convolutions for QDQ int8 files: the edge runtime's own op inside tract.
//!
//! tract 0.23 runs the standard int8 forms slower than fp32 on x86 (docs/measurements.md,
//! section "int8": 2.3x slower than its own fp32 on a QDQ file); this module keeps the
//! file standard ONNX (onnxruntime runs the same file) and changes only how tract
//! executes it: [`rewrite`] fuses each
//! quantize → dequantize → convolution (→ relu) chain into one node before tract parses
//! the graph, [`op`] is that node in tract, [`kernel`] the arithmetic around the inner
//! loop, [`grid`] the uint8 grid's rounding, [`epilogue`] the int32 sums to NCHW floats, [`tile`] the inner loop itself, one per instruction set ([`vnni`] and [`avx2`] on x86,
//! [`arm64`]'s `sdot` and `smull` on the boards).
#[cfg(target_arch = "aarch64")]
pub mod arm64;
#[cfg(target_arch = "x86_64")]
pub mod avx2;
pub mod epilogue;
pub mod grid;
pub mod kernel;
mod op;
mod rewrite;
pub mod tile;
#[cfg(target_arch = "x86_64")]
pub mod vnni;

pub use op::register;
pub use rewrite::{fuse_qdq, Fused};
pub use tile::Tile;
