//! Faces found by the detector (BlazeFace, fetched by scripts/fetch-detector.sh) in front of
//! the shipped HydraNet: several faces per frame as one batch, tracks that keep their ids
//! while faces move, a frame with no face, the cap, faces cut by the border, odd frames,
//! and `predict --detect` on a real photo.
mod common;

use std::{
    ops::ControlFlow,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::AtomicBool,
};

use edge_runtime::{
    faces::{find_detector, FaceFinder, FaceOptions},
    pipeline::{self, Processed, Sink, Status},
    source::{SourceOptions, SourceSpec},
    Engine, LoadOptions,
};
use hydranet_fixture::{scenes, utkface_dir, SHARED_FACES};
use image::RgbImage;

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/utkface/hydranet-utkface-int8.onnx")
}

/// The installed detector; a failure (not a skip) when scripts/fetch-detector.sh has not run.
fn detector() -> PathBuf {
    find_detector(None).expect("no detector: run scripts/fetch-detector.sh")
}

fn face(i: usize) -> RgbImage {
    image::open(utkface_dir().join(SHARED_FACES[i]))
        .unwrap()
        .to_rgb8()
}

/// A 640x480 frame with faces pasted at `(cx, cy, side)`.
fn frame_with(seed: u64, faces: &[(usize, f32, f32, f32)]) -> RgbImage {
    let mut frame = scenes::background(&mut scenes::rng(seed), 640, 480);
    for &(i, cx, cy, side) in faces {
        let at = scenes::Pasted {
            cx,
            cy,
            side,
            angle: 0.0,
        };
        scenes::paste(&mut frame, &face(i), at);
    }
    frame
}

#[derive(Default)]
struct Collect {
    /// Per frame: (track id, box x) of each face.
    frames: Vec<Vec<(u64, f32)>>,
    steady: Vec<bool>,
    json: Vec<serde_json::Value>,
}

impl Sink for Collect {
    fn frame(&mut self, p: &Processed<'_>) -> ControlFlow<()> {
        assert!(p.detecting());
        self.frames
            .push(p.faces.iter().map(|f| (f.track, f.bbox.x)).collect());
        self.steady
            .push(!p.faces.is_empty() && p.faces.iter().all(|f| f.smoothed.steady));
        self.json.push(p.to_json());
        ControlFlow::Continue(())
    }
}

#[test]
fn two_moving_faces_keep_their_tracks_and_an_empty_frame_has_none() {
    moving_faces(1);
}

#[test]
fn detecting_every_fourth_frame_keeps_the_tracks_and_answers_every_frame() {
    // Detections at frames 0, 4, 8 and 12: the faces' last frame (11) and the first empty
    // one (12) fall on both sides of a detection.
    moving_faces(4);
    let bad = |n| FaceOptions {
        detect_every: n,
        ..FaceOptions::default()
    };
    assert!(bad(0).validate().is_err() && bad(31).validate().is_err());
}

