//! Test-time flip as a graph rewrite: a second copy of every node reads the mirrored image
//! (a `Gather` of reversed columns) and each head's output becomes the mean of the two
//! copies' outputs.
//!
//! Why two copies and not one batch of two (image and mirror concatenated): tract 0.23 runs
//! this network at batch 2 for about 2.6x the time of batch 1 on x86 (measured in
//! docs/measurements.md), so two batch-1 copies are the faster graph, and every runtime
//! runs them. The copies share the initialisers, so the file grows by nodes only.
use std::collections::HashSet;

use tract_onnx::pb::{tensor_proto::DataType, GraphProto, NodeProto, TensorProto};

/// Prefix of the mirror copy's node and tensor names (Candle's import skips those nodes).
pub const MIRROR: &str = "mirror.";

fn node(op: &str, name: &str, inputs: &[&str], output: &str) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: name.into(),
        op_type: op.into(),
        ..Default::default()
    }
}

/// Rewrites `g` (one input `input` of width `width` in NCHW, outputs `heads`) so each head
/// is the mean over the image and its mirror image.
pub fn add_test_time_flip(g: &mut GraphProto, input: &str, heads: &[&str], width: usize) {
    let consts: HashSet<String> = g.initializer.iter().map(|t| t.name.clone()).collect();
    let rename = |t: &String| match t.is_empty() || consts.contains(t) {
        true => t.clone(),
        false => format!("{MIRROR}{t}"),
    };
    let copies: Vec<NodeProto> = g
        .node
        .iter()
        .map(|n| NodeProto {
            name: format!("{MIRROR}{}", n.name),
            input: n.input.iter().map(rename).collect(),
            output: n.output.iter().map(rename).collect(),
            ..n.clone()
        })
        .collect();
    for n in g.node.iter_mut() {
        for o in n.output.iter_mut() {
            if heads.contains(&o.as_str()) {
                *o = format!("{o}.view");
            }
        }
    }
    let columns: Vec<u8> = (0..width as i64)
        .rev()
        .flat_map(|c| c.to_le_bytes())
        .collect();
    g.initializer.push(TensorProto {
        dims: vec![width as i64],
        data_type: DataType::Int64 as i32,
        name: "tta.columns".into(),
        raw_data: columns,
        ..Default::default()
    });
    g.initializer.push(TensorProto {
        dims: vec![],
        data_type: DataType::Float as i32,
        name: "tta.half".into(),
        raw_data: 0.5f32.to_le_bytes().to_vec(),
        ..Default::default()
    });
    let mut mirror = node(
        "Gather",
        "tta.mirror",
        &[input, "tta.columns"],
        &format!("{MIRROR}{input}"),
    );
    mirror.attribute.push(tract_onnx::pb::AttributeProto {
        name: "axis".into(),
        r#type: tract_onnx::pb::attribute_proto::AttributeType::Int as i32,
        i: 3,
        ..Default::default()
    });
    g.node.push(mirror);
    g.node.extend(copies);
    for h in heads {
        let sum = format!("{h}.views");
        g.node.push(node(
            "Add",
            &format!("tta.{h}.add"),
            &[&format!("{h}.view"), &format!("{MIRROR}{h}")],
            &sum,
        ));
        g.node.push(node(
            "Mul",
            &format!("tta.{h}.mean"),
            &[&sum, "tta.half"],
            h,
        ));
    }
}
