//! Depthwise 2-D convolution (one filter per channel) on float NCHW, as the edge runtime's
//! own op: the face detector's 32 depthwise 3x3 convolutions.
//!
//! Why not tract's: on BlazeFace back-256, tract's `DepthWiseConv` was the largest share of
//! a run (29.5 %, docs/measurements.md "Faces / Speed") and the main reason tract took
//! 2.4-2.6x onnxruntime's time. Per output row and tap, the work here is one contiguous
//! `y += w · x` over the row (a shifted slice of one input row at stride 1), which LLVM
//! vectorises; planes stay NCHW, so nothing is repacked. [`replace_depthwise`] rewrites
//! each depthwise `Conv` with constant weights before tract parses the graph; anything
//! else (dilations, a channel multiplier above 1, `auto_pad`, weights that are not an
//! initialiser) stays with tract.
use std::sync::Arc;

use tract_onnx::{
    model::{OnnxOpRegister, ParsingContext},
    pb::{GraphProto, NodeProto},
    tract_hir::internal::*,
};

use crate::maxpool::Window;
use crate::nchw_op;

/// The op type the rewrite gives the convolutions it takes; never in a file.
pub const OP_TYPE: &str = "HydraNetDepthwise";

pub fn register(reg: &mut OnnxOpRegister) {
    reg.insert(OP_TYPE, parse);
}

