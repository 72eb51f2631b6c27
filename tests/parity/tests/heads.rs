//! Any head set through every export form (fp32 folded and with BatchNorm kept, test-time
//! flip, int8 `qdq` and `qlinear`): the fixture's five heads (three from UTKFace,
//! two declared in its heads file and partly labelled) come out as five ONNX outputs in
//! every form, and no name the exporter writes can collide with a head's
//! (`models::contract::RESERVED_NAMES` holds the only ones a head name could take).
use std::{collections::BTreeSet, path::Path};

use host_train::{
    export::{export_checkpoint, export_int8, ExportOptions, Int8Request, QuantForm},
    quant::Method,
};
use hydranet_fixture::{fixture_dir, utkface_dir, Fixture};
use models::contract::RESERVED_NAMES;
use prost::Message;
use tract_onnx::pb::ModelProto;

fn names(model: &Path) -> (Vec<String>, BTreeSet<String>) {
    let bytes = std::fs::read(model).unwrap();
    let m = ModelProto::decode(bytes.as_slice()).unwrap();
    let g = m.graph.unwrap();
    let outputs = g.output.iter().map(|o| o.name.clone()).collect();
    let mut all = BTreeSet::new();
    all.extend(g.input.iter().map(|i| i.name.clone()));
    all.extend(g.initializer.iter().map(|i| i.name.clone()));
    for n in &g.node {
        all.extend(n.output.iter().cloned());
        all.insert(n.name.clone());
    }
    (outputs, all)
}

#[test]
fn every_export_form_writes_one_output_per_head_and_leaves_head_names_free() {
    let fx = Fixture::load().unwrap();
    let ck = fx.checkpoint_path();
    let contract = host_train::train::checkpoint::load(&ck, &candle_core::Device::Cpu)
        .unwrap()
        .contract;
    let heads: Vec<String> = contract.heads.iter().map(|h| h.name.clone()).collect();
    assert_eq!(
        heads,
        ["age", "gender", "ethnicity", "age_group", "is_adult"],
        "the fixture is the five-head model of {}",
        fixture_dir().join("heads.toml").display()
    );
    // The fixture's heads file is the one the contract carries.
    let file = std::fs::read_to_string(fixture_dir().join("heads.toml")).unwrap();
    assert_eq!(contract.training["heads_file"], file);
    let from_file = models::heads_file::parse_heads(&file, Path::new("heads.toml")).unwrap();
    assert_eq!(from_file, contract.heads);

    let dir = tempfile::tempdir().unwrap();
    let flip = dir.path().join("flip.onnx");
    export_checkpoint(
        &ck,
        &flip,
        &ExportOptions {
            test_time_flip: true,
            ..ExportOptions::default()
        },
    )
    .unwrap();
    let kept = dir.path().join("batchnorm.onnx");
    export_checkpoint(
        &ck,
        &kept,
        &ExportOptions {
            fold_batchnorm: false,
            ..ExportOptions::default()
        },
    )
    .unwrap();
    let mut files = vec![fx.model_path(), flip, kept];
    for form in [QuantForm::Qdq, QuantForm::Qlinear] {
        let out = dir.path().join(format!("{}.onnx", form.as_str()));
        export_int8(
            &ck,
            &out,
            &Int8Request {
                form,
                calibration: Some(utkface_dir()),
                count: 16,
                method: Method::Minmax,
                test_time_flip: false,
            },
        )
        .unwrap();
        files.push(out);
    }
    for f in &files {
        let (outputs, all) = names(f);
        assert_eq!(outputs, heads, "{}", f.display());
        let free: Vec<&String> = all
            .iter()
            .filter(|n| !n.is_empty() && !n.contains('.') && !heads.contains(n))
            .filter(|n| !RESERVED_NAMES.contains(&n.as_str()))
            .collect();
        assert!(
            free.is_empty(),
            "{}: {free:?} have no `.`, so a head could be named like them; add them to \
             RESERVED_NAMES or rename them",
            f.display()
        );
    }
}
