//! Pointwise (1x1, stride 1) convolution on float NCHW, with the residual join and relu
//! that follow it in the face detector, as the edge runtime's own op.
//!
//! Why not tract's: on BlazeFace back-256, tract runs each of the 36 pointwise convolutions
//! as a packing pass over the input (`OptMatMulPack`, 17 % of a run) and a matrix product
//! (`OptMatMul`, 30 %), then the `Add` + `Relu` after it as another pass (9 %). In NCHW a
//! 1x1 convolution needs no packing of its input: output channel `m`'s plane is
//! `Σ_c w[m][c] · x[c]`, a weighted sum of whole input planes. So a tile of `MR` output
//! channels × `NP` pixels keeps its sums in registers over all `c`, reading `NP`
//! contiguous floats of each input plane and broadcasting `MR` packed weights
//! ([`Pointwise::run`]), and adds the bias, the residual and the relu as it stores.
//!
//! [`replace_pointwise`] rewrites each such `Conv` with constant weights before tract
//! parses the graph, and takes in a following `Add` (whose other input is the residual)
//! and `Relu` when they are the only readers of what they read.
use std::collections::HashMap;
use std::sync::Arc;

use tract_onnx::{
    model::{OnnxOpRegister, ParsingContext},
    pb::{
        attribute_proto::AttributeType, tensor_proto::DataType, AttributeProto, GraphProto,
        NodeProto,
    },
    tract_hir::{internal::*, ops::activations::Clip},
};

use crate::nchw_op;

/// The op type the rewrite gives the convolutions it takes; never in a file.
pub const OP_TYPE: &str = "HydraNetPointwise";

pub fn register(reg: &mut OnnxOpRegister) {
    reg.insert(OP_TYPE, parse);
}

/// A pointwise convolution ready to run.
#[derive(Debug, Clone)]
pub struct Pointwise {
    c: usize,
    m: usize,
    /// `[m / MR][c][MR]` for the kernel's `MR`, the last block zero-padded.
    packed: Vec<f32>,
    bias: Vec<f32>,
    relu: bool,
    kernel: Kernel,
}

/// The tile shape and the instructions it is compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// AVX-512 + FMA: 12 channels × 32 pixels, 24 of the 32 vector registers.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// AVX2 + FMA: 6 × 16, 12 of 16 registers; arm64 NEON (fused `fmla`): 6 × 16 is 24
    /// of 32.
    Mid,
    /// Anything else: no fused multiply-add.
    Plain,
}

impl Kernel {
    fn pick() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma") {
                return Kernel::Avx512;
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return Kernel::Mid;
            }
        }
        #[cfg(target_arch = "aarch64")]
        return Kernel::Mid;
        #[allow(unreachable_code)]
        Kernel::Plain
    }

    /// Output channels per tile.
    fn mr(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => 12,
            Kernel::Mid | Kernel::Plain => 6,
        }
    }
}

/// Why a pointwise convolution cannot be packed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PackError {
    #[error("weights have {got} values, {m} x {c} needs {}", m * c)]
    WeightLen { got: usize, m: usize, c: usize },
    #[error("{got} biases for {m} output channels")]
    BiasLen { got: usize, m: usize },
}

impl Pointwise {
    /// `weights` is `[m][c]` (OIHW with 1x1 kernels), `bias` `[m]`; runs on the best
    /// kernel this CPU has.
    pub fn new(
        c: usize,
        m: usize,
        weights: &[f32],
        bias: Option<&[f32]>,
        relu: bool,
    ) -> Result<Self, PackError> {
        Self::with_kernel(c, m, weights, bias, relu, Kernel::pick())
    }

