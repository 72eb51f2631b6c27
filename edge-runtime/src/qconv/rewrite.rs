//! Finds the QDQ convolutions of a graph and fuses each into one [`super::op::OP_TYPE`]
//! node, before tract parses it.
//!
//! The pattern is the one onnxruntime fuses into its integer kernels:
//!
//! ```text
//! x ─ QuantizeLinear(s, z) ─ DequantizeLinear(s, z) ─┐
//! w_int8 ─ DequantizeLinear(w_scale, 0, axis=0) ─────┼─ Conv ─ [Relu]
//! bias (a constant, possibly DequantizeLinear'd) ────┘
//! ```
//!
//! The fused node reads the float `x` and quantizes it itself, so any other reader of the
//! quantize/dequantize pair (a residual join, a pooling) keeps it; the pair is dropped
//! only when nothing else reads it. Anything outside the pattern (int8 activations,
//! groups, dilation, a per-tensor weight zero point ≠ 0) is left to tract as it was.
use std::collections::{HashMap, HashSet};

use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, AttributeProto, GraphProto, NodeProto,
    TensorProto,
};

use super::op::{FAKE_QUANT, OP_TYPE, OUT_SCALE, OUT_ZERO};
use crate::dequant::{floats, integers};

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

struct Index<'g> {
    producer: HashMap<&'g str, usize>,
    readers: HashMap<&'g str, usize>,
    inits: HashMap<&'g str, &'g TensorProto>,
    outputs: HashSet<&'g str>,
}

impl<'g> Index<'g> {
    fn new(g: &'g GraphProto) -> Self {
        let mut producer = HashMap::new();
        let mut readers: HashMap<&str, usize> = HashMap::new();
        for (i, n) in g.node.iter().enumerate() {
            for o in &n.output {
                producer.insert(o.as_str(), i);
            }
            for x in n.input.iter().filter(|x| !x.is_empty()) {
                *readers.entry(x.as_str()).or_default() += 1;
            }
        }
        Self {
            producer,
            readers,
            inits: g.initializer.iter().map(|t| (t.name.as_str(), t)).collect(),
            outputs: g.output.iter().map(|o| o.name.as_str()).collect(),
        }
    }

    fn made_by<'a>(&self, g: &'a GraphProto, value: &str, op: &str) -> Option<&'a NodeProto> {
        let n = &g.node[*self.producer.get(value)?];
        (n.op_type == op).then_some(n)
    }

    fn is_const(&self, g: &GraphProto, value: &str) -> bool {
        self.inits.contains_key(value)
            || self.made_by(g, value, "DequantizeLinear").is_some_and(|d| {
                d.input
                    .iter()
                    .all(|i| i.is_empty() || self.inits.contains_key(i.as_str()))
            })
    }
}

