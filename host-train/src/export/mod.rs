//! Export to standard ONNX, with the contract in `metadata_props`.
pub mod graph;
pub mod onnx;

pub use onnx::{export_checkpoint, hydranet_to_onnx, ExportOptions, IR_VERSION, OPSET};
