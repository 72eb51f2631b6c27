//! 2-D max pooling on float NCHW, as the edge runtime's own op.
//!
//! Why not tract's: in the shipped int8 file, tract's `MaxPool` (the stem's 2x2 pool) was
//! 15-18 % of a run (`perf record`, docs/measurements.md "int8"), about 0.35 ms for
//! 200 k values, where a plain loop over rows that LLVM vectorises takes a few
//! microseconds. [`replace_max_pools`] rewrites each `MaxPool` this op runs before tract
//! parses the graph; anything else (dilations, `ceil_mode`, the `Indices` output, a rank
//! other than 4) stays with tract.
use tract_onnx::{
    model::{OnnxOpRegister, ParsingContext},
    pb::{GraphProto, NodeProto},
    tract_hir::internal::*,
};

use crate::nchw_op;

/// The op type the rewrite gives pools it takes; never in a file.
pub const OP_TYPE: &str = "HydraNetMaxPool";

pub fn register(reg: &mut OnnxOpRegister) {
    reg.insert(OP_TYPE, parse);
}

/// A 2-D window: kernel, strides and pads (top, left, bottom, right), as ONNX gives them.
/// Also the geometry of [`crate::depthwise`]'s convolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub pads: [usize; 4],
}

impl Window {
    pub fn output_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let ph = h + self.pads[0] + self.pads[2];
        let pw = w + self.pads[1] + self.pads[3];
        let [kh, kw] = self.kernel;
        let [sh, sw] = self.strides;
        // A window wholly in the padding would be -inf: ONNX forbids pads ≥ kernel.
        if ph < kh || pw < kw || sh == 0 || sw == 0 || kh == 0 || kw == 0 {
            return None;
        }
        if self.pads[0].max(self.pads[2]) >= kh || self.pads[1].max(self.pads[3]) >= kw {
            return None;
        }
        Some(((ph - kh) / sh + 1, (pw - kw) / sw + 1))
    }

    /// [`Window::output_hw`], or the error `op` reports when the window does not fit.
    pub fn fit(&self, op: &str, h: usize, w: usize) -> TractResult<(usize, usize)> {
        self.output_hw(h, w)
            .with_context(|| format!("{op}: {self:?} does not fit {h}x{w}"))
    }

    /// Pools `planes` planes of `h`×`w` (`x.len() == planes·h·w`) into `out`. Returns
    /// false if the sizes disagree.
    pub fn run<T: Lane>(&self, x: &[T], planes: usize, h: usize, w: usize, out: &mut [T]) -> bool {
        let Some((oh, ow)) = self.output_hw(h, w) else {
            return false;
        };
        if x.len() != planes * h * w || out.len() != planes * oh * ow {
            return false;
        }
        for (x, out) in x.chunks_exact(h * w).zip(out.chunks_exact_mut(oh * ow)) {
            if self.kernel == [2, 2] && self.strides == [2, 2] && self.pads == [0; 4] {
                // The stem's pool: two rows, pairs of columns; vectorises.
                for (oy, o) in out.chunks_exact_mut(ow).enumerate() {
                    let r0 = x[2 * oy * w..][..2 * ow].chunks_exact(2);
                    let r1 = x[(2 * oy + 1) * w..][..2 * ow].chunks_exact(2);
                    for ((o, a), b) in o.iter_mut().zip(r0).zip(r1) {
                        *o = a[0].max(a[1]).max(b[0].max(b[1]));
                    }
                }
            } else {
                self.general(x, h, w, ow, out);
            }
        }
        true
    }

    /// Any kernel, stride and padding: taps outside the image are skipped (-inf).
    fn general<T: Lane>(&self, x: &[T], h: usize, w: usize, ow: usize, out: &mut [T]) {
        let [kh, kw] = self.kernel;
        let [sh, sw] = self.strides;
        for (oy, o) in out.chunks_exact_mut(ow).enumerate() {
            o.fill(T::LOWEST);
            for ky in 0..kh {
                let Some(iy) = (oy * sh + ky)
                    .checked_sub(self.pads[0])
                    .filter(|&iy| iy < h)
                else {
                    continue;
                };
                let row = &x[iy * w..(iy + 1) * w];
                for (ox, o) in o.iter_mut().enumerate() {
                    for kx in 0..kw {
                        if let Some(&v) = (ox * sw + kx)
                            .checked_sub(self.pads[1])
                            .and_then(|ix| row.get(ix))
                        {
                            *o = o.max(v);
                        }
                    }
                }
            }
        }
    }
}

fn ints<'a>(node: &'a NodeProto, name: &str) -> Option<&'a [i64]> {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.ints.as_slice())
}

