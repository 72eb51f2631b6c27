//! `host-train bench`: training-step throughput on random data, in the same shape as the
//! PyTorch reference's `--bench` line so the two can be compared side by side.
use std::{process::ExitCode, time::Instant};

use anyhow::{Context, Result};
use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
use host_train::{
    device,
    kernels::Kernels,
    net::{BackboneConfig, HydraNet},
    train::{
        loss::{head_loss, LossCombiner, LossWeighting},
        optim::{trainable, Optimizer, OptimizerKind},
    },
};
use models::{heads::utkface_heads, HeadKind};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

/// Arguments of `bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Body.
    #[arg(long, default_value = "resnet18")]
    backbone: String,
    /// Square input size.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Batch size.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Timed steps (the median is reported).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Optimiser.
    #[arg(long, value_enum, default_value_t = OptimizerKind::Adamw)]
    optimizer: OptimizerKind,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Kernel paths to measure, one after the other in this run (one JSON line each).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "candle,fast")]
    kernels: Vec<Kernels>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn run(a: Args) -> Result<ExitCode> {
    for &k in &a.kernels {
        bench(&a, k)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn bench(a: &Args, kernels: Kernels) -> Result<()> {
    let dev = device::open(&a.device)?;
    let backbone: BackboneConfig = a.backbone.parse().map_err(anyhow::Error::msg)?;
    let heads = utkface_heads();
    let (net, varmap) = HydraNet::fresh(&backbone, &heads, kernels, 0, &dev)?;
    let loss = LossCombiner::new(
        LossWeighting::Sum,
        &[],
        &heads,
        VarBuilder::from_varmap(&varmap, DType::F32, &dev).pp(host_train::names::LOSS),
    )?;
    let mut opt =
        Optimizer::new(a.optimizer, trainable(&varmap), 1e-4, 0.9)?.fused(kernels == Kernels::Fast);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let n = a.batch;
    let x: Vec<f32> = (0..n * 3 * a.size * a.size)
        .map(|_| rng.random_range(-2.0..2.0))
        .collect();
    let x = Tensor::from_vec(x, (n, 3, a.size, a.size), &dev)?;
    let targets = heads
        .iter()
        .map(|h| match &h.kind {
            HeadKind::Regression { .. } => Tensor::from_vec(
                (0..n)
                    .map(|_| rng.random_range(-1.5..2.0f32))
                    .collect::<Vec<_>>(),
                n,
                &dev,
            ),
            HeadKind::Binary { .. } => Tensor::from_vec(
                (0..n)
                    .map(|_| rng.random_range(0..2) as f32)
                    .collect::<Vec<_>>(),
                n,
                &dev,
            ),
            HeadKind::Multiclass { labels } => Tensor::from_vec(
                (0..n)
                    .map(|_| rng.random_range(0..labels.len() as u32))
                    .collect::<Vec<_>>(),
                n,
                &dev,
            ),
            HeadKind::Distribution { min, max, .. } => {
                let centres = h.kind.centres();
                let mut q = vec![0f32; n * centres.len()];
                for row in q.chunks_mut(centres.len()) {
                    host_train::train::loss::two_hot(&centres, rng.random_range(*min..*max), row);
                }
                Tensor::from_vec(q, (n, centres.len()), &dev)
            }
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    let (mut fw, mut bw, mut op, mut tot) = (vec![], vec![], vec![], vec![]);
    for i in 0..a.warmup + a.steps {
        let t0 = Instant::now();
        let outs = net.forward_t(&x, true)?;
        let losses = heads
            .iter()
            .zip(&outs)
            .zip(&targets)
            .map(|((h, o), t)| head_loss(h, o, t))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let l = loss.combine(&losses)?;
        // Reading the loss forces the forward to finish on lazy devices.
        let _ = l.to_scalar::<f32>()?;
        let t1 = Instant::now();
        let grads = l.backward()?;
        // GPU kernels are queued: wait for them so the backward time is the backward's.
        dev.synchronize().context("synchronising the device")?;
        let t2 = Instant::now();
        opt.step(&grads, 1e-3)?;
        dev.synchronize().context("synchronising the device")?;
        let t3 = Instant::now();
        if i >= a.warmup {
            fw.push((t1 - t0).as_secs_f64());
            bw.push((t2 - t1).as_secs_f64());
            op.push((t3 - t2).as_secs_f64());
            tot.push((t3 - t0).as_secs_f64());
        }
    }
    let step = median(&mut tot);
    let line = json!({
        "impl": "candle",
        "kernels": kernels.to_string(),
        "device": a.device,
        "backbone": backbone.to_string(),
        "size": a.size,
        "batch": n,
        "threads": candle_core::utils::get_num_threads(),
        "step_s_median": step,
        "forward_s": median(&mut fw),
        "backward_s": median(&mut bw),
        "optimizer_s": median(&mut op),
        "img_per_s": n as f64 / step,
    });
    println!("{line}");
    Ok(())
}
