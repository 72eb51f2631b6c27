//! The edge binary must not pull in Candle (or anything of the training side).
use std::process::Command;

#[test]
fn edge_runtime_does_not_depend_on_candle() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "edge-runtime",
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        tree.lines().any(|l| l.starts_with("tract-onnx ")),
        "tract-onnx not in the tree?\n{tree}"
    );
    for banned in ["candle-core", "candle-nn", "host-train", "gemm "] {
        assert!(
            !tree.lines().any(|l| l.starts_with(banned)),
            "edge-runtime depends on {banned}"
        );
    }
}