/// The pool of a `MaxPool` node this op runs, or `None`.
fn pool_of(node: &NodeProto) -> Option<Window> {
    if node.output.iter().skip(1).any(|o| !o.is_empty()) {
        return None; // The `Indices` output is read.
    }
    for a in &node.attribute {
        let ok = match a.name.as_str() {
            "kernel_shape" | "strides" | "pads" => true,
            "auto_pad" => a.s.is_empty() || a.s == b"NOTSET",
            "ceil_mode" | "storage_order" => a.i == 0,
            "dilations" => a.ints.iter().all(|&d| d == 1),
            _ => false,
        };
        if !ok {
            return None;
        }
    }
    let us =
        |v: &[i64]| -> Option<Vec<usize>> { v.iter().map(|&x| usize::try_from(x).ok()).collect() };
    let kernel = us(ints(node, "kernel_shape")?)?;
    let strides = us(ints(node, "strides").unwrap_or(&[1, 1]))?;
    let pads = us(ints(node, "pads").unwrap_or(&[0, 0, 0, 0]))?;
    match (kernel.as_slice(), strides.as_slice(), pads.as_slice()) {
        (&[kh, kw], &[sh, sw], &[t, l, b, r]) => Some(Window {
            kernel: [kh, kw],
            strides: [sh, sw],
            pads: [t, l, b, r],
        })
        .filter(|p| p.output_hw(kh + t + b, kw + l + r).is_some()),
        _ => None,
    }
}

/// Gives every `MaxPool` of `graph` that this op runs its op type; returns how many.
pub fn replace_max_pools(graph: &mut GraphProto) -> usize {
    let mut n = 0;
    for node in graph.node.iter_mut().filter(|n| n.op_type == "MaxPool") {
        if pool_of(node).is_some() {
            node.op_type = OP_TYPE.into();
            node.output.truncate(1);
            n += 1;
        }
    }
    n
}

fn parse(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let pool = pool_of(node).with_context(|| format!("{OP_TYPE}: attributes of {}", node.name))?;
    Ok((expand(PoolOp(pool)), vec![]))
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PoolOp(Window);

impl Expansion for PoolOp {
    fn name(&self) -> StaticName {
        OP_TYPE.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        // Float activations, or the uint8/int8 codes of a `QLinearConv` file.
        s.equals(&outputs[0].datum_type, &inputs[0].datum_type)?;
        let (x, y) = (&inputs[0], &outputs[0]);
        nchw_op::window_rules(s, x, y, &x.shape[1], move |h, w| self.0.fit(OP_TYPE, h, w))
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, self.clone(), inputs)
    }
}

impl Op for PoolOp {
    fn name(&self) -> StaticName {
        OP_TYPE.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{:?}", self.0)])
    }

    op_as_typed_op!();
}

impl EvalOp for PoolOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = &inputs[0];
        let [n, c, h, w] = nchw_op::nchw(OP_TYPE, x)?;
        let (oh, ow) = self.0.fit(OP_TYPE, h, w)?;
        // SAFETY: `run` writes every output element or returns false, and then the tensor
        // is dropped unread.
        let mut out = unsafe { Tensor::uninitialized_dt(x.datum_type(), &[n, c, oh, ow])? };
        fn pool<T: Lane + Datum>(
            p: &Window,
            x: &Tensor,
            planes: usize,
            out: &mut Tensor,
        ) -> TractResult<bool> {
            let (h, w) = (x.shape()[2], x.shape()[3]);
            Ok(p.run(
                x.try_as_plain_ram()?.as_slice::<T>()?,
                planes,
                h,
                w,
                out.try_as_plain_ram_mut()?.as_slice_mut::<T>()?,
            ))
        }
        let ok = match x.datum_type().unquantized() {
            DatumType::F32 => pool::<f32>(&self.0, x, n * c, &mut out)?,
            DatumType::U8 => pool::<u8>(&self.0, x, n * c, &mut out)?,
            DatumType::I8 => pool::<i8>(&self.0, x, n * c, &mut out)?,
            dt => bail!("{OP_TYPE}: {dt:?} input"),
        };
        ensure!(ok, "{OP_TYPE}: size mismatch for input {:?}", x.shape());
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for PoolOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let x = inputs[0];
        let fact = nchw_op::window_fact(OP_TYPE, x, x.datum_type, None, |h, w| {
            self.0.fit(OP_TYPE, h, w)
        })?;
        Ok(tvec!(fact))
    }

    as_op!();
}

/// What a pool compares: floats, and the codes of an integer file.
pub trait Lane: Copy {
    /// The identity of `max` (what a window wholly outside the image would hold).
    const LOWEST: Self;
    fn max(self, other: Self) -> Self;
}

impl Lane for f32 {
    const LOWEST: f32 = f32::NEG_INFINITY;
    fn max(self, other: f32) -> f32 {
        f32::max(self, other)
    }
}

impl Lane for u8 {
    const LOWEST: u8 = 0;
    fn max(self, other: u8) -> u8 {
        Ord::max(self, other)
    }
}

