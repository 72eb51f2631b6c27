//! Helpers for the parity tests: running the Python judge (onnxruntime).
use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The Python with `onnx` and `onnxruntime` that `scripts/test.sh` installs
/// (`HYDRANET_PYTHON` overrides).
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("HYDRANET_PYTHON") {
        return p.into();
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache/hydranet-edge/venv/bin/python")
}

/// Runs `tests/parity/ort_run.py` on any model (the face detector) with `inputs` of
/// `shape`, one case at a time. Returns `{"outputs": {name: [[..] per case]}}`.
pub fn onnxruntime_run(model: &Path, inputs: &[Vec<f32>], shape: &[usize]) -> serde_json::Value {
    judge("ort_run.py", model, inputs, shape)
}

/// Runs `tests/parity/ort_check.py` on `model` with `inputs` (one flat input per case).
/// Returns its JSON answer: `{"outputs": {head: [[..] per case]}, "batched": {...},
/// "metadata": {...}, "checker": "ok"}`.
pub fn onnxruntime_outputs(
    model: &Path,
    inputs: &[Vec<f32>],
    shape: [usize; 4],
) -> serde_json::Value {
    judge("ort_check.py", model, inputs, &shape)
}

fn judge(script: &str, model: &Path, inputs: &[Vec<f32>], shape: &[usize]) -> serde_json::Value {
    let py = python();
    assert!(
        py.exists(),
        "{} not found: run scripts/test.sh (it installs onnx and onnxruntime in a venv) or set HYDRANET_PYTHON",
        py.display()
    );
    let dir = tempfile_dir();
    let inp = dir.join("inputs.json");
    let out = dir.join("outputs.json");
    std::fs::write(
        &inp,
        serde_json::json!({"shape": shape, "inputs": inputs}).to_string(),
    )
    .unwrap();
    let script_path = Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    let status = Command::new(&py)
        .arg(&script_path)
        .arg(model)
        .arg(&inp)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{script} failed on {}:\n{}{}",
        model.display(),
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
    let v = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    v
}

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "hydranet-ort-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}
