//! Weight averaging: `train --keep-epochs` keeps the trajectory, `average` takes the
//! element-wise mean and recomputes BatchNorm statistics that match the averaged weights.
mod common;

use std::{
    path::{Path, PathBuf},
    sync::{atomic::AtomicBool, Arc},
};

use candle_core::{Device, Tensor};
use common::{host_train, tiny_config};
use host_train::{
    data::{AugmentConfig, Batcher},
    net::BackboneConfig,
    train::{
        average::{average, average_checkpoints},
        checkpoint,
        setup::{build_trainer, contract_for, load_for_inference, prepare_data, Need},
        TrainConfig,
    },
};

/// A two-epoch run on synthetic faces that keeps each epoch's checkpoint.
fn run_keeping_epochs(data: &Path, out: &Path, input_size: u32) -> TrainConfig {
    let mut config = tiny_config(data, out);
    config.input_size = input_size;
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
    t.keep_epochs = true;
    t.run().unwrap();
    config
}

fn epoch_file(out: &Path, epoch: usize) -> PathBuf {
    out.join(format!("epoch-{epoch:03}.safetensors"))
}

fn outputs(path: &Path, x: &Tensor, train: bool) -> Vec<Vec<f32>> {
    let (net, _vm, _ck) = load_for_inference(path, &Device::Cpu).unwrap();
    net.forward_t(x, train)
        .unwrap()
        .iter()
        .map(|o| o.flatten_all().unwrap().to_vec1().unwrap())
        .collect()
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn keep_epochs_saves_every_epoch_and_the_mean_is_element_wise() {
    let data = tempfile::tempdir().unwrap();
    host_train::synth::generate(data.path(), 80, 40, 11).unwrap();
    let out = tempfile::tempdir().unwrap();
    run_keeping_epochs(data.path(), out.path(), 32);
    let (e1, e2) = (epoch_file(out.path(), 1), epoch_file(out.path(), 2));
    assert!(e1.is_file() && e2.is_file());
    // The last epoch's kept file holds the run's last checkpoint.
    let last = checkpoint::load(&out.path().join("last.safetensors"), &Device::Cpu).unwrap();
    let kept = checkpoint::load(&e2, &Device::Cpu).unwrap();
    assert_eq!(kept.state, last.state);
    assert_eq!(kept.tensors.len(), last.tensors.len());
    for (name, t) in &last.tensors {
        let a: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = kept.tensors[name].flatten_all().unwrap().to_vec1().unwrap();
        assert!(a == b, "`{name}` differs between last and epoch-002");
    }

    let mean = average(&[&e1, &e2], &Device::Cpu).unwrap();
    let a = checkpoint::load(&e1, &Device::Cpu).unwrap();
    let b = checkpoint::load(&e2, &Device::Cpu).unwrap();
    assert!(mean.tensors.keys().all(|n| !n.starts_with("optim.")));
    let model_tensors = a
        .tensors
        .keys()
        .filter(|n| !n.starts_with("optim."))
        .count();
    assert_eq!(mean.tensors.len(), model_tensors);
    let mut moved = 0;
    for (name, m) in &mean.tensors {
        let m: Vec<f32> = m.flatten_all().unwrap().to_vec1().unwrap();
        let x: Vec<f32> = a.tensors[name].flatten_all().unwrap().to_vec1().unwrap();
        let y: Vec<f32> = b.tensors[name].flatten_all().unwrap().to_vec1().unwrap();
        for ((m, x), y) in m.iter().zip(&x).zip(&y) {
            let want = ((*x as f64 + *y as f64) / 2.0) as f32;
            assert_eq!(*m, want, "`{name}`");
        }
        moved += usize::from(x != y);
    }
    assert!(
        moved > 10,
        "the two epochs should differ ({moved} tensors moved)"
    );
}

#[test]
fn recomputed_batch_norm_matches_the_batch_statistics_of_the_averaged_weights() {
    let data = tempfile::tempdir().unwrap();
    host_train::synth::generate(data.path(), 80, 40, 12).unwrap();
    let out = tempfile::tempdir().unwrap();
    let config = run_keeping_epochs(data.path(), out.path(), 32);
    let (e1, e2) = (epoch_file(out.path(), 1), epoch_file(out.path(), 2));

    // The training split as one batch: after the recomputation, inference mode on it must
    // give what training mode (the batch's own statistics) gives.
    let backbone: BackboneConfig = config.backbone.parse().unwrap();
    let contract = contract_for(&config, &backbone);
    let prepared = prepare_data(&config, &contract, Need::AllHeads).unwrap();
    let n = prepared.train.len();
    let batch = Batcher::new(&prepared.train, &contract.heads, AugmentConfig::NONE, 0)
        .batch(&(0..n).collect::<Vec<_>>(), 0, false, &Device::Cpu)
        .unwrap();

    let recomputed = out.path().join("swa.safetensors");
    let summary =
        average_checkpoints(&[&e1, &e2], &recomputed, None, false, n, &Device::Cpu).unwrap();
    assert_eq!(summary.sources, 2);
    assert_eq!(summary.batch_norm_images, Some(n));
    let kept = out.path().join("kept.safetensors");
    average_checkpoints(&[&e1, &e2], &kept, None, true, n, &Device::Cpu).unwrap();

    let train_mode = outputs(&recomputed, &batch.input, true);
    let gap_recomputed = max_abs_diff(&outputs(&recomputed, &batch.input, false), &train_mode);
    let gap_kept = max_abs_diff(&outputs(&kept, &batch.input, false), &train_mode);
    // Not zero: running variances are unbiased, the batch normalisation is not.
    assert!(
        gap_recomputed < 0.05,
        "inference vs batch statistics: {gap_recomputed}"
    );
    assert!(
        gap_kept > 2.0 * gap_recomputed,
        "averaged statistics ({gap_kept}) should be further off than recomputed ({gap_recomputed})"
    );

    let ck = checkpoint::load(&recomputed, &Device::Cpu).unwrap();
    assert!(ck.tensors.keys().all(|n| !n.starts_with("optim.")));
    let from = &ck.contract.training["averaged_from"];
    assert!(
        from.contains("epoch-001") && from.contains("epoch-002"),
        "{from}"
    );
    assert!(ck.contract.training["batch_norm"].starts_with(&format!("recomputed on {n} ")));
}

#[test]
fn the_mean_of_one_checkpoint_twice_is_that_checkpoint() {
    let data = tempfile::tempdir().unwrap();
    host_train::synth::generate(data.path(), 80, 40, 13).unwrap();
    let out = tempfile::tempdir().unwrap();
    run_keeping_epochs(data.path(), out.path(), 32);
    let e2 = epoch_file(out.path(), 2);
    let twice = out.path().join("twice.safetensors");
    let (ok, stdout, stderr) = host_train(&[
        "average",
        "--keep-batch-norm",
        "--out",
        twice.to_str().unwrap(),
        e2.to_str().unwrap(),
        e2.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("mean of 2 checkpoints"), "{stdout}");
    let x = Tensor::randn(0f32, 1.0, (2, 3, 32, 32), &Device::Cpu).unwrap();
    assert_eq!(outputs(&twice, &x, false), outputs(&e2, &x, false));
}

#[test]
fn checkpoints_of_different_models_are_refused_naming_the_file() {
    let data = tempfile::tempdir().unwrap();
    host_train::synth::generate(data.path(), 80, 40, 14).unwrap();
    let (small, large) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run_keeping_epochs(data.path(), small.path(), 32);
    run_keeping_epochs(data.path(), large.path(), 40);
    let other = epoch_file(large.path(), 1);
    let err = average(&[&epoch_file(small.path(), 1), &other], &Device::Cpu)
        .err()
        .expect("different input sizes must not average");
    let msg = err.to_string();
    assert!(msg.contains(&other.display().to_string()), "{msg}");
    assert!(msg.contains("40x40"), "{msg}");

    let out = small.path().join("x.safetensors");
    let (ok, _, stderr) = host_train(&[
        "average",
        "--out",
        out.to_str().unwrap(),
        epoch_file(small.path(), 1).to_str().unwrap(),
    ]);
    assert!(!ok, "one checkpoint is not an average");
    assert!(stderr.contains("CHECKPOINT"), "{stderr}");
    let missing = small.path().join("missing.safetensors");
    let (ok, _, stderr) = host_train(&[
        "average",
        "--out",
        out.to_str().unwrap(),
        epoch_file(small.path(), 1).to_str().unwrap(),
        missing.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(stderr.contains("missing.safetensors"), "{stderr}");
    assert!(!out.exists(), "nothing is written on failure");
}

/// An exported file's folded norms come back as identity norms: exact in inference mode,
/// but training mode divides by each batch's statistics and rescales every channel.
/// Unfolded (`train --init-from` does it), inference mode gives the folded network's
/// outputs and training mode nearly the same.
#[test]
fn an_exported_model_unfolds_so_that_training_mode_computes_what_it_infers() {
    use host_train::{
        export::{export_checkpoint, ExportOptions},
        train::{
            finetune::load_model,
            setup::inference_net,
            unfold::{identity_norms, unfold_batch_norm},
        },
    };
    let data = tempfile::tempdir().unwrap();
    host_train::synth::generate(data.path(), 80, 40, 13).unwrap();
    let out = tempfile::tempdir().unwrap();
    let config = run_keeping_epochs(data.path(), out.path(), 32);
    let onnx = out.path().join("exported.onnx");
    export_checkpoint(&epoch_file(out.path(), 2), &onnx, &ExportOptions::default()).unwrap();
    let ck = load_model(&onnx, &Device::Cpu).unwrap();
    let prepared = prepare_data(&config, &ck.contract, Need::ImagesOnly).unwrap();
    let n = prepared.train.len();
    let x = Batcher::new(&prepared.train, &ck.contract.heads, AugmentConfig::NONE, 0)
        .batch(&(0..n).collect::<Vec<_>>(), 0, false, &Device::Cpu)
        .unwrap()
        .input;
    let run = |net: &host_train::net::HydraNet, train: bool| -> Vec<Vec<f32>> {
        net.forward_t(&x, train)
            .unwrap()
            .iter()
            .map(|o| o.flatten_all().unwrap().to_vec1().unwrap())
            .collect()
    };

    // As imported: every norm is an identity norm; training mode is far from inference.
    let (folded, _) = inference_net(&ck, &onnx, &Device::Cpu).unwrap();
    let inferred = run(&folded, false);
    let (net, varmap) = inference_net(&ck, &onnx, &Device::Cpu).unwrap();
    let norms = identity_norms(&varmap).unwrap();
    assert_eq!(
        norms.len(),
        12,
        "resnet10: stem, 8 in blocks, 3 downsample: {norms:?}"
    );
    let gap_folded = max_abs_diff(&run(&net, true), &inferred);
    // Statistics of two batches of 16 training images.
    let unfold = |net: &host_train::net::HydraNet,
                  varmap: &candle_nn::VarMap,
                  heads: &[models::HeadSpec]| {
        unfold_batch_norm(net, varmap, &prepared.train, heads, 16, 2, &Device::Cpu).unwrap()
    };

    let (net, varmap) = inference_net(&ck, &onnx, &Device::Cpu).unwrap();
    let r = unfold(&net, &varmap, &ck.contract.heads);
    assert_eq!((r.norms, r.images), (12, 32));
    assert!(identity_norms(&varmap).unwrap().is_empty());
    let scale = inferred
        .iter()
        .flatten()
        .fold(0.0f32, |m, v| m.max(v.abs()));
    let gap_eval = max_abs_diff(&run(&net, false), &inferred);
    assert!(
        gap_eval <= 1e-4 * scale.max(1.0),
        "inference must not change: {gap_eval} (outputs up to {scale})"
    );
    let gap_unfolded = max_abs_diff(&run(&net, true), &inferred);
    assert!(
        gap_unfolded * 4.0 < gap_folded,
        "training mode vs inference: unfolded {gap_unfolded}, folded {gap_folded}"
    );
    eprintln!("gaps: folded {gap_folded}, unfolded {gap_unfolded}, eval {gap_eval}, scale {scale}");
    // A network with real statistics is left alone.
    let (net, varmap, ck) = load_for_inference(&epoch_file(out.path(), 2), &Device::Cpu).unwrap();
    let r = unfold(&net, &varmap, &ck.contract.heads);
    assert_eq!(r.norms, 0);

    // Made from an exported file, a checkpoint holds folded norms: averaging refuses it by
    // name, with or without images for the statistics.
    let imported = out.path().join("imported.safetensors");
    let ck = load_model(&onnx, &Device::Cpu).unwrap();
    checkpoint::save_tensors(&imported, &ck.contract, &ck.config, &ck.state, ck.tensors).unwrap();
    // `train --init-from` an imported checkpoint unfolds it before the first step.
    let mut again = config.clone();
    again.init_from = Some(imported.clone());
    again.out = out.path().join("again");
    let backbone: BackboneConfig = again.backbone.parse().unwrap();
    let t = build_trainer(
        again.clone(),
        contract_for(&again, &backbone),
        &prepared,
        None,
        Device::Cpu,
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    assert!(
        t.contract.training["init_from_unfolded"].starts_with("12 norms"),
        "{:?}",
        t.contract.training
    );
    assert!(identity_norms(&t.varmap).unwrap().is_empty());

    for bn_data in [None, Some(data.path())] {
        let err = average_checkpoints(
            &[&epoch_file(out.path(), 1), &imported],
            &out.path().join("x.safetensors"),
            bn_data,
            false,
            16,
            &Device::Cpu,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("imported.safetensors") && err.contains("folded BatchNorm"),
            "{err}"
        );
    }
}
