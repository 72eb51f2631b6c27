//! Export to standard ONNX, with the contract in `metadata_props`.
pub mod flip;
pub mod graph;
pub mod import;
pub mod int8;
pub mod onnx;

pub use int8::{export_int8, export_int8_on, Int8Report, Int8Request};

pub use onnx::{
    export_checkpoint, hydranet_to_onnx, ExportOptions, QuantExport, QuantForm, IR_VERSION, OPSET,
};
