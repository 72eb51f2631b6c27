//! The edge engine against the shared fixture's expected outputs (computed by Candle).
//! Needs only tract and the fixture files, so it also runs on aarch64 under QEMU.
use std::collections::BTreeMap;

use edge_runtime::Engine;
use hydranet_fixture::{case_outputs, max_abs_diff, Fixture, FP32_TOLERANCE};
use models::decode::decode;

#[test]
fn tract_reproduces_the_fixture_outputs_and_labels() {
    let fx = Fixture::load().unwrap();
    let engine = Engine::load(&fx.model_path(), 1).unwrap();
    let c = engine.contract().clone();
    let mut worst = 0.0f32;
    for (case, input) in fx.cases.iter().zip(fx.inputs(&c).unwrap()) {
        let raw: Vec<Vec<f32>> = engine
            .run_raw(&input)
            .unwrap()
            .into_iter()
            .map(|mut h| h.remove(0))
            .collect();
        let refs: Vec<&[f32]> = raw.iter().map(|r| r.as_slice()).collect();
        let (outputs, labels) = case_outputs(&c, &raw, &decode(&c.heads, &refs).unwrap());
        let d: BTreeMap<String, f32> = max_abs_diff(&case.outputs, &outputs);
        let w = d.values().copied().fold(0.0, f32::max);
        assert!(w <= FP32_TOLERANCE, "{}: {d:?}", case.name);
        assert_eq!(labels, case.labels, "{}", case.name);
        worst = worst.max(w);
    }
    eprintln!(
        "tract vs fixture (candle): max abs diff {worst:e} on {} cases ({})",
        fx.cases.len(),
        std::env::consts::ARCH
    );
}

#[test]
fn batched_runs_match_single_runs() {
    let fx = Fixture::load().unwrap();
    let one = Engine::load(&fx.model_path(), 1).unwrap();
    let four = Engine::load(&fx.model_path(), 4).unwrap();
    let images: Vec<_> = fx.cases.iter().map(|c| c.source.image().unwrap()).collect();
    let a = one.predict(&images).unwrap();
    let b = four.predict(&images).unwrap();
    assert_eq!(a.len(), images.len());
    for (x, y) in a.iter().zip(&b) {
        for ((_, p), (_, q)) in x.heads.iter().zip(&y.heads) {
            let (pp, qq) = (p.class_probs(), q.class_probs());
            assert!(pp.iter().zip(&qq).all(|(u, v)| (u - v).abs() < 1e-5));
            assert!((p.value().unwrap_or(0.0) - q.value().unwrap_or(0.0)).abs() < 1e-3);
        }
    }
}
