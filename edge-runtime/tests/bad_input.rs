//! Bad models and bad images: one clear error naming the file; predict carries on.
use std::{path::Path, process::Command};

use edge_runtime::{Engine, Error};
use hydranet_fixture::Fixture;
use prost::Message;
use tract_onnx::pb;

fn load_err(path: &Path) -> (Error, String) {
    let e = Engine::load(path, 1).err().expect("loading should fail");
    let s = e.to_string();
    assert!(
        s.contains(path.file_name().unwrap().to_str().unwrap()),
        "message does not name the file: {s}"
    );
    (e, s)
}

fn relu_model(input_dims: &[i64], metadata: Vec<(String, String)>) -> Vec<u8> {
    use pb::{tensor_shape_proto::dimension::Value, type_proto};
    let vi = |name: &str, dims: &[i64]| pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            denotation: String::new(),
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: 1,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| pb::tensor_shape_proto::Dimension {
                            denotation: String::new(),
                            value: Some(Value::DimValue(*d)),
                        })
                        .collect(),
                }),
            })),
        }),
        doc_string: String::new(),
    };
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(pb::GraphProto {
            node: vec![pb::NodeProto {
                input: vec!["image".into()],
                output: vec!["age".into()],
                op_type: "Relu".into(),
                name: "relu".into(),
                ..Default::default()
            }],
            name: "g".into(),
            input: vec![vi("image", input_dims)],
            output: vec![vi("age", input_dims)],
            ..Default::default()
        }),
        metadata_props: metadata
            .into_iter()
            .map(|(key, value)| pb::StringStringEntryProto { key, value })
            .collect(),
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn missing_truncated_and_random_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (e, _) = load_err(&dir.path().join("absent.onnx"));
    assert!(matches!(e, Error::Io { .. }));

    let good = std::fs::read(Fixture::load().unwrap().model_path()).unwrap();
    let truncated = dir.path().join("truncated.onnx");
    std::fs::write(&truncated, &good[..good.len() / 3]).unwrap();
    load_err(&truncated);

    let random = dir.path().join("random.bin");
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&random, bytes).unwrap();
    load_err(&random);
}

#[test]
fn an_onnx_model_without_a_contract_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("plain.onnx");
    std::fs::write(&p, relu_model(&[1, 3, 32, 32], vec![])).unwrap();
    let (e, s) = load_err(&p);
    assert!(matches!(e, Error::Contract { .. }), "{s}");
    assert!(s.contains("hydranet.contract_version"), "{s}");
}

#[test]
fn unknown_contract_versions_and_wrong_input_ranks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let contract = models::Contract::utkface(32, "resnet10");
    let mut meta: Vec<(String, String)> = contract.to_metadata().into_iter().collect();

    let p = dir.path().join("rank2.onnx");
    std::fs::write(&p, relu_model(&[1, 3072], meta.clone())).unwrap();
    let (e, s) = load_err(&p);
    assert!(
        matches!(e, Error::NotHydraNet { .. }) && s.contains("input"),
        "{s}"
    );

    for (k, v) in meta.iter_mut() {
        if k == "hydranet.contract_version" {
            *v = "99".into();
        }
    }
    let p = dir.path().join("future.onnx");
    std::fs::write(&p, relu_model(&[1, 3, 32, 32], meta)).unwrap();
    let (_, s) = load_err(&p);
    assert!(s.contains("contract version 99"), "{s}");
}

#[test]
fn predict_reports_bad_images_and_carries_on() {
    let fx = Fixture::load().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("face.png");
    hydranet_fixture::generate("rgba")
        .unwrap()
        .save(&good)
        .unwrap();
    let bad = dir.path().join("broken.jpg");
    std::fs::write(&bad, b"\xff\xd8\xff\xe0 not really").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edge-runtime"))
        .args(["predict", "--model", fx.model_path().to_str().unwrap()])
        .args([&good, &bad, &good])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            v["age"].is_number()
                && v["gender"]["label"].is_string()
                && v["ethnicity"]["probs"].is_array(),
            "{v}"
        );
        // The heads the model's heads file declared, with no name in the runtime's code.
        assert_eq!(
            v["age_group"]["probs"].as_array().map(Vec::len),
            Some(8),
            "{v}"
        );
        let adult = v["is_adult"]["label"].as_str().unwrap_or_default();
        assert!(["minor", "adult"].contains(&adult), "{v}");
        assert!(v["file"].as_str().unwrap().ends_with("face.png"));
    }
    assert!(
        stderr.contains("broken.jpg") && stderr.contains("predicted 2 of 3 images; 1 failed"),
        "{stderr}"
    );
}

#[test]
fn a_forced_int8_tile_this_cpu_lacks_is_refused_by_name() {
    let model =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/utkface/hydranet-utkface-int8.onnx");
    let out = Command::new(env!("CARGO_BIN_EXE_edge-runtime"))
        .args(["bench", "--iters", "1", "--warmup", "0", "--model"])
        .arg(&model)
        .env("HYDRANET_INT8_TILE", "no-such-tile")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("HYDRANET_INT8_TILE=no-such-tile")
            && stderr.contains("portable")
            && stderr.contains("hydranet-utkface-int8.onnx"),
        "{stderr}"
    );
}
