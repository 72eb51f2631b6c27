//! The shipped model files (`models/utkface/`): they load without side configuration,
//! carry the contract (the int8 file says how it was quantized), read real faces well, and
//! the int8 file answers like the fp32 one.
use std::path::{Path, PathBuf};

use edge_runtime::Engine;
use models::{
    dataset::{load_image, scan_utkface_dir, split},
    decode::HeadOutput,
    heads::utkface_heads,
};

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/utkface")
        .join(name)
}

fn class(o: Option<&HeadOutput>) -> usize {
    match o {
        Some(HeadOutput::Binary { index, .. }) | Some(HeadOutput::Multiclass { index, .. }) => {
            *index
        }
        other => panic!("not a class output: {other:?}"),
    }
}

fn age(o: Option<&HeadOutput>) -> f32 {
    match o {
        Some(HeadOutput::Regression(v)) => *v,
        other => panic!("not a regression output: {other:?}"),
    }
}

#[test]
fn shipped_fp32_and_int8_agree_and_read_real_faces() {
    let fp32 = Engine::load(&shipped("hydranet-utkface.onnx"), 1).unwrap();
    let int8 = Engine::load(&shipped("hydranet-utkface-int8.onnx"), 1).unwrap();
    for e in [&fp32, &int8] {
        assert_eq!(e.contract().heads, utkface_heads());
        // The model card's figures are with the flip the graph does.
        assert!(e.contract().test_time_flip, "shipped with test-time flip");
    }
    assert!(fp32.contract().quantization.is_none());
    // No integer convolution in a float file; its two max pools (the stem's, and the
    // mirror copy's) on the edge runtime's own loop.
    let fused = fp32.fused();
    assert_eq!((fused.convolutions, fused.max_pools), (0, 2), "{fused:?}");
    // All 12 convolutions of the body and of its mirror copy run on integers.
    assert_eq!(int8.fused().convolutions, 24, "{:?}", int8.fused());
    let q = int8
        .contract()
        .quantization
        .as_ref()
        .expect("int8 contract");
    assert_eq!(q.scheme, "int8");
    assert!(q.calibration.is_some());

    // 60 faces of the validation split (never trained on), spread over the set.
    let dir = hydranet_fixture::utkface_dir();
    let scan = scan_utkface_dir(&dir, &utkface_heads()).unwrap();
    let (_, val) = split(&scan.samples, 0.1);
    let picked: Vec<_> = val.iter().step_by(val.len() / 60).take(60).collect();
    let (mut gender_ok, mut agree, mut age_gap) = (0, 0, 0.0f32);
    for s in &picked {
        let img = load_image(&s.path).unwrap();
        let a = &fp32.predict(std::slice::from_ref(&img)).unwrap()[0];
        let b = &int8.predict(std::slice::from_ref(&img)).unwrap()[0];
        gender_ok += usize::from(class(a.get("gender")) as f32 == s.targets[1]);
        agree += usize::from(
            class(a.get("gender")) == class(b.get("gender"))
                && class(a.get("ethnicity")) == class(b.get("ethnicity")),
        );
        age_gap += (age(a.get("age")) - age(b.get("age"))).abs();
    }
    let n = picked.len();
    eprintln!(
        "{n} validation faces: fp32 gender {gender_ok}/{n}; int8 labels agree {agree}/{n}; \
         mean |age fp32 - int8| {:.2} years",
        age_gap / n as f32
    );
    // The shipped model reads gender at ~93 % on the split; 80 % is far above chance (50 %)
    // and far below it, so only a wrong file fails.
    assert!(gender_ok * 100 >= 80 * n, "gender {gender_ok}/{n}");
    assert!(agree * 100 >= 90 * n, "int8 agrees on {agree}/{n}");
    assert!(
        age_gap / (n as f32) < 1.5,
        "mean age gap {}",
        age_gap / n as f32
    );
}

/// Where a value names a file by an absolute path (`/root/runs/...`, `C:\...`, `~/...`):
/// such a name says nothing on another machine and leaks the build machine's folders.
fn absolute_path_in(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    value.char_indices().find_map(|(i, _)| {
        let starts_token = i == 0 || b" \t\"',:=([{".contains(&bytes[i - 1]);
        let rest = &value[i..];
        let unix = rest.starts_with('/') && rest[1..].starts_with(|c: char| c.is_alphanumeric());
        let home = rest.starts_with("~/");
        let windows = rest.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
            && (rest[1..].starts_with(":\\") || rest[1..].starts_with(":/"));
        (starts_token && (unix || home || windows)).then(|| rest.chars().take(60).collect())
    })
}

#[test]
fn the_path_finder_sees_absolute_paths_and_nothing_else() {
    assert!(
        absolute_path_in(r#"{"averaged_from":"/root/runs/a/epoch-003.safetensors"}"#).is_some()
    );
    assert!(absolute_path_in("a/x.safetensors, /home/u/b.safetensors").is_some());
    assert!(absolute_path_in(r#"{"data":"C:\\faces"}"#).is_some());
    assert!(absolute_path_in("~/runs/x").is_some());
    assert!(absolute_path_in(r#"{"data":"../shared/datasets/utkface/UTKFace"}"#).is_none());
    assert!(absolute_path_in("r10w05-112-swa/epoch-003.safetensors, fp32/int8, 1/255").is_none());
}

#[test]
fn shipped_files_name_no_path_of_the_machine_that_built_them() {
    use prost::Message;
    for name in ["hydranet-utkface.onnx", "hydranet-utkface-int8.onnx"] {
        let path = shipped(name);
        let bytes = std::fs::read(&path).unwrap();
        let proto = tract_onnx::pb::ModelProto::decode(bytes.as_slice()).unwrap();
        let ours: Vec<_> = proto
            .metadata_props
            .iter()
            .filter(|e| e.key.starts_with("hydranet."))
            .collect();
        assert!(ours.len() >= 5, "{name}: {} hydranet.* keys", ours.len());
        for e in ours {
            if let Some(p) = absolute_path_in(&e.value) {
                panic!("{name}: {} holds an absolute path: {p}", e.key);
            }
        }
    }
}
