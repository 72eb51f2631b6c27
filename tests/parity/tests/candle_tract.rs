//! Host (Candle) against edge (tract) on the shared fixture.
mod common;

use std::{collections::BTreeMap, path::Path};

use candle_core::Device;
use common::{by_head, candle_raw, tract_raw, worst};
use edge_runtime::Engine;
use host_train::{
    data::ImageCache,
    export::{export_checkpoint, ExportOptions},
    train::{evaluate::evaluate, setup::load_for_inference},
};
use hydranet_fixture::{case_outputs, max_abs_diff, Fixture, FP32_TOLERANCE};
use models::{
    dataset::{load_image, scan_utkface_dir},
    decode::decode,
    metrics::Evaluator,
};

fn compare_tract_with_candle(model: &Path) -> f32 {
    let fx = Fixture::load().unwrap();
    let (net, _vm, ck) = load_for_inference(&fx.checkpoint_path(), &Device::Cpu).unwrap();
    let engine = Engine::load(model, 1).unwrap();
    assert_eq!(
        engine.contract(),
        &ck.contract,
        "the ONNX file's contract differs from the checkpoint's"
    );
    let inputs = fx.inputs(&ck.contract).unwrap();
    let mut worst_all = 0.0f32;
    for (case, input) in fx.cases.iter().zip(&inputs) {
        let candle = candle_raw(&net, &ck.contract, input);
        let tract = tract_raw(&engine, input);
        let d = max_abs_diff(
            &by_head(&ck.contract, &candle),
            &by_head(&ck.contract, &tract),
        );
        let refs: Vec<&[f32]> = tract.iter().map(|r| r.as_slice()).collect();
        let (_, tract_labels) = case_outputs(
            &ck.contract,
            &tract,
            &decode(&ck.contract.heads, &refs).unwrap(),
        );
        assert_eq!(tract_labels, case.labels, "{}: labels differ", case.name);
        assert!(
            worst(&d) <= FP32_TOLERANCE,
            "{}: candle vs tract {d:?}",
            case.name
        );
        // Candle today against Candle when the fixture was made: catches drift in either.
        let drift = max_abs_diff(&case.outputs, &by_head(&ck.contract, &candle));
        assert!(
            worst(&drift) <= 1e-5,
            "{}: candle drifted from the fixture {drift:?}",
            case.name
        );
        worst_all = worst_all.max(worst(&d));
    }
    worst_all
}

#[test]
fn tract_matches_candle_on_every_fixture_case() {
    let fx = Fixture::load().unwrap();
    let w = compare_tract_with_candle(&fx.model_path());
    eprintln!(
        "candle vs tract, BatchNorm folded: max abs diff {w:e} over {} cases",
        fx.cases.len()
    );
}

#[test]
fn tract_matches_candle_with_batchnorm_kept() {
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
    let w = compare_tract_with_candle(&p);
    eprintln!("candle vs tract, BatchNorm kept: max abs diff {w:e}");
}

#[test]
fn the_committed_model_is_the_export_of_the_committed_checkpoint() {
    let fx = Fixture::load().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("again.onnx");
    export_checkpoint(&fx.checkpoint_path(), &p, &ExportOptions::default()).unwrap();
    assert_eq!(
        std::fs::read(&p).unwrap(),
        std::fs::read(fx.model_path()).unwrap(),
        "export is not reproducible"
    );
}

