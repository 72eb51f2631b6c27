//! Devices: checkpoints are device-independent (host copies in the file, tensors created on
//! whichever device loads them), a step-limited run logs the same per-step losses wherever
//! it runs, and a device the build cannot open is one clear error from every subcommand.
//!
//! Every device this build can open is tried: the CPU always; the first CUDA GPU too when
//! host-train is built with `cuda` on a machine that has one (elsewhere the CUDA half of
//! each test is skipped with a note, and the CPU half still runs).
mod common;

use std::{
    path::Path,
    process::Command,
    sync::{atomic::AtomicBool, Arc},
};

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use common::tiny_config;
use host_train::{
    net::BackboneConfig,
    train::{
        checkpoint,
        setup::{build_trainer, contract_for, load_for_inference, prepare_data, Need},
        trainer::Outcome,
        TrainConfig,
    },
};

/// The CPU, then the first CUDA GPU if this build has the feature and the machine a GPU.
fn devices() -> Vec<(&'static str, Device)> {
    #[allow(unused_mut)]
    let mut v = vec![("cpu", Device::Cpu)];
    #[cfg(feature = "cuda")]
    match host_train::device::open("cuda:0") {
        Ok(d) => v.push(("cuda:0", d)),
        Err(e) => eprintln!("no CUDA device, CPU only: {e}"),
    }
    v
}

/// Largest |a - b| over two equally long lists of vectors.
fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