/// The fused node for `conv`, or `None` if it is not a QDQ convolution this op runs.
/// Also returns the index of a `Relu` it absorbed.
fn fuse(g: &GraphProto, ix: &Index, conv: &NodeProto) -> Option<(NodeProto, Option<usize>)> {
    if conv.input.len() < 2 || conv.output.len() != 1 {
        return None;
    }
    if attr(conv, "group").is_some_and(|a| a.i != 1)
        || attr(conv, "dilations").is_some_and(|a| a.ints.iter().any(|&d| d != 1))
        || attr(conv, "auto_pad").is_some_and(|a| !a.s.is_empty() && a.s != b"NOTSET")
    {
        return None;
    }
    // Input: DequantizeLinear(QuantizeLinear(x)) on one uint8 grid.
    let dq = ix.made_by(g, &conv.input[0], "DequantizeLinear")?;
    pair_grid(g, ix, dq)?;
    let q = ix.made_by(g, &dq.input[0], "QuantizeLinear")?;
    // Weights: DequantizeLinear of int8 OIHW, per output channel, zero point 0.
    let dw = ix.made_by(g, &conv.input[1], "DequantizeLinear")?;
    let w = ix.inits.get(dw.input.first()?.as_str())?;
    if w.data_type != DataType::Int8 as i32 || w.dims.len() != 4 {
        return None;
    }
    let w_scale = floats(ix.inits.get(dw.input.get(1)?.as_str())?)?;
    let per_channel = w_scale.len() as i64 == w.dims[0];
    if !(per_channel && attr(dw, "axis").is_some_and(|a| a.i == 0)) && w_scale.len() != 1 {
        return None;
    }
    if let Some(z) = dw.input.get(2).filter(|z| !z.is_empty()) {
        if integers(ix.inits.get(z.as_str())?)?.iter().any(|&v| v != 0) {
            return None;
        }
    }
    let bias = conv.input.get(2).filter(|b| !b.is_empty());
    if bias.is_some_and(|b| !ix.is_const(g, b)) {
        return None;
    }
    let kernel = [w.dims[2], w.dims[3]];
    if attr(conv, "kernel_shape").is_some_and(|a| a.ints != kernel) {
        return None;
    }
    let strides = attr(conv, "strides").map_or(vec![1, 1], |a| a.ints.clone());
    let pads = attr(conv, "pads").map_or(vec![0; 4], |a| a.ints.clone());
    if strides.len() != 2 || pads.len() != 4 || pads.iter().any(|&p| p < 0) {
        return None;
    }
    // A Relu that is the convolution's only reader runs inside it.
    let out = &conv.output[0];
    let relu = (ix.readers.get(out.as_str()) == Some(&1) && !ix.outputs.contains(out.as_str()))
        .then(|| {
            g.node
                .iter()
                .position(|n| n.op_type == "Relu" && n.input.first() == Some(out))
        })
        .flatten();
    let mut inputs = vec![
        q.input[0].clone(),
        q.input[1].clone(),
        q.input[2].clone(),
        w.name.clone(),
        dw.input[1].clone(),
    ];
    inputs.extend(bias.cloned());
    let mut attribute = vec![
        ints("kernel_shape", &kernel),
        ints("strides", &strides),
        ints("pads", &pads),
    ];
    if relu.is_some() {
        attribute.push(AttributeProto {
            name: "relu".into(),
            r#type: AttributeType::Int as i32,
            i: 1,
            ..Default::default()
        });
    }
    let node = NodeProto {
        name: conv.name.clone(),
        op_type: OP_TYPE.into(),
        input: inputs,
        output: vec![relu.map_or_else(|| out.clone(), |r| g.node[r].output[0].clone())],
        attribute,
        ..Default::default()
    };
    Some((node, relu))
}

/// The uint8 grid `(scale, zero)` shared by a `QuantizeLinear` → `DequantizeLinear` pair,
/// if `dq` is the second half of one.
fn pair_grid(g: &GraphProto, ix: &Index, dq: &NodeProto) -> Option<(f32, u8)> {
    let q = ix.made_by(g, dq.input.first()?, "QuantizeLinear")?;
    if dq.input.len() != 3 || q.input.len() != 3 || dq.input[1..] != q.input[1..] {
        return None;
    }
    let zero = ix.inits.get(q.input[2].as_str())?;
    if zero.data_type != DataType::Uint8 as i32 {
        return None;
    }
    let (&[scale], &[zero]) = (
        floats(ix.inits.get(q.input[1].as_str())?)?.as_slice(),
        integers(zero)?.as_slice(),
    ) else {
        return None;
    };
    Some((scale, u8::try_from(zero).ok()?))
}

/// What [`fuse_qdq`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fused {
    /// Convolutions now running on integers.
    pub convolutions: usize,
    /// Quantize/dequantize pairs left for other readers, now one float pass each.
    pub pairs: usize,
    /// Pairs that read only a fused convolution's output, now done in its epilogue.
    pub pairs_in_epilogues: usize,
    /// `MaxPool`s on the edge runtime's own loop ([`crate::maxpool`]).
    pub max_pools: usize,
    /// Depthwise convolutions on the edge runtime's own loop ([`crate::depthwise`]).
    pub depthwise: usize,
    /// Float 1x1 convolutions on the edge runtime's own tile ([`crate::pointwise`]).
    pub pointwise: usize,
}

