//! `edge-runtime bench`: latency percentiles and throughput, warm-up excluded. The file may
//! be a HydraNet or the face detector (a file without a contract is tried as BlazeFace).
use std::{path::PathBuf, process::ExitCode, time::Instant};

use anyhow::{Context, Result};
use edge_runtime::{
    detect::Detector,
    stats::{peak_rss_bytes, quantile},
    Engine,
};

/// What is benchmarked.
enum Net {
    HydraNet(Box<Engine>),
    Detector(Box<Detector>),
}
use serde_json::json;

/// Arguments of `bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// ONNX model file: a HydraNet, or the BlazeFace face detector.
    #[arg(long)]
    model: PathBuf,
    /// Images per run.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// tract threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Untimed warm-up runs.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// Timed runs.
    #[arg(long, default_value_t = 200)]
    iters: usize,
    #[command(flatten)]
    int8: super::Int8KernelArg,
}

pub fn run(a: Args) -> Result<ExitCode> {
    super::set_threads(a.threads)?;
    let t_load = Instant::now();
    let net = match a.int8.load(&a.model, a.batch) {
        Ok(engine) => Net::HydraNet(Box::new(engine)),
        Err(e) if matches!(e.downcast_ref(), Some(edge_runtime::Error::Contract { .. })) => {
            anyhow::ensure!(a.batch == 1, "the face detector runs one frame at a time");
            Net::Detector(Box::new(
                Detector::load(&a.model, Default::default())
                    .with_context(|| format!("{} has no HydraNet contract", a.model.display()))?,
            ))
        }
        Err(e) => return Err(e),
    };
    let load_s = t_load.elapsed().as_secs_f64();
    let n = match &net {
        Net::HydraNet(e) => e.batch() * e.contract().preprocess.input_len(),
        Net::Detector(d) => (d.input_size() as usize).pow(2) * 3,
    };
    // A fixed, non-trivial input (a sine pattern): no RNG crate needed for a benchmark.
    let input: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.37).sin() * 1.5).collect();
    let run = || -> Result<()> {
        match &net {
            Net::HydraNet(e) => drop(e.run_raw(&input)?),
            Net::Detector(d) => drop(d.run_raw(&input)?),
        }
        Ok(())
    };
    for _ in 0..a.warmup {
        run()?;
    }
    let mut lat = Vec::with_capacity(a.iters);
    let t0 = Instant::now();
    for _ in 0..a.iters.max(1) {
        let t = Instant::now();
        run()?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let wall = t0.elapsed().as_secs_f64();
    lat.sort_by(|x, y| x.total_cmp(y));
    let size = std::fs::metadata(&a.model).map(|m| m.len()).unwrap_or(0);
    let convolutions = match &net {
        Net::HydraNet(e) => e.fused().convolutions,
        Net::Detector(_) => 0,
    };
    let line = json!({
        "runtime": "tract",
        "model": a.model.display().to_string(),
        "model_bytes": size,
        "batch": a.batch,
        "threads": a.threads,
        "kind": match net { Net::HydraNet(_) => "hydranet", Net::Detector(_) => "face detector" },
        "int8_kernel": format!("{:?}", a.int8.kernel()).to_lowercase(),
        // The inner loop those convolutions run (HYDRANET_INT8_TILE overrides the fastest).
        "int8_tile": (convolutions > 0).then(|| edge_runtime::qconv::Tile::chosen().map_or("unavailable", |t| t.name)),
        "int8_convolutions": convolutions,
        "iters": lat.len(),
        "p50_ms": quantile(&lat, 0.5),
        "p90_ms": quantile(&lat, 0.9),
        "p99_ms": quantile(&lat, 0.99),
        "mean_ms": lat.iter().sum::<f64>() / lat.len() as f64,
        "img_per_s": (lat.len() * a.batch) as f64 / wall,
        "load_s": load_s,
        "peak_rss_bytes": peak_rss_bytes(),
    });
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}
