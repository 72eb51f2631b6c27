//! Prints what tract makes of an ONNX file as the engine loads it: the optimized plan's
//! operators, counted. A diagnostic for the int8 forms (which ops stay float, which run
//! on integers; `tract` as the third argument shows tract's own int8 handling).
//!
//!   cargo run --release -p edge-runtime --example plan -- model.onnx [batch] [edge|tract]
use std::collections::BTreeMap;

use anyhow::{Context, Result};
use edge_runtime::{engine::prepare, Int8Kernel, LoadOptions};
use prost::Message;
use tract_onnx::{
    pb,
    prelude::*,
    tract_hir::{infer::Factoid, internal::DimLike},
};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .context("usage: plan MODEL.onnx [BATCH] [edge|tract]")?;
    let batch: usize = args.next().map(|b| b.parse()).transpose()?.unwrap_or(1);
    let int8_kernel = match args.next().as_deref() {
        None | Some("edge") => Int8Kernel::Edge,
        Some("tract") => Int8Kernel::Tract,
        Some(other) => anyhow::bail!("unknown int8 kernel `{other}` (edge or tract)"),
    };
    let bytes = std::fs::read(&path).with_context(|| format!("reading {path}"))?;
    let mut proto =
        pb::ModelProto::decode(bytes.as_slice()).with_context(|| format!("decoding {path}"))?;
    let (onnx, fused) = prepare(&mut proto, LoadOptions { int8_kernel });
    eprintln!("{fused:?}");
    let model = onnx
        .model_for_proto_model(&proto)
        .with_context(|| format!("loading {path}"))?;
    let fact = model.input_fact(0)?.clone();
    let shape: Vec<usize> = fact
        .shape
        .dims()
        .enumerate()
        .map(|(i, d)| {
            if i == 0 {
                Some(batch)
            } else {
                d.concretize().and_then(|d| d.to_usize().ok())
            }
        })
        .collect::<Option<_>>()
        .context("input shape")?;
    let model = model
        .with_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), shape))?
        .into_optimized()?;
    let mut ops: BTreeMap<String, usize> = BTreeMap::new();
    for n in &model.nodes {
        *ops.entry(n.op.name().to_string()).or_default() += 1;
    }
    for (op, n) in ops {
        println!("{n:4}  {op}");
    }
    Ok(())
}