    fn with_kernel(
        c: usize,
        m: usize,
        weights: &[f32],
        bias: Option<&[f32]>,
        relu: bool,
        kernel: Kernel,
    ) -> Result<Self, PackError> {
        if weights.len() != m * c {
            return Err(PackError::WeightLen {
                got: weights.len(),
                m,
                c,
            });
        }
        if let Some(b) = bias.filter(|b| b.len() != m) {
            return Err(PackError::BiasLen { got: b.len(), m });
        }
        let mr = kernel.mr();
        let blocks = m.div_ceil(mr);
        let mut packed = vec![0f32; blocks * c * mr];
        for mi in 0..m {
            for ci in 0..c {
                packed[((mi / mr) * c + ci) * mr + mi % mr] = weights[mi * c + ci];
            }
        }
        Ok(Self {
            c,
            m,
            packed,
            bias: bias.map_or_else(|| vec![0.0; m], <[f32]>::to_vec),
            relu,
            kernel,
        })
    }

    /// `out = relu?(w · x + bias)` for `n` NCHW images of `hw` pixels (`x`: `n·c·hw`,
    /// `out`: `n·m·hw`), or, when `residual`, `out = relu?(w · x + bias + out)`: the join
    /// in place, in the residual's own buffer, so a joined convolution allocates nothing
    /// (fresh output tensors of the detector's 128² planes cost a page fault per 4 KiB).
    /// Returns false (writing nothing) if the sizes disagree.
    pub fn run(&self, x: &[f32], n: usize, hw: usize, residual: bool, out: &mut [f32]) -> bool {
        if x.len() != n * self.c * hw || out.len() != n * self.m * hw {
            return false;
        }
        match self.kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => {
                #[target_feature(enable = "avx512f,fma")]
                fn wide(p: &Pointwise, x: &[f32], n: usize, hw: usize, r: bool, o: &mut [f32]) {
                    p.images::<12, 32, true>(x, n, hw, r, o)
                }
                // SAFETY: `Kernel::pick` saw AVX-512F and FMA.
                unsafe { wide(self, x, n, hw, residual, out) }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Mid => {
                #[target_feature(enable = "avx2,fma")]
                fn mid(p: &Pointwise, x: &[f32], n: usize, hw: usize, r: bool, o: &mut [f32]) {
                    p.images::<6, 16, true>(x, n, hw, r, o)
                }
                // SAFETY: `Kernel::pick` saw AVX2 and FMA.
                unsafe { mid(self, x, n, hw, residual, out) }
            }
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Mid => self.images::<6, 16, true>(x, n, hw, residual, out),
            Kernel::Plain => self.images::<6, 16, false>(x, n, hw, residual, out),
        }
        true
    }

