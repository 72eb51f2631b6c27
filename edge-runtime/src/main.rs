//! `edge-runtime`: will run an exported HydraNet ONNX file with tract on the board.
//!
//! Not built yet: the export + edge-runtime issue fills this crate (tract engine, `predict`,
//! `eval`, `bench`). Until then it only reports which contract version it will read.
use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "edge-runtime {}: not implemented yet (reads HydraNet contract version {} once the ONNX runtime lands)",
        env!("CARGO_PKG_VERSION"),
        models::CONTRACT_VERSION
    );
    ExitCode::from(2)
}