/// Trains `config` for one epoch on the CPU; returns the checkpoint written.
fn trained_checkpoint(config: &TrainConfig) -> std::path::PathBuf {
    let backbone: BackboneConfig = config.backbone.parse().unwrap();
    let contract = contract_for(config, &backbone);
    let data = prepare_data(config, &contract, Need::AllHeads).unwrap();
    let mut t = build_trainer(
        config.clone(),
        contract,
        &data,
        None,
        Device::Cpu,
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    t.verbose = false;
    assert_eq!(t.run().unwrap(), Outcome::Finished);
    config.out.join("last.safetensors")
}

/// Every output of the network at `path`, loaded onto `dev`, for a fixed input batch.
fn outputs(path: &Path, dev: &Device) -> Vec<Vec<f32>> {
    let (net, varmap, _) = load_for_inference(path, dev).unwrap();
    for v in varmap.all_vars() {
        assert!(v.device().same_device(dev), "a variable is not on {dev:?}");
    }
    let x: Vec<f32> = (0..2 * 3 * 32 * 32)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let x = Tensor::from_vec(x, (2, 3, 32, 32), dev).unwrap();
    net.forward_t(&x, false)
        .unwrap()
        .iter()
        .map(|o| {
            o.to_device(&Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        })
        .collect()
}

/// Every tensor of a checkpoint read on the CPU, by name, as host values.
fn host_tensors(path: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let ck = checkpoint::load(path, &Device::Cpu).unwrap();
    let mut v: Vec<_> = ck
        .tensors
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.dims().to_vec(),
                t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn a_checkpoint_loads_onto_each_device_and_gives_the_same_outputs() {
    let data = tempfile::tempdir().unwrap();
    host_train::synth::generate(data.path(), 80, 40, 5).unwrap();
    let out = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        epochs: 1,
        ..tiny_config(data.path(), out.path())
    };
    let path = trained_checkpoint(&config);
    let reference = outputs(&path, &Device::Cpu);
    for (name, dev) in devices() {
        let got = outputs(&path, &dev);
        let diff = max_diff(&reference, &got);
        eprintln!("{name}: outputs differ from the CPU's by at most {diff:e}");
        if dev.is_cpu() {
            assert_eq!(diff, 0.0, "{name}: a CPU reload must give the same bits");
        } else {
            assert!(diff <= 1e-3, "{name}: outputs differ by {diff}");
        }
    }
}

#[test]
fn saving_from_any_device_writes_host_copies_that_load_anywhere() {
    let data = tempfile::tempdir().unwrap();
    host_train::synth::generate(data.path(), 80, 40, 6).unwrap();
    let out = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        epochs: 1,
        ..tiny_config(data.path(), out.path())
    };
    let path = trained_checkpoint(&config);
    let original = host_tensors(&path);
    assert!(original.iter().any(|(n, _, _)| n.starts_with("optim.")));
    for (name, dev) in devices() {
        // Every tensor (weights, BatchNorm statistics, optimiser moments) on `dev`, saved
        // from there through the same path training uses.
        let ck = checkpoint::load(&path, &dev).unwrap();
        let varmap = VarMap::new();
        {
            let mut vars = varmap.data().lock().unwrap();
            for (n, t) in &ck.tensors {
                assert!(
                    t.device().same_device(&dev),
                    "{n} was not loaded onto {name}"
                );
                vars.insert(n.clone(), Var::from_tensor(t).unwrap());
            }
        }
        let copy = out
            .path()
            .join(format!("from-{}.safetensors", name.replace(':', "")));
        checkpoint::save(&[&copy], &ck.contract, &ck.config, &ck.state, &varmap, &[]).unwrap();
        assert_eq!(
            host_tensors(&copy),
            original,
            "{name}: a checkpoint saved from this device differs from the one it loaded"
        );
        let back = checkpoint::load(&copy, &Device::Cpu).unwrap();
        assert_eq!(
            (back.contract, back.config, back.state),
            (ck.contract, ck.config, ck.state)
        );
    }
}

/// Per-step `(global_step, loss)` of a run's log.jsonl.
fn step_losses(run: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["event"] == "step")
        .map(|v| {
            (
                v["global_step"].as_u64().unwrap(),
                v["loss"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn run_steps(
    config: &TrainConfig,
    dev: Device,
    resume: Option<&Path>,
    max_steps: Option<u64>,
) -> Outcome {
    let backbone: BackboneConfig = config.backbone.parse().unwrap();
    let contract = contract_for(config, &backbone);
    let data = prepare_data(config, &contract, Need::AllHeads).unwrap();
    std::fs::create_dir_all(&config.out).unwrap();
    let mut t = build_trainer(
        config.clone(),
        contract,
        &data,
        resume,
        dev,
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    t.verbose = false;
    t.log_steps = true;
    t.max_steps = max_steps;
    t.run().unwrap()
}

#[test]
fn max_steps_stops_logs_every_step_and_resumes_on_the_same_trajectory() {
    let data = tempfile::tempdir().unwrap();
    host_train::synth::generate(data.path(), 96, 40, 8).unwrap();
    // About 72 training images (the split is by name hash) / batch 16: 4 steps an epoch.
    let straight = tempfile::tempdir().unwrap();
    let config = tiny_config(data.path(), straight.path());
    assert_eq!(
        run_steps(&config, Device::Cpu, None, None),
        Outcome::Finished
    );
    let full = step_losses(straight.path());
    let n = full.len() as u64;
    assert!(n >= 6, "{full:?}");
    assert_eq!(
        full.iter().map(|s| s.0).collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>()
    );

    for (name, dev) in devices() {
        // Stop mid-epoch after 2 steps, then resume to the end.
        let split = tempfile::tempdir().unwrap();
        let config = tiny_config(data.path(), split.path());
        assert_eq!(
            run_steps(&config, dev.clone(), None, Some(2)),
            Outcome::StepLimit
        );
        let log = std::fs::read_to_string(split.path().join("log.jsonl")).unwrap();
        assert!(log.contains(r#""event":"max_steps""#), "{log}");
        let ck = checkpoint::load(&split.path().join("last.safetensors"), &Device::Cpu).unwrap();
        assert_eq!(
            (ck.state.epoch, ck.state.step_in_epoch, ck.state.global_step),
            (0, 2, 2)
        );
        let last = split.path().join("last.safetensors");
        assert_eq!(
            run_steps(&config, dev.clone(), Some(&last), None),
            Outcome::Finished
        );
        let resumed = step_losses(split.path());
        assert_eq!(
            resumed.iter().map(|s| s.0).collect::<Vec<_>>(),
            (1..=n).collect::<Vec<_>>()
        );
        let worst = full
            .iter()
            .zip(&resumed)
            .map(|((_, a), (_, b))| ((a - b) / a).abs())
            .fold(0.0, f64::max);
        eprintln!(
            "{name}: step losses differ from the straight CPU run by at most {worst:e} (relative)"
        );
        // The CPU repeats itself (resume is exact up to the last rounding of the weights);
        // another device runs other kernels: same math, other rounding.
        let tolerance = if dev.is_cpu() { 1e-5 } else { 1e-2 };
        assert!(worst <= tolerance, "{name}: {full:?} vs {resumed:?}");
    }
}

#[test]
fn a_device_this_build_cannot_open_is_one_clear_error_in_every_subcommand() {
    let data = tempfile::tempdir().unwrap();
    host_train::synth::generate(data.path(), 40, 40, 2).unwrap();
    let out = tempfile::tempdir().unwrap();
    let run_dir = out.path().join("run");
    let (d, r) = (data.path().to_str().unwrap(), run_dir.to_str().unwrap());
    let ck = run_dir.join("last.safetensors");
    let onnx = out.path().join("m.onnx");
    let cases: [Vec<&str>; 4] = [
        vec!["train", "--data", d, "--out", r, "--device", "cuda:7"],
        vec![
            "eval",
            "--checkpoint",
            ck.to_str().unwrap(),
            "--data",
            d,
            "--device",
            "cuda:7",
        ],
        vec![
            "export",
            "--checkpoint",
            ck.to_str().unwrap(),
            "--out",
            onnx.to_str().unwrap(),
            "--device",
            "cuda:7",
        ],
        vec![
            "bench", "--steps", "1", "--warmup", "0", "--device", "cuda:7",
        ],
    ];
    for args in cases {
        let o = Command::new(env!("CARGO_BIN_EXE_host-train"))
            .args(&args)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        #[cfg(not(feature = "cuda"))]
        assert!(
            err.contains(
                "cuda:7 requested, but this host-train was built without the `cuda` feature"
            ),
            "{args:?}: {err}"
        );
        // With the feature, no machine here has eight GPUs.
        #[cfg(feature = "cuda")]
        assert!(err.contains("cannot open CUDA device 7"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    assert!(!onnx.exists() && !ck.exists());
}