fn moving_faces(detect_every: u32) {
    // Twelve frames of two faces drifting right by 4 px a frame, then four with no face.
    let dir = tempfile::tempdir().unwrap();
    for k in 0..16 {
        let dx = 4.0 * k as f32;
        let frame = if k < 12 {
            frame_with(
                5,
                &[(0, 170.0 + dx, 230.0, 200.0), (2, 450.0 + dx, 250.0, 180.0)],
            )
        } else {
            frame_with(5, &[])
        };
        frame.save(dir.path().join(format!("{k:02}.png"))).unwrap();
    }
    let engine = Engine::load_for_faces(&shipped(), 8, LoadOptions::default()).unwrap();
    assert_eq!(engine.max_batch(), 8);
    let config = pipeline::Config {
        detector: Some(detector()),
        faces: FaceOptions {
            detect_every,
            ..FaceOptions::default()
        },
        ..pipeline::Config::default()
    };
    let opts = SourceOptions {
        fps: 0.0,
        looped: false,
        ..SourceOptions::default()
    };
    let spec = SourceSpec::Seq(dir.path().into());
    let (status, stop) = (Status::default(), AtomicBool::new(false));
    let mut sink = Collect::default();
    let report = pipeline::run(
        || spec.open(&opts),
        &engine,
        &config,
        &status,
        &stop,
        &mut sink,
    )
    .unwrap();
    assert_eq!(report.processed, 16, "{report:?}");
    assert!(report.stages.detect_ms > 0.0);
    let first = &sink.frames[0];
    assert_eq!(first.len(), 2, "{:?}", sink.frames);
    let mut ids: Vec<u64> = first.iter().map(|f| f.0).collect();
    ids.sort();
    for (k, faces) in sink.frames[..12].iter().enumerate() {
        let mut got: Vec<u64> = faces.iter().map(|f| f.0).collect();
        got.sort();
        assert_eq!(
            got, ids,
            "frame {k}: the same two tracks: {:?}",
            sink.frames
        );
    }
    assert!(sink.steady[..12].iter().any(|s| *s), "both answers settle");
    for k in 12..16 {
        assert!(sink.frames[k].is_empty(), "frame {k}: {:?}", sink.frames[k]);
        assert_eq!(sink.json[k]["faces"], serde_json::json!([]));
    }
    let f = &sink.json[5]["faces"][0];
    for key in [
        "track",
        "box",
        "score",
        "keypoints",
        "steady",
        "smoothed",
        "raw",
    ] {
        assert!(f.get(key).is_some(), "`{key}` in {f}");
    }
    assert_eq!(f["keypoints"].as_array().unwrap().len(), 6);
    assert!(f["smoothed"]["age"]["value"].as_f64().is_some(), "{f}");
}

#[test]
fn the_cap_keeps_the_best_faces_and_counts_the_rest() {
    // 50 faces in a grid; the detector is asked for 8.
    let mut frame = scenes::background(&mut scenes::rng(9), 1500, 1000);
    for k in 0..50 {
        let (col, row) = ((k % 10) as f32, (k / 10) as f32);
        let at = scenes::Pasted {
            cx: 75.0 + 150.0 * col,
            cy: 100.0 + 200.0 * row,
            side: 145.0,
            angle: 0.0,
        };
        scenes::paste(&mut frame, &face(k % SHARED_FACES.len()), at);
    }
    let engine = Engine::load_for_faces(&shipped(), 8, LoadOptions::default()).unwrap();
    let all = FaceOptions {
        cap: edge_runtime::faces::MAX_FACES,
        ..FaceOptions::default()
    };
    let mut uncapped = FaceFinder::load(&detector(), all).unwrap();
    let seen = uncapped.find(frame.as_raw(), 1500, 1000, 1.0).unwrap();
    let total = seen.faces.len() + seen.over_cap;
    assert!(total > 16, "most of the 50 faces are found: {total}");
    let mut capped = FaceFinder::load(&detector(), FaceOptions::default()).unwrap();
    let (found, preds) = capped.predict(&engine, frame.as_raw(), 1500, 1000).unwrap();
    assert_eq!(found.faces.len(), 8);
    assert_eq!(preds.len(), 8, "one batch of 8");
    assert_eq!(found.over_cap, total - 8);
    assert!(
        found.faces.windows(2).all(|w| w[0].score >= w[1].score),
        "best first"
    );
    assert!(FaceFinder::load(&detector(), FaceOptions { cap: 0, ..all }).is_err());
    assert!(FaceFinder::load(&detector(), FaceOptions { cap: 17, ..all }).is_err());
}

