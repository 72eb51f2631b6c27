//! Dequantizes int8 weights once, at load.
//!
//! Why here and not in tract: tract folds a constant computation only while its result
//! stays within max(its inputs, 4 MiB) (`CONST_FOLD_MEM_BUDGET`), so the largest int8
//! weights (ResNet18's 512x512x3x3 convolutions: 9.4 MB as f32) stayed as
//! `Cast`/`Sub`/`Mul` nodes and were dequantized again on every run, making a weight-only
//! int8 file 2.6x slower than its fp32 twin. Replacing each `DequantizeLinear` whose
//! inputs are all initialisers by the float initialiser it computes gives tract the same
//! graph as the fp32 file for those weights.
use std::collections::{HashMap, HashSet};

use models::tensor::TensorData;
use tract_onnx::pb::{tensor_proto::DataType, GraphProto, TensorProto};

fn tensor_data(t: &TensorProto) -> TensorData<'_> {
    TensorData::new(t.data_type, &t.raw_data, &t.float_data, &t.int32_data)
}

/// Values of an int8, uint8 or int32 initialiser (raw or typed storage).
pub(crate) fn integers(t: &TensorProto) -> Option<Vec<i32>> {
    tensor_data(t).integers()
}

/// Values of a float initialiser.
pub(crate) fn floats(t: &TensorProto) -> Option<Vec<f32>> {
    tensor_data(t).floats()
}

/// `DequantizeLinear(x, scale, zero_point)` of initialisers, per tensor or along `axis`.
fn dequantize(x: &TensorProto, scale: &[f32], zp: &[i32], axis: i64) -> Option<Vec<f32>> {
    let q = integers(x)?;
    let dims: Vec<usize> = x
        .dims
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<_>>()?;
    if dims.iter().product::<usize>() != q.len() {
        return None;
    }
    if scale.len() == 1 && zp.len() <= 1 {
        let (s, z) = (scale[0], zp.first().copied().unwrap_or(0));
        return Some(q.iter().map(|&v| (v - z) as f32 * s).collect());
    }
    let rank = dims.len() as i64;
    let axis = usize::try_from(if axis < 0 { axis + rank } else { axis }).ok()?;
    let channels = *dims.get(axis)?;
    if scale.len() != channels || !(zp.is_empty() || zp.len() == channels) {
        return None;
    }
    let inner: usize = dims[axis + 1..].iter().product();
    Some(
        q.iter()
            .enumerate()
            .map(|(i, &v)| {
                let c = (i / inner) % channels;
                (v - zp.get(c).copied().unwrap_or(0)) as f32 * scale[c]
            })
            .collect(),
    )
}

/// Folds every `DequantizeLinear` of constant inputs into a float initialiser and drops
/// the integer initialisers nothing else reads. Returns how many nodes were folded.
pub fn fold_constant_dequantization(graph: &mut GraphProto) -> usize {
    let inits: HashMap<String, usize> = graph
        .initializer
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.clone(), i))
        .collect();
    let mut folded = Vec::new();
    let mut keep = vec![true; graph.node.len()];
    for (n, node) in graph.node.iter().enumerate() {
        if node.op_type != "DequantizeLinear" || node.output.len() != 1 {
            continue;
        }
        let get = |i: usize| {
            node.input
                .get(i)
                .and_then(|name| inits.get(name))
                .map(|&k| &graph.initializer[k])
        };
        let (Some(x), Some(scale)) = (get(0), get(1).and_then(floats)) else {
            continue;
        };
        let zp = match node.input.get(2).filter(|n| !n.is_empty()) {
            None => Vec::new(),
            Some(_) => match get(2).and_then(integers) {
                Some(z) => z,
                None => continue,
            },
        };
        let axis = node
            .attribute
            .iter()
            .find(|a| a.name == "axis")
            .map_or(1, |a| a.i);
        let Some(values) = dequantize(x, &scale, &zp, axis) else {
            continue;
        };
        folded.push(TensorProto {
            dims: x.dims.clone(),
            data_type: DataType::Float as i32,
            name: node.output[0].clone(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        keep[n] = false;
    }
    let count = folded.len();
    let mut k = keep.iter();
    graph.node.retain(|_| *k.next().unwrap_or(&true));
    let used: HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .chain(graph.output.iter().map(|o| o.name.as_str()))
        .collect();
    let used: HashSet<String> = used.into_iter().map(str::to_string).collect();
    graph.initializer.retain(|t| used.contains(&t.name));
    graph.initializer.extend(folded);
    count
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tract_onnx::pb::{AttributeProto, NodeProto};

    /// An initialiser from raw little-endian bytes (shared with the qconv rewrite's tests).
    pub(crate) fn init(name: &str, dt: DataType, dims: &[i64], raw: Vec<u8>) -> TensorProto {
        TensorProto {
            name: name.into(),
            data_type: dt as i32,
            dims: dims.to_vec(),
            raw_data: raw,
            ..Default::default()
        }
    }

    #[test]
    fn folds_per_channel_and_per_tensor_dequantization() {
        let codes: Vec<u8> = [1i8, -2, 3, -4, 5, -6].iter().map(|&v| v as u8).collect();
        let scales: Vec<u8> = [0.5f32, 0.25]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut g = GraphProto {
            initializer: vec![
                init("w.q", DataType::Int8, &[2, 3], codes),
                init("w.s", DataType::Float, &[2], scales),
                init("w.z", DataType::Int8, &[2], vec![0, 0]),
                init("a.q", DataType::Uint8, &[2], vec![10, 20]),
                init("a.s", DataType::Float, &[], 2f32.to_le_bytes().to_vec()),
                init("a.z", DataType::Uint8, &[], vec![10]),
            ],
            node: vec![
                NodeProto {
                    op_type: "DequantizeLinear".into(),
                    input: vec!["w.q".into(), "w.s".into(), "w.z".into()],
                    output: vec!["w".into()],
                    attribute: vec![AttributeProto {
                        name: "axis".into(),
                        i: 0,
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                NodeProto {
                    op_type: "DequantizeLinear".into(),
                    input: vec!["a.q".into(), "a.s".into(), "a.z".into()],
                    output: vec!["a".into()],
                    ..Default::default()
                },
                NodeProto {
                    op_type: "Mul".into(),
                    input: vec!["w".into(), "a".into()],
                    output: vec!["y".into()],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(fold_constant_dequantization(&mut g), 2);
        assert_eq!(g.node.len(), 1, "only the Mul is left");
        let names: Vec<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["w", "a"], "integer initialisers dropped");
        assert_eq!(
            floats(&g.initializer[0]).unwrap(),
            [0.5, -1.0, 1.5, -1.0, 1.25, -1.5]
        );
        assert_eq!(floats(&g.initializer[1]).unwrap(), [0.0, 20.0]);
    }

    #[test]
    fn leaves_activation_dequantization_alone() {
        let mut g = GraphProto {
            initializer: vec![init("s", DataType::Float, &[], 1f32.to_le_bytes().to_vec())],
            node: vec![NodeProto {
                op_type: "DequantizeLinear".into(),
                input: vec!["x.q".into(), "s".into()],
                output: vec!["x".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(fold_constant_dequantization(&mut g), 0);
        assert_eq!(g.node.len(), 1);
    }
}