    #[inline(always)]
    fn images<const MR: usize, const NP: usize, const FMA: bool>(
        &self,
        x: &[f32],
        n: usize,
        hw: usize,
        residual: bool,
        out: &mut [f32],
    ) {
        let (c, m) = (self.c, self.m);
        // The last, partial pixel block is computed from a zero-padded copy, so the tile
        // always reads `NP` pixels.
        let full = hw / NP * NP;
        let mut tail = vec![0f32; if full == hw { 0 } else { c * NP }];
        for i in 0..n {
            let x = &x[i * c * hw..(i + 1) * c * hw];
            let out = &mut out[i * m * hw..(i + 1) * m * hw];
            if full < hw {
                for ci in 0..c {
                    tail[ci * NP..ci * NP + hw - full]
                        .copy_from_slice(&x[ci * hw + full..ci * hw + hw]);
                }
            }
            // Strips of `STRIP` pixels, every channel block over one strip before the next:
            // each plane is then read and written in runs of a kilobyte, where one tile's
            // 128-byte runs from 48 planes at once (24 inputs, 12 residuals, 12 outputs)
            // were more streams than the prefetchers follow.
            for s0 in (0..hw).step_by(STRIP) {
                for (b, w) in self.packed.chunks_exact(c * MR).enumerate() {
                    let m0 = b * MR;
                    for p0 in (s0..hw.min(s0 + STRIP)).step_by(NP) {
                        let np = NP.min(hw - p0);
                        let (src, stride, at) = if np == NP {
                            (x, hw, p0)
                        } else {
                            (&tail[..], NP, 0)
                        };
                        let acc = tile::<MR, NP, FMA>(src, stride, at, c, w);
                        for (k, acc) in acc.iter().enumerate().take(m - m0.min(m)) {
                            let mi = m0 + k;
                            let dst = &mut out[mi * hw + p0..mi * hw + p0 + np];
                            let bias = self.bias[mi];
                            if residual {
                                for (d, &a) in dst.iter_mut().zip(acc) {
                                    *d += a + bias;
                                }
                            } else {
                                for (d, &a) in dst.iter_mut().zip(acc) {
                                    *d = a + bias;
                                }
                            }
                            if self.relu {
                                dst.iter_mut().for_each(|d| *d = d.max(0.0));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Pixels per strip (a multiple of every kernel's `NP`).
const STRIP: usize = 256;

/// The sums of one tile: `MR` output channels × `NP` pixels from pixel `at` of planes
/// `stride` floats apart, over all `c` planes; `w` is the block's `[c][MR]` weights.
#[inline(always)]
fn tile<const MR: usize, const NP: usize, const FMA: bool>(
    x: &[f32],
    stride: usize,
    at: usize,
    c: usize,
    w: &[f32],
) -> [[f32; NP]; MR] {
    let mut acc = [[0f32; NP]; MR];
    for (ci, w) in w.chunks_exact(MR).enumerate().take(c) {
        let xr = &x[ci * stride + at..ci * stride + at + NP];
        for (a, &wv) in acc.iter_mut().zip(w) {
            for (a, &xv) in a.iter_mut().zip(xr) {
                *a = if FMA {
                    wv.mul_add(xv, *a)
                } else {
                    *a + wv * xv
                };
            }
        }
    }
    acc
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn flag(name: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: 1,
        ..Default::default()
    }
}

/// Whether `node` is a 1x1, stride 1, unpadded, ungrouped `Conv` of constant weights
/// `[m, c, 1, 1]` (and bias) this op runs.
fn is_pointwise(node: &NodeProto, dims: &HashMap<&str, &[i64]>) -> bool {
    if node.op_type != "Conv" || !(2..=3).contains(&node.input.len()) || node.output.len() != 1 {
        return false;
    }
    let consts = node.input[1..]
        .iter()
        .all(|i| dims.contains_key(i.as_str()));
    let w = dims.get(node.input[1].as_str());
    if !consts || !matches!(w, Some(&&[m, c, 1, 1]) if m > 0 && c > 0) {
        return false;
    }
    node.attribute.iter().all(|a| match a.name.as_str() {
        "group" => a.i == 1,
        "kernel_shape" => a.ints == [1, 1],
        "strides" | "dilations" => a.ints.iter().all(|&v| v == 1),
        "pads" => a.ints.iter().all(|&v| v == 0),
        "auto_pad" => a.s.is_empty() || a.s == b"NOTSET",
        _ => false,
    })
}

/// Gives every pointwise `Conv` of `graph` with initialiser weights this op's type, with
/// the `Add` after it (the residual) and the `Relu` after that when each is the only reader
/// of its input; returns how many convolutions.
pub fn replace_pointwise(graph: &mut GraphProto) -> usize {
    let dims: HashMap<&str, &[i64]> = graph
        .initializer
        .iter()
        .filter(|t| t.data_type == DataType::Float as i32)
        .map(|t| (t.name.as_str(), t.dims.as_slice()))
        .collect();
    let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        for x in &n.input {
            readers.entry(x.as_str()).or_default().push(i);
        }
    }
    let outputs: std::collections::HashSet<&str> =
        graph.output.iter().map(|o| o.name.as_str()).collect();
    // The one reader of `value`, if it has exactly one and is not a graph output.
    let only_reader = |value: &str| match readers.get(value).map(Vec::as_slice) {
        Some(&[r]) if !outputs.contains(value) => Some(r),
        _ => None,
    };
    let mut plan = Vec::new();
    for (i, n) in graph.node.iter().enumerate() {
        if !is_pointwise(n, &dims) {
            continue;
        }
        let mut node = n.clone();
        node.op_type = OP_TYPE.into();
        if node.input.len() == 3 {
            node.attribute.push(flag("bias"));
        }
        let mut gone = Vec::new();
        let mut out = n.output[0].clone();
        if let Some(a) = only_reader(&out).filter(|&a| {
            let add = &graph.node[a];
            add.op_type == "Add"
                && add.input.len() == 2
                && add.output.len() == 1
                && add.input[0] != add.input[1]
        }) {
            let add = &graph.node[a];
            let other = if add.input[0] == out {
                &add.input[1]
            } else {
                &add.input[0]
            };
            node.input.push(other.clone());
            node.attribute.push(flag("residual"));
            out = add.output[0].clone();
            gone.push(a);
        }
        if let Some(r) = only_reader(&out).filter(|&r| {
            let relu = &graph.node[r];
            relu.op_type == "Relu" && relu.output.len() == 1
        }) {
            node.attribute.push(flag("relu"));
            out = graph.node[r].output[0].clone();
            gone.push(r);
        }
        node.attribute
            .retain(|a| ["bias", "residual", "relu"].contains(&a.name.as_str()));
        node.output = vec![out];
        plan.push((i, node, gone));
    }
    let n = plan.len();
    let mut drop = std::collections::HashSet::new();
    for (i, node, gone) in plan {
        graph.node[i] = node;
        drop.extend(gone);
    }
    let mut k = 0..;
    graph
        .node
        .retain(|_| !drop.contains(&k.next().unwrap_or(usize::MAX)));
    n
}

/// Inputs: `x`, the weights `[m, c, 1, 1]`, then the bias when `bias` is set, then the
/// residual (`[n, m, h, w]`) when `residual` is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Expand {
    bias: bool,
    residual: bool,
    relu: bool,
}

fn parse(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let on = |name| attr(node, name).is_some_and(|a| a.i != 0);
    let op = Expand {
        bias: on("bias"),
        residual: on("residual"),
        relu: on("relu"),
    };
    let want = 2 + op.bias as usize + op.residual as usize;
    ensure!(
        node.input.len() == want,
        "{OP_TYPE} {}: {} inputs, expected {want}",
        node.name,
        node.input.len()
    );
    Ok((expand(op), vec![]))
}

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
        check_input_arity(inputs, 2 + self.bias as usize + self.residual as usize)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, f32::datum_type())?;
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.equals(&inputs[1].rank, 4)?;
        let (x, y) = (&inputs[0], &outputs[0]);
        nchw_op::window_rules(s, x, y, &inputs[1].shape[0], |h, w| Ok((h, w)))
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let konst = |i: usize, what: &str| nchw_op::konst(model, inputs, i, prefix, OP_TYPE, what);
        let w = konst(1, "weight")?.cast_to::<f32>()?.into_owned();
        let (m, c) = match *w.shape() {
            [m, c, 1, 1] => (m, c),
            ref s => bail!("{prefix}: {OP_TYPE} weights {s:?} are not [m, c, 1, 1]"),
        };
        let x = model.outlet_fact(inputs[0])?.clone();
        ensure!(
            x.rank() == 4 && x.shape[1].to_usize()? == c,
            "{prefix}: input {:?} for weights of {c} input channels",
            x.shape
        );
        let bias = if self.bias {
            Some(konst(2, "bias")?.cast_to::<f32>()?.into_owned())
        } else {
            None
        };
        let bias = bias
            .as_ref()
            .map(|b| b.try_as_plain_ram().and_then(|b| b.as_slice::<f32>()))
            .transpose()?;
        let out_shape: TVec<TDim> = tvec![
            x.shape[0].clone(),
            m.into(),
            x.shape[2].clone(),
            x.shape[3].clone()
        ];
        // A residual of another shape (a broadcasting `Add`) is joined by tract's own ops
        // after the convolution, as the file says.
        let residual = self.residual.then(|| inputs[inputs.len() - 1]);
        let fused_res = match residual {
            Some(r) => {
                model.outlet_fact(r)?.shape.to_tvec() == out_shape
                    && model.outlet_fact(r)?.datum_type == f32::datum_type()
            }
            None => false,
        };
        let fused_relu = self.relu && (residual.is_none() || fused_res);
        let conv = Pointwise::new(
            c,
            m,
            w.try_as_plain_ram()?.as_slice::<f32>()?,
            bias,
            fused_relu,
        )
        .map_err(|e| format_err!("{prefix}: {e}"))?;
        let mut wires: TVec<OutletId> = tvec![inputs[0]];
        if fused_res {
            wires.extend(residual);
        }
        let mut y = model.wire_node(prefix, PointwiseOp(Arc::new(conv)), &wires)?;
        if let (Some(r), false) = (residual, fused_res) {
            y = tract_onnx::tract_core::ops::change_axes::wire_with_rank_broadcast(
                format!("{prefix}.residual"),
                model,
                tract_onnx::tract_core::ops::math::add(),
                &[y[0], r],
            )?;
        }
        if self.relu && !fused_relu {
            y = Clip::new(Some(0.0), None).wire(&format!("{prefix}.relu"), model, &y)?;
        }
        Ok(y)
    }
}

/// The typed op: shares its packed weights between plan copies.
#[derive(Debug, Clone)]
struct PointwiseOp(Arc<Pointwise>);

impl PartialEq for PointwiseOp {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for PointwiseOp {}

impl Op for PointwiseOp {
    fn name(&self) -> StaticName {
        OP_TYPE.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "1x1, {} -> {} channels{}, {:?}",
            self.0.c,
            self.0.m,
            if self.0.relu { ", relu" } else { "" },
            self.0.kernel
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for PointwiseOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, mut inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let res = if inputs.len() > 1 { inputs.pop() } else { None };
        let x = &inputs[0];
        let [n, c, h, w] = nchw_op::nchw(OP_TYPE, x)?;
        ensure!(
            c == self.0.c,
            "{OP_TYPE}: {c} channels, weights for {}",
            self.0.c
        );
        let shape = [n, self.0.m, h, w];
        let residual = res.is_some();
        let mut out = match res {
            Some(r) => {
                ensure!(
                    r.shape() == shape,
                    "{OP_TYPE}: residual {:?} for an output {shape:?}",
                    r.shape()
                );
                // The residual's buffer becomes the output: moved when nothing else holds
                // it, else copied.
                r.into_tensor()
            }
            // SAFETY: `run` writes every output element or returns false, and then the
            // tensor is dropped unread.
            None => unsafe { Tensor::uninitialized::<f32>(&shape)? },
        };
        let ok = self.0.run(
            x.try_as_plain_ram()?.as_slice::<f32>()?,
            n,
            h * w,
            residual,
            out.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?,
        );
        ensure!(ok, "{OP_TYPE}: size mismatch for input {:?}", x.shape());
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for PointwiseOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let fact = nchw_op::window_fact(
            OP_TYPE,
            inputs[0],
            f32::datum_type(),
            Some(self.0.m),
            |h, w| Ok((h, w)),
        )?;
        Ok(tvec!(fact))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, in f64.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        x: &[f32],
        n: usize,
        c: usize,
        hw: usize,
        w: &[f32],
        b: &[f32],
        res: Option<&[f32]>,
        relu: bool,
    ) -> Vec<f32> {
        let m = b.len();
        let mut out = vec![0f32; n * m * hw];
        for i in 0..n {
            for mi in 0..m {
                for p in 0..hw {
                    let mut s = b[mi] as f64;
                    for ci in 0..c {
                        s += w[mi * c + ci] as f64 * x[(i * c + ci) * hw + p] as f64;
                    }
                    let o = (i * m + mi) * hw + p;
                    if let Some(r) = res {
                        s += r[o] as f64;
                    }
                    out[o] = if relu { s.max(0.0) as f32 } else { s as f32 };
                }
            }
        }
        out
    }

    #[test]
    fn matches_the_definition_on_every_kernel_and_odd_sizes() {
        let mut seed = 5u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as u32 % 2001) as f32 / 1000.0 - 1.0
        };
        let mut kernels = vec![Kernel::Plain, Kernel::pick()];
        kernels.dedup();
        // Channel counts below, at and past one tile, pixel counts with and without a
        // partial block (the detector's planes: 64², 32², 16², 8²).
        for (n, c, m, hw) in [
            (1, 24, 24, 64 * 64),
            (2, 3, 13, 37),
            (1, 96, 96, 16 * 16),
            (1, 48, 7, 1),
            (1, 5, 25, 33),
        ] {
            let x: Vec<f32> = (0..n * c * hw).map(|_| next()).collect();
            let w: Vec<f32> = (0..m * c).map(|_| next()).collect();
            let b: Vec<f32> = (0..m).map(|_| next()).collect();
            let r: Vec<f32> = (0..n * m * hw).map(|_| next()).collect();
            for kernel in &kernels {
                for (res, relu) in [(None, false), (Some(&r[..]), true), (None, true)] {
                    let p = Pointwise::with_kernel(c, m, &w, Some(&b), relu, *kernel).unwrap();
                    let mut out = match res {
                        Some(r) => r.to_vec(),
                        None => vec![f32::NAN; n * m * hw],
                    };
                    assert!(p.run(&x, n, hw, res.is_some(), &mut out));
                    let want = reference(&x, n, c, hw, &w, &b, res, relu);
                    for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                        assert!(
                            (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                            "{kernel:?} {n}x{c}->{m} hw {hw} res {} relu {relu}: {i}: {a} vs {b}",
                            res.is_some()
                        );
                    }
                }
            }
        }
        let p = Pointwise::new(2, 3, &[0.0; 6], None, false).unwrap();
        assert!(!p.run(&[0.0; 7], 1, 4, false, &mut [0.0; 12]));
        assert!(Pointwise::new(2, 3, &[0.0; 5], None, false).is_err());
        assert!(Pointwise::new(2, 3, &[0.0; 6], Some(&[0.0; 2]), false).is_err());
    }

    fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            ..Default::default()
        }
    }

    fn graph(extra_reader: bool) -> GraphProto {
        let init = |name: &str, dims: &[i64]| tract_onnx::pb::TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: DataType::Float as i32,
            float_data: vec![0.5; dims.iter().product::<i64>() as usize],
            ..Default::default()
        };
        let mut g = GraphProto {
            initializer: vec![
                init("w", &[4, 2, 1, 1]),
                init("b", &[4]),
                init("w3", &[4, 2, 3, 3]),
            ],
            node: vec![
                node("Conv", &["x", "w", "b"], "c"),
                node("Add", &["r", "c"], "s"),
                node("Relu", &["s"], "y"),
                node("Conv", &["x", "w3"], "c3"),
            ],
            output: vec![tract_onnx::pb::ValueInfoProto {
                name: "y".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        if extra_reader {
            g.node.push(node("Relu", &["c"], "other"));
        }
        g
    }

    #[test]
    fn the_rewrite_takes_the_residual_join_and_relu_that_follow() {
        let mut g = graph(false);
        assert_eq!(replace_pointwise(&mut g), 1);
        let ops: Vec<&str> = g.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, [OP_TYPE, "Conv"], "the 3x3 stays with tract");
        let n = &g.node[0];
        assert_eq!(n.input, ["x", "w", "b", "r"]);
        assert_eq!(n.output, ["y"]);
        for a in ["bias", "residual", "relu"] {
            assert!(attr(n, a).is_some_and(|a| a.i == 1), "{a}");
        }
        // A second reader of the convolution's output keeps the join and relu apart.
        let mut g = graph(true);
        assert_eq!(replace_pointwise(&mut g), 1);
        let ops: Vec<&str> = g.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, [OP_TYPE, "Add", "Relu", "Conv", "Relu"]);
        assert_eq!(g.node[0].output, ["c"]);
    }
}