#[test]
fn faces_cut_by_the_border_and_odd_frames_do_not_panic() {
    let engine = Engine::load_for_faces(&shipped(), 8, LoadOptions::default()).unwrap();
    let mut finder = FaceFinder::load(&detector(), FaceOptions::default()).unwrap();
    // A face a third outside the left edge, one cut by the bottom.
    let frame = frame_with(3, &[(0, 40.0, 200.0, 220.0), (1, 400.0, 440.0, 200.0)]);
    let (found, preds) = finder.predict(&engine, frame.as_raw(), 640, 480).unwrap();
    assert_eq!(found.faces.len(), preds.len());
    assert!(!found.faces.is_empty(), "a cut face is still a face");
    for c in &found.crops {
        assert!(c.height > 0.0 && c.cx.is_finite());
    }
    let tiny = finder.predict(&engine, &[7, 7, 7], 1, 1).unwrap();
    assert!(tiny.0.faces.is_empty() && tiny.1.is_empty());
    let huge = vec![90u8; 6000 * 4000 * 3];
    let (f, p) = finder.predict(&engine, &huge, 6000, 4000).unwrap();
    assert!(f.faces.is_empty() && p.is_empty());
    assert!(
        finder.predict(&engine, &[0; 5], 2, 2).is_err(),
        "a buffer of the wrong size"
    );
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_edge-runtime"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn predict_detect_on_a_real_photo_and_bad_detector_files() {
    let photo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/photos/astronaut.png");
    assert!(
        photo.is_file(),
        "{} missing: run scripts/fetch-photo.sh",
        photo.display()
    );
    let model = shipped();
    let (m, p) = (model.to_str().unwrap(), photo.to_str().unwrap());
    let (ok, out, err) = run(&["predict", "--model", m, "--detect", p]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["file"], serde_json::json!(p));
    let faces = v["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 1, "{v}");
    let f = &faces[0];
    let b: Vec<f64> = f["box"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    // Eileen Collins' face, in the 512x512 photo's own pixels.
    assert!(
        b[0] > 100.0 && b[0] + b[2] < 350.0 && b[1] > 20.0 && b[1] + b[3] < 250.0,
        "{b:?}"
    );
    assert_eq!(f["keypoints"].as_array().unwrap().len(), 6);
    assert_eq!(f["gender"]["label"], "female", "{f}");
    assert!(f["age"].as_f64().is_some(), "{f}");

    let (ok, _, err) = run(&[
        "predict",
        "--model",
        m,
        "--detector",
        "/nonexistent/bf.onnx",
        p,
    ]);
    assert!(!ok && err.contains("/nonexistent/bf.onnx"), "{err}");
    // The HydraNet itself is no detector; a cut detector file is no ONNX.
    let (ok, _, err) = run(&["predict", "--model", m, "--detector", m, p]);
    assert!(
        !ok && err.contains("not a BlazeFace face detector"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.onnx");
    let bytes = std::fs::read(detector()).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let (ok, _, err) = run(&[
        "predict",
        "--model",
        m,
        "--detector",
        cut.to_str().unwrap(),
        p,
    ]);
    assert!(!ok && err.contains("cut.onnx"), "{err}");
    // An unreadable image is an error naming it; the others still print.
    let junk = dir.path().join("junk.jpg");
    std::fs::write(&junk, b"not an image").unwrap();
    let (ok, out, err) = run(&[
        "predict",
        "--model",
        m,
        "--detect",
        junk.to_str().unwrap(),
        p,
    ]);
    assert!(!ok && err.contains("junk.jpg"), "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
}

#[test]
fn the_fetch_script_names_a_tampered_detector_and_leaves_a_good_one_alone() {
    let fetched = detector();
    let src = fetched.parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "face_detection_front_128x128_barracuda.onnx",
        "face_detection_back_256x256_barracuda.onnx",
        "LICENSE",
    ] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/fetch-detector.sh");
    let fetch = || Command::new(&script).arg(dir.path()).output().unwrap();
    let out = fetch();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("up to date"));
    let back = dir
        .path()
        .join("face_detection_back_256x256_barracuda.onnx");
    let mut bytes = std::fs::read(&back).unwrap();
    bytes[1000] ^= 0x55;
    std::fs::write(&back, &bytes).unwrap();
    let out = fetch();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a tampered file passed");
    assert!(
        err.contains(&back.display().to_string()) && err.contains("sha256"),
        "{err}"
    );
}
