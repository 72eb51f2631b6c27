//! Regenerates the committed fixture (`tests/fixtures/parity-v1`). Run on purpose only:
//! `cargo test -p parity --release --test regenerate -- --ignored`
//! then commit the three files. The other tests check every engine against them.
mod common;

use std::sync::{atomic::AtomicBool, Arc};

use candle_core::Device;
use common::candle_raw;
use host_train::{
    data::AugmentConfig,
    export::{export_checkpoint, ExportOptions},
    kernels::Kernels,
    net::BackboneConfig,
    train::{
        checkpoint,
        loss::LossWeighting,
        optim::OptimizerKind,
        schedule::ScheduleKind,
        setup::{build_trainer, contract_for, load_for_inference, prepare_data, Need},
        TrainConfig,
    },
};
use hydranet_fixture::{case_outputs, fixture_dir, sources, Case, Fixture};
use models::{decode::decode, preprocess::preprocess};

const PRODUCED_BY: &str = "cargo test -p parity --release --test regenerate -- --ignored \
    (resnet10-w0.125, 32x32, 2 epochs on `host-train synth --count 256 --size 64 --seed 11`, \
    the five heads of heads.toml from two CSV manifests: age_group on half the images, \
    is_adult on the other half)";

/// The two manifests of the fixture's training data, from the synthetic faces' names:
/// `a.csv` labels age, gender, ethnicity everywhere and `age_group` on every other image,
/// `b.csv` labels `is_adult` on the rest.
fn write_manifests(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jpg.chip.jpg"))
        .collect();
    names.sort();
    let group = |age: u8| match age {
        0..=2 => "0-2",
        3..=9 => "3-9",
        10..=19 => "10-19",
        20..=29 => "20-29",
        30..=39 => "30-39",
        40..=49 => "40-49",
        50..=59 => "50-59",
        _ => "60+",
    };
    let (mut a, mut b) = (
        String::from("path,age,gender,ethnicity,age_group\n"),
        String::from("path,is_adult\n"),
    );
    for (i, n) in names.iter().enumerate() {
        let l = models::dataset::parse_utkface_name(n).unwrap();
        let g = if i % 2 == 0 { group(l.age) } else { "" };
        a.push_str(&format!("{n},{},{},{},{g}\n", l.age, l.gender, l.ethnicity));
        if i % 2 == 1 {
            b.push_str(&format!(
                "{n},{}\n",
                if l.age >= 18 { "adult" } else { "minor" }
            ));
        }
    }
    let paths = vec![dir.join("a.csv"), dir.join("b.csv")];
    std::fs::write(&paths[0], a).unwrap();
    std::fs::write(&paths[1], b).unwrap();
    paths
}

#[test]
#[ignore = "rewrites the committed fixture"]
fn regenerate_fixture() {
    let data = tempfile::tempdir().unwrap();
    host_train::synth::generate(data.path(), 256, 64, 11).unwrap();
    let manifests = write_manifests(data.path());
    let heads_file = fixture_dir().join("heads.toml");
    let heads = models::heads_file::HeadsFile::read(&heads_file)
        .unwrap()
        .heads;
    let run = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        data: data.path().into(),
        manifests,
        heads: Some(heads),
        heads_file: Some(heads_file.clone()),
        out: run.path().into(),
        epochs: 2,
        batch: 32,
        input_size: 32,
        backbone: "resnet10-w0.125".into(),
        lr: 3e-3,
        optimizer: OptimizerKind::Adamw,
        momentum: 0.9,
        weight_decay: 5e-4,
        schedule: ScheduleKind::OneCycle,
        warmup_epochs: 0.0,
        loss_weighting: LossWeighting::Sum,
        head_weights: vec![],
        val_fraction: 0.2,
        seed: 11,
        augment: AugmentConfig::DEFAULT,
        limit: None,
        device: "cpu".into(),
        kernels: Kernels::Fast,
        init_from: None,
        cache: Default::default(),
    };
    let backbone: BackboneConfig = config.backbone.parse().unwrap();
    let contract = contract_for(&config, &backbone);
    let prepared = prepare_data(&config, &contract, Need::AllHeads).unwrap();
    let mut t = build_trainer(
        config.clone(),
        contract,
        &prepared,
        None,
        Device::Cpu,
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    t.verbose = false;
    t.run().unwrap();

    let dir = fixture_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let mut contract = t.contract.clone();
    contract.model_name = "hydranet-parity-fixture".into();
    contract.training.insert(
        "data".into(),
        "synthetic faces (host-train synth --count 256 --size 64 --seed 11)".into(),
    );
    contract.training.insert(
        "heads_file".into(),
        std::fs::read_to_string(&heads_file).unwrap(),
    );
    let saved_config = TrainConfig {
        data: "synthetic".into(),
        manifests: vec!["a.csv".into(), "b.csv".into()],
        heads_file: Some("heads.toml".into()),
        out: "fixture".into(),
        ..config
    };
    let ck = dir.join("checkpoint.safetensors");
    // Weights only: the fixture needs no optimiser state.
    checkpoint::save(&[&ck], &contract, &saved_config, &t.state, &t.varmap, &[]).unwrap();
    export_checkpoint(&ck, &dir.join("model.onnx"), &ExportOptions::default()).unwrap();

    let (net, _vm, ck) = load_for_inference(&ck, &Device::Cpu).unwrap();
    let cases = sources()
        .into_iter()
        .map(|(name, source)| {
            let input = preprocess(&source.image().unwrap(), &ck.contract.preprocess);
            let raw = candle_raw(&net, &ck.contract, &input);
            let refs: Vec<&[f32]> = raw.iter().map(|r| r.as_slice()).collect();
            let pred = decode(&ck.contract.heads, &refs).unwrap();
            let (outputs, labels) = case_outputs(&ck.contract, &raw, &pred);
            Case {
                name,
                source,
                outputs,
                labels,
            }
        })
        .collect();
    let fixture = Fixture {
        produced_by: PRODUCED_BY.into(),
        model: "model.onnx".into(),
        checkpoint: "checkpoint.safetensors".into(),
        cases,
    };
    std::fs::write(
        dir.join("fixture.json"),
        serde_json::to_string_pretty(&fixture).unwrap() + "\n",
    )
    .unwrap();
}