#[test]
fn host_and_edge_eval_give_the_same_metrics() {
    let fx = Fixture::load().unwrap();
    let data = tempfile::tempdir().unwrap();
    host_train::synth::generate(data.path(), 40, 64, 21).unwrap();
    let (net, _vm, ck) = load_for_inference(&fx.checkpoint_path(), &Device::Cpu).unwrap();
    let scan = scan_utkface_dir(data.path(), &ck.contract.heads).unwrap();
    let cache = ImageCache::build(&scan.samples, &ck.contract.preprocess, None);
    let host = evaluate(&net, &cache, &ck.contract.heads, 16, &Device::Cpu)
        .unwrap()
        .report
        .to_json();

    let engine = Engine::load(&fx.model_path(), 8).unwrap();
    let images: Vec<_> = scan
        .samples
        .iter()
        .map(|s| load_image(&s.path).unwrap())
        .collect();
    let mut ev = Evaluator::new(&ck.contract.heads);
    for (p, s) in engine.predict(&images).unwrap().iter().zip(&scan.samples) {
        ev.add(&s.targets, p);
    }
    let edge = ev.report().to_json();
    assert_eq!(host["n"], edge["n"]);
    let keys: BTreeMap<_, _> = host
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v.is_f64())
        .collect();
    assert!(keys.len() >= 4, "{host}");
    for (k, v) in keys {
        let (a, b) = (v.as_f64().unwrap(), edge[k].as_f64().unwrap());
        assert!((a - b).abs() < 1e-4, "{k}: host {a} vs edge {b}");
    }
    assert_eq!(
        host["groups"]["ethnicity"].as_array().unwrap().len(),
        edge["groups"]["ethnicity"].as_array().unwrap().len()
    );
}

/// `export --test-time-flip`: the graph averages image and mirror; tract (batch 1 and 3),
/// Candle's flip forward, and Candle's import of the file all give the same numbers.
#[test]
fn test_time_flip_export_matches_candle_flip_forward() {
    let fx = Fixture::load().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("flip.onnx");
    let contract = export_checkpoint(
        &fx.checkpoint_path(),
        &p,
        &ExportOptions {
            test_time_flip: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(contract.test_time_flip);
    let (net, _vm, ck) = load_for_inference(&fx.checkpoint_path(), &Device::Cpu).unwrap();
    let plain = net;
    let (flip_net, _vm, _) = load_for_inference(&fx.checkpoint_path(), &Device::Cpu).unwrap();
    let flip_net = flip_net.with_test_time_flip(true);
    let engine = Engine::load(&p, 1).unwrap();
    assert!(engine.contract().test_time_flip, "the contract says so");
    let imported = host_train::export::import::load_onnx(&p, &Device::Cpu).unwrap();
    assert!(imported.net.test_time_flip());
    let inputs = fx.inputs(&ck.contract).unwrap();
    let mut worst_all = 0.0f32;
    let mut changed = 0;
    for (case, input) in fx.cases.iter().zip(&inputs) {
        let candle = candle_raw(&flip_net, &ck.contract, input);
        let tract = tract_raw(&engine, input);
        let d = max_abs_diff(
            &by_head(&ck.contract, &candle),
            &by_head(&ck.contract, &tract),
        );
        assert!(worst(&d) <= FP32_TOLERANCE, "{}: {d:?}", case.name);
        let back = candle_raw(&imported.net, &ck.contract, input);
        let d2 = max_abs_diff(
            &by_head(&ck.contract, &candle),
            &by_head(&ck.contract, &back),
        );
        assert!(worst(&d2) <= FP32_TOLERANCE, "{}: import {d2:?}", case.name);
        let p = candle_raw(&plain, &ck.contract, input);
        let moved = max_abs_diff(&by_head(&ck.contract, &p), &by_head(&ck.contract, &tract));
        changed += usize::from(worst(&moved) > 1e-4);
        worst_all = worst_all.max(worst(&d));
    }
    assert!(changed > 0, "the flip never changed an output");

    // A batch keeps each image with its own mirror.
    let batched = Engine::load(&p, 3).unwrap();
    let flat: Vec<f32> = inputs[..3].concat();
    let out = batched.run_raw(&flat).unwrap();
    for (i, input) in inputs[..3].iter().enumerate() {
        let single = engine.run_raw(input).unwrap();
        for h in 0..out.len() {
            for (a, b) in out[h][i].iter().zip(&single[h][0]) {
                assert!(
                    (a - b).abs() <= FP32_TOLERANCE,
                    "image {i} head {h}: {a} vs {b}"
                );
            }
        }
    }
    eprintln!(
        "candle vs tract, test-time flip: max abs diff {worst_all:e}; {changed}/{} cases moved",
        fx.cases.len()
    );
}
