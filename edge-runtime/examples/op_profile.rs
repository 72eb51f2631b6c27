//! Where tract spends its time on an ONNX file: each node of the optimized plan timed over
//! many runs, summed by operator, the largest first. For the face detector (BlazeFace,
//! which needs its `ConstantOfShape` default filled, as `Detector::load` does) and any
//! HydraNet file; a sine-pattern input, one thread.
//!
//!   cargo run --release -p edge-runtime --example op_profile -- FILE.onnx [runs]
use std::{collections::BTreeMap, time::Instant};

use anyhow::{Context, Result};
use edge_runtime::{detect::fill_constant_of_shape, engine::prepare, LoadOptions};
use prost::Message;
use tract_onnx::{
    pb,
    prelude::*,
    tract_core::plan::{eval, SimpleState},
    tract_hir::infer::Factoid,
};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().context("usage: op_profile FILE.onnx [runs]")?;
    let runs: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(100);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {path}"))?;
    let mut proto = pb::ModelProto::decode(bytes.as_slice())?;
    if let Some(g) = proto.graph.as_mut() {
        fill_constant_of_shape(g);
    }
    let (onnx, _) = prepare(&mut proto, LoadOptions::default());
    let mut model = onnx.model_for_proto_model(&proto)?;
    let fact = model.input_fact(0)?.clone();
    let shape: Vec<usize> = fact
        .shape
        .dims()
        .map(|d| d.concretize().and_then(|d| d.to_i64().ok()).unwrap_or(1) as usize)
        .collect();
    model = model.with_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), &shape))?;
    let plan = model.into_optimized()?.into_runnable()?;
    let n: usize = shape.iter().product();
    let input = Tensor::from_shape(
        &shape,
        &(0..n).map(|i| (i as f32 * 0.37).sin()).collect::<Vec<_>>(),
    )?;
    let mut state = SimpleState::new(&plan)?;
    let mut by_op: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    let mut total = 0.0;
    for r in 0..runs + 5 {
        let t0 = Instant::now();
        let mut times: Vec<(String, f64)> = Vec::new();
        state.run_plan_with_eval(
            tvec!(input.clone().into_tvalue()),
            |ctx, st, node, inputs| {
                let t = Instant::now();
                let out = eval(ctx, st, node, inputs);
                times.push((node.op().name().to_string(), t.elapsed().as_secs_f64()));
                out
            },
        )?;
        if r >= 5 {
            total += t0.elapsed().as_secs_f64();
            for (op, t) in times {
                let e = by_op.entry(op).or_default();
                e.0 += t;
                e.1 += 1;
            }
        }
    }
    let mut rows: Vec<_> = by_op.into_iter().collect();
    rows.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    println!(
        "{path}: {:.3} ms per run over {runs} runs, input {shape:?}",
        total * 1e3 / runs as f64
    );
    for (op, (t, count)) in rows {
        println!(
            "{:>8.3} ms {:>5.1} %  {:>4} nodes  {op}",
            t * 1e3 / runs as f64,
            100.0 * t / total,
            count / runs
        );
    }
    Ok(())
}
