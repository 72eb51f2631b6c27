//! Training end to end through the library: real data learns, checkpoints round-trip,
//! resume continues the same trajectory.
mod common;

use std::sync::{atomic::AtomicBool, Arc};

use candle_core::{Device, Tensor};
use common::{tiny_config, utkface_dir};
use host_train::{
    kernels::Kernels,
    net::BackboneConfig,
    train::{
        checkpoint,
        setup::{build_trainer, contract_for, load_for_inference, prepare_data, Need},
        trainer::Outcome,
        TrainConfig,
    },
};

fn trainer_run(
    config: &TrainConfig,
    resume: Option<&std::path::Path>,
    stop_early: bool,
) -> (Outcome, Vec<f64>) {
    let backbone: BackboneConfig = config.backbone.parse().unwrap();
    let contract = contract_for(config, &backbone);
    let data = prepare_data(config, &contract, Need::AllHeads).unwrap();
    let stop = Arc::new(AtomicBool::new(stop_early));
    std::fs::create_dir_all(&config.out).unwrap();
    let mut t = build_trainer(config.clone(), contract, &data, resume, Device::Cpu, stop).unwrap();
    t.verbose = false;
    let outcome = t.run().unwrap();
    let losses = t.history.iter().map(|(s, _)| s.train_loss).collect();
    (outcome, losses)
}

type Weights = Vec<(String, Vec<f32>)>;