/// Replaces every QDQ convolution of `graph` by the fused op, every remaining
/// quantize/dequantize pair by one pass, and drops the nodes and initialisers nothing
/// reads any more.
pub fn fuse_qdq(graph: &mut GraphProto) -> Fused {
    let mut fused = Vec::new();
    let mut absorbed = HashSet::new();
    {
        let ix = Index::new(graph);
        for (i, n) in graph.node.iter().enumerate() {
            if n.op_type == "Conv" {
                if let Some((node, relu)) = fuse(graph, &ix, n) {
                    fused.push((i, node));
                    absorbed.extend(relu);
                }
            }
        }
    }
    let convolutions = fused.len();
    for (i, node) in fused {
        graph.node[i] = node;
    }
    let mut k = 0..;
    graph
        .node
        .retain(|_| !absorbed.contains(&k.next().unwrap_or(usize::MAX)));
    prune(graph);
    // The pairs that something besides the fused convolutions still reads (joins, pooling).
    let pairs: Vec<(usize, NodeProto)> = {
        let ix = Index::new(graph);
        graph
            .node
            .iter()
            .enumerate()
            .filter(|(_, n)| n.op_type == "DequantizeLinear" && n.output.len() == 1)
            .filter_map(|(i, dq)| {
                let (scale, zero) = pair_grid(graph, &ix, dq)?;
                let q = ix.made_by(graph, &dq.input[0], "QuantizeLinear")?;
                Some((
                    i,
                    NodeProto {
                        name: dq.name.clone(),
                        op_type: FAKE_QUANT.into(),
                        input: vec![q.input[0].clone()],
                        output: dq.output.clone(),
                        attribute: vec![
                            AttributeProto {
                                name: "scale".into(),
                                r#type: AttributeType::Float as i32,
                                f: scale,
                                ..Default::default()
                            },
                            AttributeProto {
                                name: "zero_point".into(),
                                r#type: AttributeType::Int as i32,
                                i: zero as i64,
                                ..Default::default()
                            },
                        ],
                        ..Default::default()
                    },
                ))
            })
            .collect()
    };
    let npairs = pairs.len();
    for (i, node) in pairs {
        graph.node[i] = node;
    }
    prune(graph);
    let pairs_in_epilogues = fold_grids(graph);
    Fused {
        convolutions,
        pairs: npairs - pairs_in_epilogues,
        pairs_in_epilogues,
        max_pools: 0,
        depthwise: 0,
        pointwise: 0,
    }
}

/// Moves each fake-quantize pass whose input only a fused convolution makes, and only it
/// reads, into that convolution's epilogue. In a residual body these are the block's last
/// convolution and the shortcut's, whose pairs the join reads.
fn fold_grids(graph: &mut GraphProto) -> usize {
    let folds: Vec<(usize, usize)> = {
        let ix = Index::new(graph);
        graph
            .node
            .iter()
            .enumerate()
            .filter(|(_, n)| n.op_type == FAKE_QUANT && n.input.len() == 1)
            .filter_map(|(i, fq)| {
                let x = fq.input[0].as_str();
                let conv = *ix.producer.get(x)?;
                let ok = graph.node[conv].op_type == OP_TYPE
                    && attr(&graph.node[conv], OUT_SCALE).is_none()
                    && ix.readers.get(x) == Some(&1)
                    && !ix.outputs.contains(x);
                ok.then_some((conv, i))
            })
            .collect()
    };
    let mut gone = HashSet::new();
    for &(conv, fq) in &folds {
        let (scale, zero) = {
            let fq = &graph.node[fq];
            let get = |name| attr(fq, name).cloned().unwrap_or_default();
            (get("scale").f, get("zero_point").i)
        };
        let output = graph.node[fq].output.clone();
        let conv = &mut graph.node[conv];
        conv.attribute.push(AttributeProto {
            name: OUT_SCALE.into(),
            r#type: AttributeType::Float as i32,
            f: scale,
            ..Default::default()
        });
        conv.attribute.push(AttributeProto {
            name: OUT_ZERO.into(),
            r#type: AttributeType::Int as i32,
            i: zero,
            ..Default::default()
        });
        conv.output = output;
        gone.insert(fq);
    }
    let mut k = 0..;
    graph
        .node
        .retain(|_| !gone.contains(&k.next().unwrap_or(usize::MAX)));
    folds.len()
}