/// `out[c] = bias[c] + Σ_{ky,kx} w[c][ky][kx] · x[c][oy·sh + ky - pt][ox·sw + kx - pl]`
/// over `planes = n · c` planes (`weights` is `[c][kh][kw]`, `bias` `[c]`). Returns false
/// if the sizes disagree.
#[allow(clippy::too_many_arguments)]
pub fn run(
    win: &Window,
    x: &[f32],
    channels: usize,
    h: usize,
    w: usize,
    weights: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> bool {
    let Some((oh, ow)) = win.output_hw(h, w) else {
        return false;
    };
    let [kh, kw] = win.kernel;
    let taps = kh * kw;
    if channels == 0
        || !x.len().is_multiple_of(channels * h * w)
        || out.len() != x.len() / (h * w) * oh * ow
        || weights.len() != channels * taps
        || bias.is_some_and(|b| b.len() != channels)
    {
        return false;
    }
    let [sh, sw] = win.strides;
    let (pt, pl) = (win.pads[0], win.pads[1]);
    if win.kernel == [3, 3] && win.strides == [1, 1] && win.pads == [1; 4] && w >= 3 {
        same_3x3(x, channels, h, w, weights, bias, out);
        return true;
    }
    for (p, (x, out)) in x
        .chunks_exact(h * w)
        .zip(out.chunks_exact_mut(oh * ow))
        .enumerate()
    {
        let c = p % channels;
        let k = &weights[c * taps..(c + 1) * taps];
        let b = bias.map_or(0.0, |b| b[c]);
        for (oy, o) in out.chunks_exact_mut(ow).enumerate() {
            o.fill(b);
            for ky in 0..kh {
                let Some(iy) = (oy * sh + ky).checked_sub(pt).filter(|&iy| iy < h) else {
                    continue;
                };
                let row = &x[iy * w..(iy + 1) * w];
                for kx in 0..kw {
                    // Output columns whose tap lands in the row: ox·sw + kx - pl ∈ [0, w).
                    let first = pl.saturating_sub(kx).div_ceil(sw);
                    let end = (w + pl).saturating_sub(kx).div_ceil(sw).min(ow);
                    if first >= end {
                        continue;
                    }
                    let wt = k[ky * kw + kx];
                    let start = first * sw + kx - pl;
                    if sw == 1 {
                        let src = &row[start..start + (end - first)];
                        for (o, &v) in o[first..end].iter_mut().zip(src) {
                            *o += wt * v;
                        }
                    } else {
                        let src = row[start..].iter().step_by(sw);
                        for (o, &v) in o[first..end].iter_mut().zip(src) {
                            *o += wt * v;
                        }
                    }
                }
            }
        }
    }
    true
}

/// The common case (28 of BlazeFace's 32): 3x3, stride 1, padding 1. Each output row is
/// one pass over three input rows with all nine taps in registers: a load per tap and one
/// store per vector of outputs, where the general loop above reads and writes the output
/// row once per tap (that loop took 7.0 ms of back-256's 16 ms).
fn same_3x3(
    x: &[f32],
    channels: usize,
    h: usize,
    w: usize,
    weights: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    let zeros = vec![0f32; w];
    let n = w - 2;
    for (p, (x, out)) in x
        .chunks_exact(h * w)
        .zip(out.chunks_exact_mut(h * w))
        .enumerate()
    {
        let c = p % channels;
        let k: [f32; 9] = std::array::from_fn(|i| weights[c * 9 + i]);
        let b = bias.map_or(0.0, |b| b[c]);
        for (oy, o) in out.chunks_exact_mut(w).enumerate() {
            let row = |iy: Option<usize>| {
                iy.filter(|&iy| iy < h)
                    .map_or(&zeros[..], |iy| &x[iy * w..(iy + 1) * w])
            };
            let (r0, r1, r2) = (row(oy.checked_sub(1)), row(Some(oy)), row(Some(oy + 1)));
            // Columns 1..w-1: every tap inside the row.
            let (a0, a1, a2) = (&r0[..n], &r1[..n], &r2[..n]);
            let (b0, b1, b2) = (&r0[1..n + 1], &r1[1..n + 1], &r2[1..n + 1]);
            let (c0, c1, c2) = (&r0[2..n + 2], &r1[2..n + 2], &r2[2..n + 2]);
            let mid = &mut o[1..n + 1];
            for i in 0..n {
                mid[i] = b
                    + k[0] * a0[i]
                    + k[1] * b0[i]
                    + k[2] * c0[i]
                    + k[3] * a1[i]
                    + k[4] * b1[i]
                    + k[5] * c1[i]
                    + k[6] * a2[i]
                    + k[7] * b2[i]
                    + k[8] * c2[i];
            }
            // The edge columns: the taps outside the row are the padding's zeros.
            o[0] = b
                + k[1] * r0[0]
                + k[2] * r0[1]
                + k[4] * r1[0]
                + k[5] * r1[1]
                + k[7] * r2[0]
                + k[8] * r2[1];
            o[w - 1] = b
                + k[0] * r0[w - 2]
                + k[1] * r0[w - 1]
                + k[3] * r1[w - 2]
                + k[4] * r1[w - 1]
                + k[6] * r2[w - 2]
                + k[7] * r2[w - 1];
        }
    }
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a tract_onnx::pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

/// The window of a depthwise `Conv` this op runs (`weights` dims `[c, 1, kh, kw]`, group
/// `c`), or `None`.
fn window_of(node: &NodeProto, weight_dims: &[i64]) -> Option<Window> {
    let &[c, 1, kh, kw] = weight_dims else {
        return None;
    };
    if c < 1 || attr(node, "group").map(|a| a.i) != Some(c) || node.output.len() != 1 {
        return None;
    }
    for a in &node.attribute {
        let ok = match a.name.as_str() {
            "group" | "strides" | "pads" => true,
            "kernel_shape" => a.ints == [kh, kw],
            "auto_pad" => a.s.is_empty() || a.s == b"NOTSET",
            "dilations" => a.ints.iter().all(|&d| d == 1),
            _ => false,
        };
        if !ok {
            return None;
        }
    }
    let us =
        |v: &[i64]| -> Option<Vec<usize>> { v.iter().map(|&x| usize::try_from(x).ok()).collect() };
    let strides = us(attr(node, "strides").map_or(&[1, 1][..], |a| &a.ints))?;
    let pads = us(attr(node, "pads").map_or(&[0, 0, 0, 0][..], |a| &a.ints))?;
    let (kh, kw) = (usize::try_from(kh).ok()?, usize::try_from(kw).ok()?);
    match (strides.as_slice(), pads.as_slice()) {
        (&[sh, sw], &[t, l, b, r]) => Some(Window {
            kernel: [kh, kw],
            strides: [sh, sw],
            pads: [t, l, b, r],
        })
        .filter(|win| win.output_hw(kh + t + b, kw + l + r).is_some()),
        _ => None,
    }
}

/// Gives every depthwise `Conv` of `graph` with initialiser weights (and bias) this op's
/// type; returns how many.
pub fn replace_depthwise(graph: &mut GraphProto) -> usize {
    let dims: std::collections::HashMap<String, Vec<i64>> = graph
        .initializer
        .iter()
        .filter(|t| t.data_type == tract_onnx::pb::tensor_proto::DataType::Float as i32)
        .map(|t| (t.name.clone(), t.dims.clone()))
        .collect();
    let mut n = 0;
    for node in graph.node.iter_mut().filter(|n| n.op_type == "Conv") {
        let consts = node
            .input
            .iter()
            .skip(1)
            .all(|i| i.is_empty() || dims.contains_key(i));
        let w = node.input.get(1).and_then(|w| dims.get(w));
        if let (true, Some(w)) = (consts && (2..=3).contains(&node.input.len()), w) {
            if window_of(node, w).is_some() {
                node.op_type = OP_TYPE.into();
                n += 1;
            }
        }
    }
    n
}

fn parse(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let kernel = attr(node, "kernel_shape").map(|a| a.ints.clone());
    let group = attr(node, "group").map_or(1, |a| a.i);
    // The weights' shape is checked again when they arrive (`wire`); the window needs only
    // the kernel, which the rewrite made sure the node states or the weights imply.
    let dims = match kernel.as_deref() {
        Some(&[kh, kw]) => vec![group, 1, kh, kw],
        _ => bail!("{OP_TYPE} {}: needs `kernel_shape`", node.name),
    };
    let win = window_of(node, &dims)
        .with_context(|| format!("{OP_TYPE}: attributes of {}", node.name))?;
    Ok((expand(Expand(win)), vec![]))
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Expand(Window);

impl Expansion for Expand {
    fn name(&self) -> StaticName {
        OP_TYPE.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        if !(2..=3).contains(&inputs.len()) {
            bail!("{OP_TYPE}: expected 2 or 3 inputs, got {}", inputs.len());
        }
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, f32::datum_type())?;
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        let (x, y) = (&inputs[0], &outputs[0]);
        nchw_op::window_rules(s, x, y, &x.shape[1], move |h, w| self.0.fit(OP_TYPE, h, w))
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let konst = |i: usize, what: &str| nchw_op::konst(model, inputs, i, prefix, OP_TYPE, what);
        let c = model.outlet_fact(inputs[0])?.shape[1].to_usize()?;
        let weights = konst(1, "weight")?.cast_to::<f32>()?.into_owned();
        let [kh, kw] = self.0.kernel;
        ensure!(
            weights.shape() == [c, 1, kh, kw],
            "{prefix}: weights {:?} for {c} channels and a {kh}x{kw} kernel",
            weights.shape()
        );
        let bias = inputs
            .get(2)
            .map(|_| -> TractResult<Vec<f32>> {
                let b = konst(2, "bias")?.cast_to::<f32>()?.into_owned();
                let b = b.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
                ensure!(
                    b.len() == c,
                    "{prefix}: {} biases for {c} channels",
                    b.len()
                );
                Ok(b)
            })
            .transpose()?;
        let op = DepthwiseOp {
            win: self.0,
            channels: c,
            weights: Arc::new(weights.try_as_plain_ram()?.as_slice::<f32>()?.to_vec()),
            bias: bias.map(Arc::new),
        };
        model.wire_node(prefix, op, &inputs[..1])
    }
}

/// The typed op: its weights, shared between plan copies.
#[derive(Debug, Clone)]
struct DepthwiseOp {
    win: Window,
    channels: usize,
    weights: Arc<Vec<f32>>,
    bias: Option<Arc<Vec<f32>>>,
}

impl PartialEq for DepthwiseOp {
    fn eq(&self, other: &Self) -> bool {
        self.win == other.win && Arc::ptr_eq(&self.weights, &other.weights)
    }
}
impl Eq for DepthwiseOp {}

impl Op for DepthwiseOp {
    fn name(&self) -> StaticName {
        OP_TYPE.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{:?}, {} channels", self.win, self.channels)])
    }

    op_as_typed_op!();
}

impl EvalOp for DepthwiseOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = &inputs[0];
        let [n, c, h, w] = nchw_op::nchw(OP_TYPE, x)?;
        ensure!(
            c == self.channels,
            "{OP_TYPE}: {c} channels, weights for {}",
            self.channels
        );
        let (oh, ow) = self.win.fit(OP_TYPE, h, w)?;
        // SAFETY: `run` writes every output element (each row is filled with the bias
        // first) or returns false, and then the tensor is dropped unread.
        let mut out = unsafe { Tensor::uninitialized::<f32>(&[n, c, oh, ow])? };
        let ok = run(
            &self.win,
            x.try_as_plain_ram()?.as_slice::<f32>()?,
            c,
            h,
            w,
            &self.weights,
            self.bias.as_deref().map(Vec::as_slice),
            out.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?,
        );
        ensure!(ok, "{OP_TYPE}: size mismatch for input {:?}", x.shape());
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for DepthwiseOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let fact = nchw_op::window_fact(OP_TYPE, inputs[0], f32::datum_type(), None, |h, w| {
            self.win.fit(OP_TYPE, h, w)
        })?;
        Ok(tvec!(fact))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, tap by tap, in f64.
    fn reference(win: &Window, x: &[f32], c: usize, h: usize, w: usize, k: &[f32]) -> Vec<f32> {
        let (oh, ow) = win.output_hw(h, w).unwrap();
        let [kh, kw] = win.kernel;
        let mut out = Vec::new();
        for (p, x) in x.chunks(h * w).enumerate() {
            let k = &k[(p % c) * kh * kw..][..kh * kw];
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = 0.5f64 * (p % c) as f64; // the bias below
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (oy * win.strides[0] + ky) as isize - win.pads[0] as isize;
                            let ix = (ox * win.strides[1] + kx) as isize - win.pads[1] as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                s += k[ky * kw + kx] as f64
                                    * x[iy as usize * w + ix as usize] as f64;
                            }
                        }
                    }
                    out.push(s as f32);
                }
            }
        }
        out
    }

    #[test]
    fn convolves_like_the_definition() {
        // BlazeFace's two forms (3x3 stride 1 pad 1; 3x3 stride 2, pads only at the end),
        // odd sizes, a wider kernel, two images.
        let cases = [
            ([3, 3], [1, 1], [1, 1, 1, 1], 9, 7), // the fast path
            ([3, 3], [1, 1], [1, 1, 1, 1], 2, 3), // its narrowest input
            ([3, 3], [1, 1], [1, 1, 1, 1], 4, 2), // too narrow for it: the general loop
            ([3, 3], [2, 2], [0, 0, 1, 1], 8, 8),
            ([3, 3], [2, 2], [0, 0, 1, 1], 9, 7),
            ([5, 3], [1, 2], [2, 1, 2, 0], 6, 9),
            ([1, 1], [1, 1], [0; 4], 3, 4),
        ];
        let c = 3;
        for (kernel, strides, pads, h, w) in cases {
            let win = Window {
                kernel,
                strides,
                pads,
            };
            let x: Vec<f32> = (0..2 * c * h * w)
                .map(|i| ((i * 37 % 101) as f32) / 50.0 - 1.0)
                .collect();
            let k: Vec<f32> = (0..c * kernel[0] * kernel[1])
                .map(|i| (i as f32 * 0.7).sin())
                .collect();
            let bias: Vec<f32> = (0..c).map(|i| 0.5 * i as f32).collect();
            let (oh, ow) = win.output_hw(h, w).unwrap();
            let mut out = vec![f32::NAN; 2 * c * oh * ow];
            assert!(run(&win, &x, c, h, w, &k, Some(&bias), &mut out));
            let want = reference(&win, &x, c, h, w, &k);
            for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "{win:?} {h}x{w}: {i}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn takes_only_depthwise_convolutions_with_constant_weights() {
        use tract_onnx::pb::{tensor_proto::DataType, AttributeProto, TensorProto};
        let int = |n: &str, i: i64| AttributeProto {
            name: n.into(),
            i,
            ..Default::default()
        };
        let ints = |n: &str, v: Vec<i64>| AttributeProto {
            name: n.into(),
            ints: v,
            ..Default::default()
        };
        let conv = |w: &str, attrs: Vec<AttributeProto>| NodeProto {
            op_type: "Conv".into(),
            input: vec!["x".into(), w.into()],
            output: vec!["y".into()],
            attribute: attrs,
            ..Default::default()
        };
        let tensor = |name: &str, dims: Vec<i64>| TensorProto {
            name: name.into(),
            dims,
            data_type: DataType::Float as i32,
            ..Default::default()
        };
        let mut g = GraphProto {
            node: vec![
                conv("dw", vec![int("group", 8), ints("pads", vec![1; 4])]),
                conv("dense", vec![int("group", 1)]),
                conv("dw", vec![int("group", 8), ints("dilations", vec![2, 2])]),
                conv("x2", vec![int("group", 8)]),
                conv("runtime", vec![int("group", 8)]),
            ],
            initializer: vec![
                tensor("dw", vec![8, 1, 3, 3]),
                tensor("dense", vec![8, 8, 3, 3]),
                tensor("x2", vec![16, 1, 3, 3]),
            ],
            ..Default::default()
        };
        assert_eq!(replace_depthwise(&mut g), 1);
        let ops: Vec<&str> = g.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, [OP_TYPE, "Conv", "Conv", "Conv", "Conv"]);
    }

    #[test]
    fn refuses_sizes_that_disagree() {
        let win = Window {
            kernel: [3, 3],
            strides: [1, 1],
            pads: [1; 4],
        };
        let k = [0.0; 18];
        assert!(!run(&win, &[0.0; 31], 2, 4, 4, &k, None, &mut [0.0; 32]));
        assert!(!run(
            &win,
            &[0.0; 32],
            2,
            4,
            4,
            &k[..9],
            None,
            &mut [0.0; 32]
        ));
        assert!(!run(
            &win,
            &[0.0; 32],
            2,
            4,
            4,
            &k,
            Some(&[0.0]),
            &mut [0.0; 32]
        ));
        assert!(run(&win, &[0.0; 32], 2, 4, 4, &k, None, &mut [0.0; 32]));
    }
}
