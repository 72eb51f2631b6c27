//! The distribution head kind (DEX-style age: one logit per year, the expectation read out)
//! from training to the edge: a small model trained with `models/heads/utkface-dex.toml`
//! is exported fp32 and int8; tract (with the edge runtime's integer kernel) and Candle
//! give the same ages, and the contract the edge reads from the file says how to decode.
mod common;

use std::{
    path::Path,
    sync::{atomic::AtomicBool, Arc},
};

use candle_core::Device;
use edge_runtime::Engine;
use host_train::{
    data::AugmentConfig,
    export::{
        export_checkpoint, export_int8, import::load_onnx, ExportOptions, Int8Request, QuantForm,
    },
    kernels::Kernels,
    net::BackboneConfig,
    quant::Method,
    train::{
        loss::LossWeighting,
        optim::OptimizerKind,
        schedule::ScheduleKind,
        setup::{build_trainer, contract_for, load_for_inference, prepare_data, Need},
        TrainConfig,
    },
};
use models::{decode::decode, preprocess::preprocess, HeadKind};

fn ages(contract: &models::Contract, raw: &[Vec<f32>]) -> f32 {
    let rows: Vec<&[f32]> = raw.iter().map(|r| r.as_slice()).collect();
    decode(&contract.heads, &rows)
        .unwrap()
        .get("age")
        .and_then(|o| o.value())
        .unwrap()
}

#[test]
fn a_distribution_head_gives_the_same_ages_in_candle_and_on_the_edge_fp32_and_int8() {
    let heads_file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/heads/utkface-dex.toml");
    let heads = models::heads_file::HeadsFile::read(&heads_file)
        .unwrap()
        .heads;
    let data = tempfile::tempdir().unwrap();
    host_train::synth::generate(data.path(), 160, 48, 5).unwrap();
    let run = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        data: data.path().into(),
        manifests: vec![],
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
        seed: 3,
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
        config,
        contract,
        &prepared,
        None,
        Device::Cpu,
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    t.verbose = false;
    t.run().unwrap();
    let ck = run.path().join("best.safetensors");

    let fp32 = run.path().join("dex.onnx");
    export_checkpoint(&ck, &fp32, &ExportOptions::default()).unwrap();
    let int8 = run.path().join("dex-int8.onnx");
    export_int8(
        &ck,
        &int8,
        &Int8Request {
            form: QuantForm::Qdq,
            calibration: Some(data.path().into()),
            count: 64,
            method: Method::Percentile,
            test_time_flip: false,
        },
    )
    .unwrap();

    let (net, _, ck) = load_for_inference(&ck, &Device::Cpu).unwrap();
    let contract = ck.contract;
    let edge = Engine::load(&fp32, 1).unwrap();
    let edge8 = Engine::load(&int8, 1).unwrap();
    // The file alone tells the edge how to read the head.
    assert_eq!(edge.contract().heads, contract.heads);
    assert!(matches!(
        edge8.contract().heads[0].kind,
        HeadKind::Distribution { bins: 116, .. }
    ));
    assert!(edge8.fused().convolutions >= 8, "{:?}", edge8.fused());
    let sim8 = load_onnx(&int8, &Device::Cpu).unwrap();

    let mut files: Vec<_> = std::fs::read_dir(data.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let (mut worst, mut worst8, mut spread) = (0f32, 0f32, (f32::MAX, f32::MIN));
    for p in files.iter().take(40) {
        let x = preprocess(
            &models::dataset::load_image(p).unwrap(),
            &contract.preprocess,
        );
        let raw = common::candle_raw(&net, &contract, &x);
        assert_eq!(raw[0].len(), 116);
        let host = ages(&contract, &raw);
        let on_edge = ages(&contract, &common::tract_raw(&edge, &x));
        worst = worst.max((host - on_edge).abs());
        let sim = ages(&contract, &common::candle_raw(&sim8.net, &contract, &x));
        let on_edge8 = ages(&contract, &common::tract_raw(&edge8, &x));
        worst8 = worst8.max((sim - on_edge8).abs());
        assert!((1.0..=116.0).contains(&on_edge8));
        spread = (spread.0.min(host), spread.1.max(host));
    }
    eprintln!(
        "distribution head, 40 images: |Candle - tract| fp32 {worst:.5} years, int8 (Candle's \
         simulation vs the edge kernel) {worst8:.4} years; ages {:.1}..{:.1}",
        spread.0, spread.1
    );
    assert!(worst < 1e-2, "fp32 ages differ by {worst} years");
    assert!(worst8 < 0.5, "int8 ages differ by {worst8} years");
    // Trained, not constant: the readout moves with the face.
    assert!(spread.1 - spread.0 > 0.5, "{spread:?}");
}
