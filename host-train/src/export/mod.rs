//! Export to standard ONNX, with the contract in `metadata_props`.
pub mod flip;
pub mod graph;
pub mod onnx;

pub mod import;

pub use onnx::{
    export_checkpoint, hydranet_to_onnx, ExportOptions, QuantExport, QuantForm, IR_VERSION, OPSET,
};
