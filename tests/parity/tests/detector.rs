//! The face detector (MediaPipe BlazeFace, fetched by `scripts/fetch-detector.sh`) on tract
//! against onnxruntime, on scenes made of real UTKFace faces pasted on a plain background:
//! the raw outputs agree, the decoded faces agree, and each pasted face is found.
use std::path::{Path, PathBuf};

use edge_runtime::{
    detect::{fill_constant_of_shape, DetectBuffers, Detector},
    Error,
};
use hydranet_fixture::utkface_dir;
use image::{imageops, Rgb, RgbImage};
use models::detect::{DetectConfig, Face};
use parity::onnxruntime_run;
use prost::Message;
use tract_onnx::prelude::*;

const FRONT: &str = "face_detection_front_128x128_barracuda.onnx";
const BACK: &str = "face_detection_back_256x256_barracuda.onnx";

/// The fetched detector files. Tests that need them fail with this message rather than
/// pass without looking.
fn detector(name: &str) -> PathBuf {
    let dir = std::env::var_os("HYDRANET_DETECTOR_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/blazeface"));
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "{} not found: run scripts/fetch-detector.sh (scripts/test.sh does)",
        p.display()
    );
    p
}

/// A gray `w x h` frame with the first UTKFace faces (by sorted name) pasted as squares
/// of `size` at each of `at`. Returns the frame and the pasted squares.
fn scene(w: u32, h: u32, at: &[(u32, u32, u32)]) -> (RgbImage, Vec<[f32; 4]>) {
    let mut names: Vec<PathBuf> = std::fs::read_dir(utkface_dir())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".jpg.chip.jpg"))
        .collect();
    names.sort();
    let mut frame = RgbImage::from_pixel(w, h, Rgb([110, 120, 115]));
    let mut squares = Vec::new();
    for (i, &(x, y, size)) in at.iter().enumerate() {
        let face = image::open(&names[i * 37]).unwrap().to_rgb8();
        let face = imageops::resize(&face, size, size, imageops::FilterType::Triangle);
        imageops::overlay(&mut frame, &face, x as i64, y as i64);
        squares.push([x as f32, y as f32, size as f32, size as f32]);
    }
    (frame, squares)
}

fn inside(f: &Face, sq: &[f32; 4]) -> bool {
    let [cx, cy] = f.bbox.center();
    cx > sq[0] && cx < sq[0] + sq[2] && cy > sq[1] && cy < sq[1] + sq[3]
}

/// onnxruntime's scores and boxes for input `i`, in anchor order (fine layer, then coarse).
fn ort_outputs(ort: &serde_json::Value, i: usize) -> (Vec<f32>, Vec<f32>) {
    let out = |n: &str| -> Vec<f32> {
        ort["outputs"][n][i]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect()
    };
    let mut scores = out("Identity:0");
    scores.extend(out("Identity_1:0"));
    let mut boxes = out("Identity_2:0");
    boxes.extend(out("Identity_3:0"));
    (scores, boxes)
}

#[test]
fn tract_loads_blazeface_only_with_the_constant_of_shape_default() {
    for (name, nodes) in [(FRONT, 11), (BACK, 2)] {
        let path = detector(name);
        let bytes = std::fs::read(&path).unwrap();
        let mut proto = tract_onnx::pb::ModelProto::decode(bytes.as_slice()).unwrap();
        let as_shipped = tract_onnx::onnx()
            .model_for_proto_model(&proto)
            .and_then(|m| m.into_typed());
        assert!(as_shipped.is_err(), "{name}: tract now loads it as shipped");
        let graph = proto.graph.as_mut().unwrap();
        assert_eq!(fill_constant_of_shape(graph), nodes, "{name}");
        assert_eq!(
            fill_constant_of_shape(graph),
            0,
            "{name}: a second pass changes nothing"
        );
        Detector::load(&path, DetectConfig::default()).unwrap();
        // The file itself is left as it was.
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }
}