fn weights(path: &std::path::Path) -> Weights {
    let ck = checkpoint::load(path, &Device::Cpu).unwrap();
    let mut v: Vec<(String, Vec<f32>)> = ck
        .tensors
        .iter()
        .filter(|(n, _)| !n.starts_with("optim."))
        .map(|(n, t)| {
            (
                n.clone(),
                t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn short_run_on_real_faces_lowers_the_loss_and_beats_chance_on_gender() {
    let out = tempfile::tempdir().unwrap();
    let mut config = tiny_config(&utkface_dir(), out.path());
    config.limit = Some(512);
    config.epochs = 8;
    config.batch = 32;
    config.lr = 4e-3;
    let backbone: BackboneConfig = config.backbone.parse().unwrap();
    let contract = contract_for(&config, &backbone);
    let data = prepare_data(&config, &contract, Need::AllHeads).unwrap();
    assert_eq!(data.train.len() + data.val.len(), 512);
    let mut t = build_trainer(
        config,
        contract,
        &data,
        None,
        Device::Cpu,
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    t.verbose = false;
    assert_eq!(t.run().unwrap(), Outcome::Finished);
    let first = t.history.first().unwrap().0.train_loss;
    let last = t.history.last().unwrap().0.train_loss;
    assert!(last < first * 0.85, "training loss {first} -> {last}");
    let val = t.history.last().unwrap().1.as_ref().unwrap();
    let acc = val.report.summary()["gender_acc"].as_f64().unwrap();
    let female = data
        .val
        .samples
        .iter()
        .filter(|s| s.targets[1] == 1.0)
        .count() as f64;
    let chance = (female / data.val.len() as f64).max(1.0 - female / data.val.len() as f64);
    eprintln!(
        "gender accuracy {acc:.3}, majority class {chance:.3}, train loss {first:.3} -> {last:.3}"
    );
    assert!(
        acc > chance + 0.05,
        "gender accuracy {acc:.3} vs majority {chance:.3} on {} images",
        data.val.len()
    );
    assert!(
        out.path().join("best.safetensors").is_file() && out.path().join("log.jsonl").is_file()
    );
}

#[test]
fn a_checkpoint_round_trip_gives_identical_outputs() {
    let data = tempfile::tempdir().unwrap();
    host_train::synth::generate(data.path(), 80, 40, 5).unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut config = tiny_config(data.path(), out.path());
    config.epochs = 1;
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
    let x = Tensor::randn(0f32, 1.0, (3, 3, 32, 32), &Device::Cpu).unwrap();
    let before: Vec<Vec<Vec<f32>>> = t
        .net
        .forward_t(&x, false)
        .unwrap()
        .iter()
        .map(|o| o.to_vec2().unwrap())
        .collect();
    let (net, _vm, ck) =
        load_for_inference(&out.path().join("last.safetensors"), &Device::Cpu).unwrap();
    let after: Vec<Vec<Vec<f32>>> = net
        .forward_t(&x, false)
        .unwrap()
        .iter()
        .map(|o| o.to_vec2().unwrap())
        .collect();
    assert_eq!(before, after, "outputs differ after save + load");
    assert_eq!(ck.contract, t.contract);
    assert_eq!(ck.state.epoch, 1);
}

#[test]
fn resume_continues_the_same_trajectory() {
    let data = tempfile::tempdir().unwrap();
    host_train::synth::generate(data.path(), 96, 40, 9).unwrap();
    let straight = tempfile::tempdir().unwrap();
    let resumed = tempfile::tempdir().unwrap();
    let a = tiny_config(data.path(), straight.path());
    let b = tiny_config(data.path(), resumed.path());

    let (outcome, losses_a) = trainer_run(&a, None, false);
    assert_eq!(outcome, Outcome::Finished);
    // Interrupted after the first step (as Ctrl-C would), then resumed from last.safetensors.
    let (outcome, _) = trainer_run(&b, None, true);
    assert_eq!(outcome, Outcome::Interrupted);
    let last = resumed.path().join("last.safetensors");
    let ck = checkpoint::load(&last, &Device::Cpu).unwrap();
    assert_eq!(
        (ck.state.epoch, ck.state.step_in_epoch, ck.state.global_step),
        (0, 1, 1)
    );
    let (outcome, losses_b) = trainer_run(&b, Some(&last), false);
    assert_eq!(outcome, Outcome::Finished);

    let (wa, wb) = (
        weights(&straight.path().join("last.safetensors")),
        weights(&last),
    );
    assert_eq!(wa.len(), wb.len());
    for ((na, va), (nb, vb)) in wa.iter().zip(&wb) {
        assert_eq!(na, nb);
        let diff = va
            .iter()
            .zip(vb)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(diff <= 1e-6, "{na}: resumed weights differ by {diff}");
    }
    // The second epoch ran in full in both runs: same loss.
    assert!(
        (losses_a[1] - losses_b[1]).abs() < 1e-6,
        "{losses_a:?} vs {losses_b:?}"
    );
}

#[test]
fn a_corrupt_checkpoint_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("last.safetensors");
    std::fs::write(&p, b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":").unwrap();
    let e = checkpoint::load(&p, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("last.safetensors"), "{e}");
    // A plain safetensors file without our metadata is refused too.
    let t = Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu).unwrap();
    candle_core::safetensors::save(&std::collections::HashMap::from([("x".to_string(), t)]), &p)
        .unwrap();
    let e = checkpoint::load(&p, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no HydraNet checkpoint metadata"), "{e}");
}

#[test]
fn both_kernel_paths_follow_the_same_trajectory() {
    // Same seed, same data: Candle's ops and the fast kernels compute the same math, so the
    // per-epoch losses and the trained weights agree up to float rounding.
    let data = tempfile::tempdir().unwrap();
    host_train::synth::generate(data.path(), 96, 40, 4).unwrap();
    let runs: Vec<(Vec<f64>, Weights)> = [Kernels::Candle, Kernels::Fast]
        .into_iter()
        .map(|k| {
            let out = tempfile::tempdir().unwrap();
            let config = TrainConfig {
                kernels: k,
                val_fraction: std::env::var("VALF")
                    .map(|v| v.parse().unwrap())
                    .unwrap_or(0.25),
                ..tiny_config(data.path(), out.path())
            };
            let (outcome, losses) = trainer_run(&config, None, false);
            assert_eq!(outcome, Outcome::Finished);
            (losses, weights(&out.path().join("last.safetensors")))
        })
        .collect();
    let ((la, wa), (lb, wb)) = (&runs[0], &runs[1]);
    eprintln!("per-epoch train loss: candle {la:?}, fast {lb:?}");
    for (a, b) in la.iter().zip(lb) {
        assert!((a - b).abs() <= 1e-4 * a.abs(), "{la:?} vs {lb:?}");
    }
    let mut worst = 0.0f32;
    for ((na, va), (nb, vb)) in wa.iter().zip(wb) {
        assert_eq!(na, nb);
        let scale = va.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(1e-3);
        let d = va
            .iter()
            .zip(vb)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
            / scale;
        worst = worst.max(d);
    }
    eprintln!("largest weight difference relative to the tensor's range: {worst:e}");
    assert!(worst < 1e-2, "weights drifted apart by {worst}");
}
