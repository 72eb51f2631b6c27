//! `edge-runtime kernels`: the integer convolution alone, on the shapes of the shipped body
//! (ResNet10 at half width, 112 px, the flip's two images), once per tile this CPU runs and
//! per thread count: one JSON line per layer, then one per tile with the whole body's sum.
//! What a board's owner runs to see which tile wins there (scripts/board-bench.sh).
use std::{process::ExitCode, time::Instant};

use anyhow::Result;
use edge_runtime::qconv::{
    kernel::{Geometry, QConv},
    Tile,
};
use serde_json::json;
use tract_linalg::multithread::{multithread_tract_scope, Executor};

/// Arguments of `kernels`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Thread counts to time, e.g. `1,2,4`.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Timed runs per layer (the median is reported).
    #[arg(long, default_value_t = 50)]
    iters: usize,
    /// Images per run (2: the shipped file's test-time flip).
    #[arg(long, default_value_t = 2)]
    batch: usize,
}

/// `(name, input channels, output channels, kernel, stride, input side, count in the body)`.
const BODY: [(&str, usize, usize, usize, usize, usize, usize); 10] = [
    ("stem 7x7/2", 3, 32, 7, 2, 112, 1),
    ("layer1 3x3", 32, 32, 3, 1, 28, 2),
    ("layer2 3x3/2", 32, 64, 3, 2, 28, 1),
    ("layer2 1x1/2", 32, 64, 1, 2, 28, 1),
    ("layer2 3x3", 64, 64, 3, 1, 14, 1),
    ("layer3 3x3/2", 64, 128, 3, 2, 14, 1),
    ("layer3 1x1/2", 64, 128, 1, 2, 14, 1),
    ("layer3 3x3", 128, 128, 3, 1, 7, 1),
    ("layer4 3x3/2", 128, 256, 3, 2, 7, 1),
    ("layer4 3x3", 256, 256, 3, 1, 4, 1),
];

pub fn run(a: Args) -> Result<ExitCode> {
    anyhow::ensure!(
        a.iters >= 1 && a.batch >= 1,
        "--iters and --batch must be at least 1"
    );
    anyhow::ensure!(
        a.threads.iter().all(|&t| t >= 1),
        "--threads must be at least 1"
    );
    for tile in Tile::available() {
        for &threads in &a.threads {
            let exec = if threads == 1 {
                Executor::SingleThread
            } else {
                Executor::multithread(threads)
            };
            let (mut body_us, mut body_macs) = (0.0, 0.0);
            for &(name, c, m, k, s, side, count) in &BODY {
                let geo = Geometry {
                    c,
                    m,
                    kh: k,
                    kw: k,
                    sh: s,
                    sw: s,
                    pads: [k / 2; 4],
                };
                let weights: Vec<i8> = (0..m * c * k * k).map(|i| (i % 255) as u8 as i8).collect();
                let mut conv = QConv::new(geo, &weights, &vec![0.01; m], None, 0.02, 3, true)?;
                conv.set_tile(tile);
                let (oh, ow) = geo
                    .output_hw(side, side)
                    .ok_or_else(|| anyhow::anyhow!("{name}: the kernel does not fit"))?;
                let x: Vec<f32> = (0..a.batch * c * side * side)
                    .map(|i| ((i as f32) * 0.37).sin())
                    .collect();
                let mut out = vec![0f32; a.batch * m * oh * ow];
                let mut times: Vec<f64> = multithread_tract_scope(exec.clone(), || {
                    for _ in 0..3 {
                        conv.run(&x, a.batch, side, side, &mut out);
                    }
                    (0..a.iters)
                        .map(|_| {
                            let t = Instant::now();
                            conv.run(&x, a.batch, side, side, &mut out);
                            t.elapsed().as_secs_f64() * 1e6
                        })
                        .collect()
                });
                times.sort_by(f64::total_cmp);
                let us = times[times.len() / 2];
                let macs = (a.batch * m * oh * ow * c * k * k) as f64;
                body_us += us * count as f64;
                body_macs += macs * count as f64;
                println!(
                    "{}",
                    json!({"tile": tile.name, "threads": threads, "layer": name,
                           "us": us, "gmac_per_s": macs / us / 1e3})
                );
            }
            println!(
                "{}",
                json!({"tile": tile.name, "threads": threads, "layer": "body (sum)",
                       "us": body_us, "gmac_per_s": body_macs / body_us / 1e3})
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