/// Drops nodes whose outputs nobody reads (to a fixed point), then unread initialisers.
fn prune(graph: &mut GraphProto) {
    loop {
        let read: HashSet<String> = graph
            .node
            .iter()
            .flat_map(|n| n.input.iter().cloned())
            .chain(graph.output.iter().map(|o| o.name.clone()))
            .collect();
        let before = graph.node.len();
        graph
            .node
            .retain(|n| n.output.iter().any(|o| read.contains(o)));
        if graph.node.len() == before {
            // An initialiser may also be listed as a graph input (IR < 4): drop both.
            let gone: HashSet<String> = graph
                .initializer
                .iter()
                .filter(|t| !read.contains(&t.name))
                .map(|t| t.name.clone())
                .collect();
            graph.initializer.retain(|t| !gone.contains(&t.name));
            graph.input.retain(|i| !gone.contains(&i.name));
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dequant::tests::init;

    fn node(op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            name: output.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            attribute,
            ..Default::default()
        }
    }

    fn int(name: &str, i: i64) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::Int as i32,
            i,
            ..Default::default()
        }
    }

    /// x → Q → DQ → Conv(DQ(w), bias) → Relu → y, with the DQ output also read by an Add
    /// when `shared`; `zero_dt` is the activation zero point's type.
    fn graph(zero_dt: DataType, group: i64, w_zero: u8, shared: bool) -> GraphProto {
        let mut g = GraphProto {
            initializer: vec![
                init("s", DataType::Float, &[], 0.1f32.to_le_bytes().to_vec()),
                init("z", zero_dt, &[], vec![3]),
                init("w", DataType::Int8, &[2, 2, 1, 1], vec![1, 2, 3, 4]),
                init(
                    "ws",
                    DataType::Float,
                    &[2],
                    [0.5f32, 0.25]
                        .iter()
                        .flat_map(|v| v.to_le_bytes())
                        .collect(),
                ),
                init("wz", DataType::Int8, &[2], vec![0, w_zero]),
                init(
                    "b",
                    DataType::Float,
                    &[2],
                    [1f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect(),
                ),
            ],
            node: vec![
                node("QuantizeLinear", &["x", "s", "z"], "xq", vec![]),
                node("DequantizeLinear", &["xq", "s", "z"], "xd", vec![]),
                node(
                    "DequantizeLinear",
                    &["w", "ws", "wz"],
                    "wd",
                    vec![int("axis", 0)],
                ),
                node("Conv", &["xd", "wd", "b"], "c", vec![int("group", group)]),
                node("Relu", &["c"], "y", vec![]),
            ],
            output: vec![tract_onnx::pb::ValueInfoProto {
                name: "y".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        if shared {
            g.node.push(node("Add", &["xd", "y"], "sum", vec![]));
            g.output[0].name = "sum".into();
        }
        g
    }

    fn ops(g: &GraphProto) -> Vec<&str> {
        g.node.iter().map(|n| n.op_type.as_str()).collect()
    }

    #[test]
    fn fuses_the_chain_and_drops_what_nothing_reads() {
        let mut g = graph(DataType::Uint8, 1, 0, false);
        let f = fuse_qdq(&mut g);
        assert_eq!(
            f,
            Fused {
                convolutions: 1,
                pairs: 0,
                pairs_in_epilogues: 0,
                max_pools: 0,
                depthwise: 0,
                pointwise: 0
            }
        );
        assert_eq!(ops(&g), [OP_TYPE]);
        let n = &g.node[0];
        assert_eq!(n.input, ["x", "s", "z", "w", "ws", "b"]);
        assert_eq!(n.output, ["y"], "the relu's output");
        assert!(attr(n, "relu").is_some_and(|a| a.i == 1));
        assert_eq!(attr(n, "pads").map(|a| a.ints.clone()), Some(vec![0; 4]));
        let names: Vec<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["s", "z", "w", "ws", "b"],
            "the weight zero point is gone"
        );
    }

    #[test]
    fn a_pair_with_other_readers_stays_as_one_pass() {
        let mut g = graph(DataType::Uint8, 1, 0, true);
        assert_eq!(
            fuse_qdq(&mut g),
            Fused {
                convolutions: 1,
                pairs: 1,
                pairs_in_epilogues: 0,
                max_pools: 0,
                depthwise: 0,
                pointwise: 0
            }
        );
        assert_eq!(ops(&g), [FAKE_QUANT, OP_TYPE, "Add"]);
        let fq = &g.node[0];
        assert_eq!(
            (fq.input.as_slice(), fq.output.as_slice()),
            (&["x".to_string()][..], &["xd".to_string()][..])
        );
        assert_eq!(attr(fq, "zero_point").map(|a| a.i), Some(3));
    }

    #[test]
    fn a_pair_that_reads_only_a_fused_convolution_moves_into_its_epilogue() {
        let mut g = graph(DataType::Uint8, 1, 0, false);
        g.node.extend([
            node("QuantizeLinear", &["y", "s", "z"], "yq", vec![]),
            node("DequantizeLinear", &["yq", "s", "z"], "yd", vec![]),
            node("Add", &["yd", "x"], "sum", vec![]),
        ]);
        g.output[0].name = "sum".into();
        assert_eq!(
            fuse_qdq(&mut g),
            Fused {
                convolutions: 1,
                pairs: 0,
                pairs_in_epilogues: 1,
                max_pools: 0,
                depthwise: 0,
                pointwise: 0
            }
        );
        assert_eq!(ops(&g), [OP_TYPE, "Add"]);
        let n = &g.node[0];
        assert_eq!(n.output, ["yd"]);
        assert_eq!(attr(n, OUT_SCALE).map(|a| a.f), Some(0.1));
        assert_eq!(attr(n, OUT_ZERO).map(|a| a.i), Some(3));
        // A second reader of the convolution's output keeps the pass.
        let mut g = graph(DataType::Uint8, 1, 0, false);
        g.node.extend([
            node("QuantizeLinear", &["y", "s", "z"], "yq", vec![]),
            node("DequantizeLinear", &["yq", "s", "z"], "yd", vec![]),
            node("Add", &["yd", "y"], "sum", vec![]),
        ]);
        g.output[0].name = "sum".into();
        let f = fuse_qdq(&mut g);
        assert_eq!((f.pairs, f.pairs_in_epilogues), (1, 0));
        assert_eq!(ops(&g), [OP_TYPE, FAKE_QUANT, "Add"]);
    }

    #[test]
    fn leaves_what_the_kernel_does_not_run() {
        // int8 activations, grouped convolutions, a weight zero point that is not 0.
        for mut g in [
            graph(DataType::Int8, 1, 0, false),
            graph(DataType::Uint8, 2, 0, false),
            graph(DataType::Uint8, 1, 5, false),
        ] {
            let before = g.clone();
            let f = fuse_qdq(&mut g);
            assert_eq!(f.convolutions, 0);
            assert!(!ops(&g).contains(&OP_TYPE));
            if f.pairs == 0 {
                assert_eq!(g, before);
            }
        }
    }
}