#[test]
fn tract_agrees_with_onnxruntime_and_finds_the_faces() {
    let scenes = [
        (640, 480, vec![(220, 120, 200)]),
        (640, 480, vec![(60, 140, 160), (400, 100, 180)]),
        (640, 480, vec![]),
        (300, 500, vec![(60, 220, 150)]),
    ];
    for name in [FRONT, BACK] {
        let path = detector(name);
        let det = Detector::load(&path, DetectConfig::default()).unwrap();
        let size = det.input_size() as usize;
        let mut buf = DetectBuffers::default();
        let mut inputs = Vec::new();
        let mut tract = Vec::new();
        let mut fits = Vec::new();
        for (w, h, at) in &scenes {
            let (frame, _) = scene(*w, *h, at);
            fits.push(det.prepare(frame.as_raw(), *w, *h, &mut buf).unwrap());
            inputs.push(buf.input().to_vec());
            tract.push(det.run_raw(buf.input()).unwrap());
        }
        let ort = onnxruntime_run(&path, &inputs, &[1, size, size, 3]);
        let mut worst = 0f32;
        for (i, ((w, h, at), (scores, boxes))) in scenes.iter().zip(&tract).enumerate() {
            let (ort_scores, ort_boxes) = ort_outputs(&ort, i);
            for (a, b) in scores
                .iter()
                .chain(boxes)
                .zip(ort_scores.iter().chain(&ort_boxes))
            {
                worst = worst.max((a - b).abs());
            }
            let faces = det.decode(scores, boxes, &fits[i]).unwrap();
            let judged = det.decode(&ort_scores, &ort_boxes, &fits[i]).unwrap();
            assert_eq!(
                faces.len(),
                judged.len(),
                "{name} scene {i}: {faces:?} vs {judged:?}"
            );
            for (f, g) in faces.iter().zip(&judged) {
                let d = (f.bbox.x - g.bbox.x).abs().max((f.bbox.w - g.bbox.w).abs());
                assert!(d < 1.0, "{name} scene {i}: boxes differ by {d} px");
            }
            let (_, squares) = scene(*w, *h, at);
            for sq in &squares {
                assert!(
                    faces.iter().any(|f| inside(f, sq)),
                    "{name} scene {i}: no face found in the pasted square {sq:?}: {faces:?}"
                );
            }
            assert_eq!(faces.len(), squares.len(), "{name} scene {i}: {faces:?}");
        }
        println!(
            "{name}: tract vs onnxruntime, {} scenes: worst raw output difference {worst:.2e}",
            scenes.len()
        );
        assert!(worst < 1e-2, "{name}: {worst}");
    }
}

#[test]
fn odd_frames_and_wrong_files_give_clear_errors_not_panics() {
    let det = Detector::load(&detector(FRONT), DetectConfig::default()).unwrap();
    let mut buf = DetectBuffers::default();
    assert!(det.detect(&[9, 9, 9], 1, 1, &mut buf).unwrap().is_empty());
    let huge = vec![100u8; 4000 * 3000 * 3];
    assert!(det.detect(&huge, 4000, 3000, &mut buf).unwrap().is_empty());
    assert!(
        det.detect(&[0u8; 10], 4, 4, &mut buf).is_err(),
        "a buffer of the wrong size"
    );

    let missing = Path::new("/nonexistent/blazeface.onnx");
    let e = Detector::load(missing, DetectConfig::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("/nonexistent/blazeface.onnx"), "{e}");
    let hydranet = hydranet_fixture::fixture_dir().join("model.onnx");
    let e = Detector::load(&hydranet, DetectConfig::default())
        .err()
        .unwrap();
    assert!(matches!(e, Error::NotDetector { .. }), "{e}");
    assert!(e.to_string().contains("model.onnx"), "{e}");
    let bytes = std::fs::read(detector(FRONT)).unwrap();
    let e = Detector::from_bytes(
        &bytes[..1000],
        Path::new("cut.onnx"),
        DetectConfig::default(),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("cut.onnx"), "{e}");
}