impl Lane for i8 {
    const LOWEST: i8 = i8::MIN;
    fn max(self, other: i8) -> i8 {
        Ord::max(self, other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, tap by tap.
    fn reference(p: &Window, x: &[f32], h: usize, w: usize) -> Vec<f32> {
        let (oh, ow) = p.output_hw(h, w).unwrap();
        let mut out = vec![f32::NEG_INFINITY; oh * ow];
        for oy in 0..oh {
            for ox in 0..ow {
                for ky in 0..p.kernel[0] {
                    for kx in 0..p.kernel[1] {
                        let iy = (oy * p.strides[0] + ky) as isize - p.pads[0] as isize;
                        let ix = (ox * p.strides[1] + kx) as isize - p.pads[1] as isize;
                        if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                            let v = x[iy as usize * w + ix as usize];
                            out[oy * ow + ox] = out[oy * ow + ox].max(v);
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn pools_like_the_definition() {
        let cases = [
            ([2, 2], [2, 2], [0; 4], 8, 6),
            ([2, 2], [2, 2], [0; 4], 7, 5), // odd sizes: the last row and column drop
            ([3, 3], [2, 2], [1; 4], 9, 7),
            ([3, 3], [1, 1], [1, 1, 1, 1], 4, 4),
            ([2, 3], [1, 2], [0, 1, 1, 0], 5, 6),
        ];
        for (kernel, strides, pads, h, w) in cases {
            let p = Window {
                kernel,
                strides,
                pads,
            };
            let x: Vec<f32> = (0..3 * h * w)
                .map(|i| ((i * 37 % 101) as f32) - 50.0)
                .collect();
            let (oh, ow) = p.output_hw(h, w).unwrap();
            let mut out = vec![f32::NAN; 3 * oh * ow];
            assert!(p.run(&x, 3, h, w, &mut out));
            let want: Vec<f32> = x
                .chunks(h * w)
                .flat_map(|x| reference(&p, x, h, w))
                .collect();
            assert_eq!(out, want, "{p:?} on {h}x{w}");
        }
    }

    #[test]
    fn pools_integer_codes_too() {
        // A `QLinearConv` file pools uint8 codes (and could pool int8 ones).
        let p = Window {
            kernel: [3, 3],
            strides: [2, 2],
            pads: [1; 4],
        };
        let x: Vec<u8> = (0..5 * 6).map(|i| (i * 53 % 256) as u8).collect();
        let f: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let (oh, ow) = p.output_hw(5, 6).unwrap();
        let (mut q, mut r) = (vec![0u8; oh * ow], vec![0f32; oh * ow]);
        assert!(p.run(&x, 1, 5, 6, &mut q) && p.run(&f, 1, 5, 6, &mut r));
        assert_eq!(q.iter().map(|&v| v as f32).collect::<Vec<_>>(), r);
        let s: Vec<i8> = x.iter().map(|&v| (v as i16 - 128) as i8).collect();
        let mut o = vec![0i8; oh * ow];
        assert!(p.run(&s, 1, 5, 6, &mut o));
        assert_eq!(
            o.iter()
                .map(|&v| (v as i16 + 128) as u8)
                .collect::<Vec<_>>(),
            q
        );
    }

    #[test]
    fn takes_only_the_pools_it_runs() {
        let node = |attrs: Vec<(&str, Vec<i64>)>, outputs: Vec<&str>| NodeProto {
            op_type: "MaxPool".into(),
            input: vec!["x".into()],
            output: outputs.into_iter().map(String::from).collect(),
            attribute: attrs
                .into_iter()
                .map(|(n, v)| tract_onnx::pb::AttributeProto {
                    name: n.into(),
                    ints: v,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let k = ("kernel_shape", vec![2, 2]);
        assert!(pool_of(&node(vec![k.clone(), ("strides", vec![2, 2])], vec!["y"])).is_some());
        assert!(pool_of(&node(vec![k.clone()], vec!["y", "indices"])).is_none());
        assert!(pool_of(&node(vec![k.clone(), ("dilations", vec![2, 2])], vec!["y"])).is_none());
        assert!(pool_of(&node(vec![("kernel_shape", vec![3])], vec!["y"])).is_none());
        assert!(pool_of(&node(vec![k, ("pads", vec![2, 2, 2, 2])], vec!["y"])).is_none());
        let mut g = GraphProto {
            node: vec![node(vec![("kernel_shape", vec![2, 2])], vec!["y", ""])],
            ..Default::default()
        };
        assert_eq!(replace_max_pools(&mut g), 1);
        assert_eq!(g.node[0].op_type, OP_TYPE);
        assert_eq!(g.node[0].output, ["y"]);
    }

    #[test]
    fn refuses_sizes_that_disagree() {
        let p = Window {
            kernel: [2, 2],
            strides: [2, 2],
            pads: [0; 4],
        };
        assert!(!p.run(&[0.0; 15], 1, 4, 4, &mut [0.0; 4]));
        assert!(!p.run(&[0.0; 16], 1, 4, 4, &mut [0.0; 3]));
        assert!(p.output_hw(1, 4).is_none());
    }
}
