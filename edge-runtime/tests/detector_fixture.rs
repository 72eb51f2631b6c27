//! tract's BlazeFace against onnxruntime's answers in the committed detector fixture
//! (tests/fixtures/detector-v1, written by tests/parity/tests/detector.rs): raw scores and
//! decoded faces. Runs natively and on aarch64 under QEMU (scripts/test.sh), where
//! onnxruntime itself does not run. Needs the fetched detector (scripts/fetch-detector.sh)
//! and the shared UTKFace faces the scenes are made of.
use std::path::{Path, PathBuf};

use edge_runtime::detect::{DetectBuffers, Detector};
use hydranet_fixture::{detector_fixture_file, scenes::detector_scenes};
use models::detect::DetectConfig;

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