#[test]
fn on_a_real_photo_tract_and_onnxruntime_find_the_same_one_face() {
    // skimage's astronaut.png (public domain), fetched by scripts/fetch-photo.sh.
    let photo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../photos/astronaut.png");
    assert!(
        photo.is_file(),
        "{} not found: run scripts/fetch-photo.sh (scripts/test.sh does)",
        photo.display()
    );
    let img = image::open(&photo).unwrap().to_rgb8();
    let (w, h) = img.dimensions();
    for name in [FRONT, BACK] {
        let path = detector(name);
        let det = Detector::load(&path, DetectConfig::default()).unwrap();
        let size = det.input_size() as usize;
        let mut buf = DetectBuffers::default();
        let fit = det.prepare(img.as_raw(), w, h, &mut buf).unwrap();
        let (scores, boxes) = det.run_raw(buf.input()).unwrap();
        let ort = onnxruntime_run(&path, &[buf.input().to_vec()], &[1, size, size, 3]);
        let (ort_scores, ort_boxes) = ort_outputs(&ort, 0);
        let worst = scores
            .iter()
            .chain(&boxes)
            .zip(ort_scores.iter().chain(&ort_boxes))
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let faces = det.decode(&scores, &boxes, &fit).unwrap();
        let judged = det.decode(&ort_scores, &ort_boxes, &fit).unwrap();
        println!("{name} on astronaut.png: worst raw difference {worst:.2e}, faces {faces:?}");
        assert!(worst < 1e-2, "{name}: {worst}");
        assert_eq!(faces.len(), 1, "{name}: {faces:?}");
        assert_eq!(judged.len(), 1, "{name}: {judged:?}");
        let (f, g) = (faces[0], judged[0]);
        assert!((f.bbox.x - g.bbox.x).abs() < 1.0 && (f.bbox.w - g.bbox.w).abs() < 1.0);
        // Her face: upper middle of the 512x512 photo.
        let [cx, cy] = f.bbox.center();
        assert!(
            (150.0..300.0).contains(&cx) && (60.0..200.0).contains(&cy),
            "{f:?}"
        );
    }
}

/// The detector fixture: onnxruntime's scores and faces on `detector_scenes`, which the
/// edge runtime's own fixture test (edge-runtime/tests/fixture.rs) checks tract against on
/// x86_64 and on aarch64 under QEMU, where onnxruntime does not run. With
/// HYDRANET_REGENERATE=1 this writes it; otherwise it checks the file is still
/// onnxruntime's answer.
#[test]
fn the_detector_fixture_is_onnxruntime_s_answer() {
    let file = hydranet_fixture::detector_fixture_file();
    let scenes = hydranet_fixture::scenes::detector_scenes().unwrap();
    let mut models = serde_json::Map::new();
    for name in [FRONT, BACK] {
        let path = detector(name);
        let det = Detector::load(&path, DetectConfig::default()).unwrap();
        let size = det.input_size() as usize;
        let mut buf = DetectBuffers::default();
        let mut inputs = Vec::new();
        let mut fits = Vec::new();
        for (_, frame) in &scenes {
            fits.push(det.prepare(frame.as_raw(), 640, 480, &mut buf).unwrap());
            inputs.push(buf.input().to_vec());
        }
        let ort = onnxruntime_run(&path, &inputs, &[1, size, size, 3]);
        let mut rows = Vec::new();
        for (i, (scene, _)) in scenes.iter().enumerate() {
            let (scores, boxes) = ort_outputs(&ort, i);
            let faces = det.decode(&scores, &boxes, &fits[i]).unwrap();
            rows.push(serde_json::json!({"scene": scene, "scores": scores, "faces": faces}));
        }
        models.insert(name.into(), serde_json::Value::Array(rows));
    }
    let now = serde_json::json!({
        "about": "onnxruntime's BlazeFace scores and decoded faces (frame pixels) on hydranet_fixture::scenes::detector_scenes; written by tests/parity/tests/detector.rs with HYDRANET_REGENERATE=1",
        "models": models,
    });
    if std::env::var_os("HYDRANET_REGENERATE").is_some() {
        std::fs::write(&file, serde_json::to_string(&now).unwrap() + "\n").unwrap();
        println!("wrote {}", file.display());
        return;
    }
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e} (HYDRANET_REGENERATE=1 writes it)", file.display()));
    let saved: serde_json::Value = serde_json::from_str(&text).unwrap();
    for name in [FRONT, BACK] {
        for (a, b) in saved["models"][name]
            .as_array()
            .unwrap()
            .iter()
            .zip(now["models"][name].as_array().unwrap())
        {
            let (sa, sb) = (
                a["scores"].as_array().unwrap(),
                b["scores"].as_array().unwrap(),
            );
            assert_eq!(sa.len(), sb.len());
            for (x, y) in sa.iter().zip(sb) {
                let d = (x.as_f64().unwrap() - y.as_f64().unwrap()).abs();
                // 1e-3: onnxruntime's own kernels differ by CPU (1.2e-4 between the AMD EPYC
                // the fixture was made on and an Intel Xeon), while a stale fixture (another
                // model or preprocessing) is off by far more.
                assert!(
                    d < 1e-3,
                    "{name} {}: the fixture is stale ({d})",
                    a["scene"]
                );
            }
            assert_eq!(
                a["faces"].as_array().unwrap().len(),
                b["faces"].as_array().unwrap().len(),
                "{name} {}",
                a["scene"]
            );
        }
    }
}
