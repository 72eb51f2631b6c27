//! The edge engine against the shared fixture's expected outputs (computed by Candle), and
//! the face detector against the detector fixture's (onnxruntime's answers,
//! tests/fixtures/detector-v1, written by tests/parity/tests/detector.rs). Needs only tract
//! and the fixture files (plus the fetched detector and the shared faces its scenes are
//! made of), so it also runs on aarch64 under QEMU, where onnxruntime does not.
use std::collections::BTreeMap;

use std::path::{Path, PathBuf};

use edge_runtime::{
    detect::{DetectBuffers, Detector},
    Engine,
};
use hydranet_fixture::{case_outputs, fixture_dir, max_abs_diff, Case, Fixture, FP32_TOLERANCE};
use hydranet_fixture::{detector_fixture_file, scenes::detector_scenes};
use models::decode::decode;
use models::detect::DetectConfig;

/// tract's own outputs on x86_64: what every other architecture is held to.
const X86_REFERENCE: &str = "tract-x86_64.json";
/// Largest difference allowed between tract on another CPU and tract on x86_64.
const CROSS_ARCH_TOLERANCE: f32 = 1e-5;

/// tract's outputs and labels for every fixture case.
fn tract_cases(fx: &Fixture) -> Vec<Case> {
    let engine = Engine::load(&fx.model_path(), 1).unwrap();
    let c = engine.contract().clone();
    fx.cases
        .iter()
        .zip(fx.inputs(&c).unwrap())
        .map(|(case, input)| {
            let raw: Vec<Vec<f32>> = engine
                .run_raw(&input)
                .unwrap()
                .into_iter()
                .map(|mut h| h.remove(0))
                .collect();
            let refs: Vec<&[f32]> = raw.iter().map(|r| r.as_slice()).collect();
            let (outputs, labels) = case_outputs(&c, &raw, &decode(&c.heads, &refs).unwrap());
            Case {
                outputs,
                labels,
                ..case.clone()
            }
        })
        .collect()
}

/// On x86_64 with `HYDRANET_WRITE_TRACT_REFERENCE=1`, rewrites the reference; everywhere
/// else (aarch64 gnu and musl under QEMU, and x86_64 itself) checks against it.
#[test]
fn tract_matches_its_x86_64_reference_on_this_cpu() {
    let fx = Fixture::load().unwrap();
    let got = tract_cases(&fx);
    let path = fixture_dir().join(X86_REFERENCE);
    let arch = std::env::consts::ARCH;
    if std::env::var_os("HYDRANET_WRITE_TRACT_REFERENCE").is_some() {
        assert_eq!(arch, "x86_64", "the reference is tract on x86_64");
        let reference = Fixture {
            produced_by: "edge-runtime tests/fixture.rs with HYDRANET_WRITE_TRACT_REFERENCE=1 \
                          (tract-onnx 0.23.9, x86_64)"
                .into(),
            cases: got,
            ..fx
        };
        let json = serde_json::to_string_pretty(&reference).unwrap();
        std::fs::write(&path, json + "\n").unwrap();
        eprintln!("wrote {}", path.display());
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reference: Fixture = serde_json::from_str(&text).unwrap();
    assert_eq!(reference.cases.len(), got.len(), "{}", path.display());
    let mut worst = 0.0f32;
    let mut same_labels = 0;
    for (want, case) in reference.cases.iter().zip(&got) {
        assert_eq!(want.name, case.name);
        let d = max_abs_diff(&want.outputs, &case.outputs);
        let w = d.values().copied().fold(0.0, f32::max);
        assert!(w <= CROSS_ARCH_TOLERANCE, "{}: {d:?}", case.name);
        assert_eq!(want.labels, case.labels, "{}", case.name);
        same_labels += 1;
        worst = worst.max(w);
    }
    eprintln!(
        "tract {arch} ({}) vs tract x86_64: max abs diff {worst:e}, labels identical on {same_labels}/{} cases",
        if cfg!(target_env = "musl") { "musl" } else { "gnu" },
        got.len()
    );
}

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

fn detector(name: &str) -> PathBuf {
    let dir = std::env::var_os("HYDRANET_DETECTOR_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/blazeface"));
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "{} not found: run scripts/fetch-detector.sh",
        p.display()
    );
    p
}

#[test]
fn tract_matches_onnxruntime_on_the_detector_fixture() {
    let text = std::fs::read_to_string(detector_fixture_file()).expect("detector fixture");
    let fixture: serde_json::Value = serde_json::from_str(&text).expect("fixture json");
    let scenes = detector_scenes().expect("the shared faces");
    let models = fixture["models"].as_object().expect("models");
    assert_eq!(models.len(), 2);
    for (name, rows) in models {
        let det = Detector::load(&detector(name), DetectConfig::default()).unwrap();
        let mut buf = DetectBuffers::default();
        let mut worst = 0f32;
        for ((scene, frame), row) in scenes.iter().zip(rows.as_array().expect("rows")) {
            assert_eq!(row["scene"], *scene);
            let fit = det.prepare(frame.as_raw(), 640, 480, &mut buf).unwrap();
            let (scores, boxes) = det.run_raw(buf.input()).unwrap();
            let want = row["scores"].as_array().expect("scores");
            assert_eq!(scores.len(), want.len());
            for (a, b) in scores.iter().zip(want) {
                worst = worst.max((a - b.as_f64().unwrap() as f32).abs());
            }
            let faces = det.decode(&scores, &boxes, &fit).unwrap();
            let judged = row["faces"].as_array().expect("faces");
            assert_eq!(faces.len(), judged.len(), "{name} {scene}: {faces:?}");
            for (f, g) in faces.iter().zip(judged) {
                let gx = g["bbox"]["x"].as_f64().unwrap() as f32;
                let gw = g["bbox"]["w"].as_f64().unwrap() as f32;
                let d = (f.bbox.x - gx).abs().max((f.bbox.w - gw).abs());
                assert!(d < 1.0, "{name} {scene}: boxes differ by {d} px");
            }
        }
        println!(
            "{name} on {}: tract vs onnxruntime (fixture), worst score difference {worst:.2e}",
            std::env::consts::ARCH
        );
        assert!(worst < 1e-2, "{name}: {worst}");
    }
}
