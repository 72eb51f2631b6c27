//! Integer convolutions for QDQ int8 files: the edge runtime's own op inside tract.
//!
//! tract 0.23 runs the standard int8 forms slower than fp32 on x86 (docs/measurements.md,
//! section "int8": 2.3x slower than its own fp32 on a QDQ file); this module keeps the
//! file standard ONNX (onnxruntime runs the same file) and changes only how tract
//! executes it: [`rewrite`] fuses each
//! quantize → dequantize → convolution (→ relu) chain into one node before tract parses
//! the graph, [`op`] is that node in tract, [`kernel`] the arithmetic.
pub mod kernel;
mod op;
mod rewrite;

pub use op::register;
pub use rewrite::{fuse_qdq, Fused};
