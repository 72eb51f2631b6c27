//! tract against onnxruntime, the independent judge that the file is standard ONNX.
mod common;

use edge_runtime::Engine;
use host_train::export::{export_checkpoint, ExportOptions};
use hydranet_fixture::{Fixture, FP32_TOLERANCE};
use parity::onnxruntime_outputs;

fn check(model: &std::path::Path) -> f32 {
    let fx = Fixture::load().unwrap();
    let engine = Engine::load(model, 1).unwrap();
    let contract = engine.contract().clone();
    let inputs = fx.inputs(&contract).unwrap();
    let ort = onnxruntime_outputs(model, &inputs, contract.preprocess.input_shape(1));
    assert_eq!(ort["checker"], "ok");
    assert_eq!(ort["ir_version"], 8);
    assert_eq!(ort["metadata"]["hydranet.contract_version"], "1");
    let mut worst = 0.0f32;
    for (i, (case, input)) in fx.cases.iter().zip(&inputs).enumerate() {
        let tract = engine.run_raw(input).unwrap();
        for (h, head) in contract.heads.iter().enumerate() {
            let single: Vec<f32> =
                serde_json::from_value(ort["outputs"][&head.name][i].clone()).unwrap();
            let batched: Vec<f32> =
                serde_json::from_value(ort["batched"][&head.name][i].clone()).unwrap();
            for ((t, o), b) in tract[h][0].iter().zip(&single).zip(&batched) {
                let d = (t - o).abs().max((t - b).abs());
                assert!(
                    d <= FP32_TOLERANCE,
                    "{} head {}: tract {t} vs onnxruntime {o} / batched {b}",
                    case.name,
                    head.name
                );
                worst = worst.max(d);
            }
        }
    }
    worst
}

#[test]
fn onnxruntime_accepts_the_file_and_agrees_with_tract() {
    let fx = Fixture::load().unwrap();
    let w = check(&fx.model_path());
    eprintln!("tract vs onnxruntime, BatchNorm folded: max abs diff {w:e}");
}

#[test]
fn onnxruntime_agrees_with_batchnorm_kept() {
    let fx = Fixture::load().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("kept.onnx");
    export_checkpoint(
        &fx.checkpoint_path(),
        &p,
        &ExportOptions {
            fold_batchnorm: false,
            ..Default::default()
        },
    )
    .unwrap();
    let w = check(&p);
    eprintln!("tract vs onnxruntime, BatchNorm kept: max abs diff {w:e}");
}

#[test]
fn onnxruntime_agrees_with_test_time_flip() {
    let fx = Fixture::load().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("flip.onnx");
    export_checkpoint(
        &fx.checkpoint_path(),
        &p,
        &ExportOptions {
            test_time_flip: true,
            ..Default::default()
        },
    )
    .unwrap();
    let w = check(&p);
    eprintln!("tract vs onnxruntime, test-time flip (single and batched): max abs diff {w:e}");
}
