//! [`QConv`] as a tract operator: an ONNX op parser (for the node the rewrite writes), its
//! inference rules, and the typed op the optimised plan runs.
use std::sync::Arc;

use tract_onnx::{
    model::{OnnxOpRegister, ParsingContext},
    pb::NodeProto,
    tract_hir::internal::*,
};

use super::grid::fake_quantize;
use super::kernel::{Geometry, QConv};
use crate::nchw_op;

/// The output size, or the error when the kernel does not fit the input.
fn fit(hw: Option<(usize, usize)>, h: usize, w: usize) -> TractResult<(usize, usize)> {
    hw.with_context(|| format!("{OP_TYPE}: kernel larger than {h}x{w}"))
}

/// The op type the rewrite gives fused nodes. Not an ONNX op: it lives only between the
/// rewrite and tract's parser, never in a file.
pub const OP_TYPE: &str = "HydraNetQConv";

pub fn register(reg: &mut OnnxOpRegister) {
    reg.insert(OP_TYPE, parse);
    reg.insert(FAKE_QUANT, parse_fake_quant);
}

/// Inputs: `x` (f32 NCHW), `x_scale`, `x_zero_point` (u8), `w` (i8 OIHW), `w_scale` (one
/// per output channel), optional `bias` (f32); every input but `x` is a constant.
/// Attributes: `kernel_shape`, `strides`, `pads`, `relu`, and `out_scale` +
/// `out_zero_point` when the output is rounded to a uint8 grid ([`OUT_SCALE`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Expand {
    kernel: [usize; 2],
    strides: [usize; 2],
    pads: [usize; 4],
    relu: bool,
    /// The output grid: the scale's bits and the zero point.
    out: Option<(u32, u8)>,
}

/// The attributes of a fused output grid: a quantize/dequantize pair that read only the
/// convolution's output, now done in its epilogue.
pub const OUT_SCALE: &str = "out_scale";
pub const OUT_ZERO: &str = "out_zero_point";

fn pair(node: &NodeProto, name: &str, default: usize) -> TractResult<[usize; 2]> {
    match node.get_attr_opt_vec::<usize>(name)? {
        None => Ok([default; 2]),
        Some(v) => match v.as_slice() {
            [a, b] => Ok([*a, *b]),
            _ => bail!("{OP_TYPE}: `{name}` must have 2 values, got {v:?}"),
        },
    }
}

fn parse(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let pads = match node.get_attr_opt_vec::<usize>("pads")? {
        None => [0; 4],
        Some(v) => match v.as_slice() {
            // ONNX order: y_begin, x_begin, y_end, x_end.
            [t, l, b, r] => [*t, *l, *b, *r],
            _ => bail!("{OP_TYPE}: `pads` must have 4 values, got {v:?}"),
        },
    };
    let op = Expand {
        kernel: pair(node, "kernel_shape", 0)?,
        strides: pair(node, "strides", 1)?,
        pads,
        relu: node.get_attr_opt::<i64>("relu")?.unwrap_or(0) != 0,
        out: match node.get_attr_opt::<f32>(OUT_SCALE)? {
            None => None,
            Some(scale) => {
                let zero: i64 = node.get_attr(OUT_ZERO)?;
                let zero =
                    u8::try_from(zero).with_context(|| format!("{OP_TYPE}: {OUT_ZERO} {zero}"))?;
                Some((scale.to_bits(), zero))
            }
        },
    };
    Ok((expand(op), vec![]))
}

impl Expand {
    fn output_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        Geometry {
            c: 0,
            m: 0,
            kh: self.kernel[0],
            kw: self.kernel[1],
            sh: self.strides[0],
            sw: self.strides[1],
            pads: self.pads,
        }
        .output_hw(h, w)
    }
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
        if !(5..=6).contains(&inputs.len()) {
            bail!("{OP_TYPE}: expected 5 or 6 inputs, got {}", inputs.len());
        }
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, f32::datum_type())?;
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.equals(&inputs[3].rank, 4)?;
        let (x, y) = (&inputs[0], &outputs[0]);
        nchw_op::window_rules(s, x, y, &inputs[3].shape[0], move |h, w| {
            fit(self.output_hw(h, w), h, w)
        })
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let konst = |i: usize, what: &str| nchw_op::konst(model, inputs, i, prefix, OP_TYPE, what);
        let x_scale = konst(1, "input scale")?;
        let x_zero = konst(2, "input zero point")?;
        let w = konst(3, "weight")?;
        let w_scale = konst(4, "weight scale")?;
        let bias = inputs.get(5).map(|_| konst(5, "bias")).transpose()?;
        let x_scale = *x_scale
            .cast_to::<f32>()?
            .try_as_plain_ram()?
            .as_slice::<f32>()?
            .first()
            .context("empty input scale")?;
        ensure!(
            x_zero.datum_type() == u8::datum_type(),
            "{prefix}: input zero point must be uint8"
        );
        let x_zero = *x_zero
            .try_as_plain_ram()?
            .as_slice::<u8>()?
            .first()
            .context("empty input zero point")?;
        ensure!(
            w.datum_type() == i8::datum_type(),
            "{prefix}: weights must be int8"
        );
        let shape = w.shape();
        ensure!(
            shape.len() == 4 && shape[2..] == self.kernel[..],
            "{prefix}: weight shape {shape:?} does not match kernel {:?}",
            self.kernel
        );
        let geo = Geometry {
            c: shape[1],
            m: shape[0],
            kh: shape[2],
            kw: shape[3],
            sh: self.strides[0],
            sw: self.strides[1],
            pads: self.pads,
        };
        let input_c = model.outlet_fact(inputs[0])?.shape[1].to_usize()?;
        ensure!(
            input_c == geo.c,
            "{prefix}: input has {input_c} channels, weights {}",
            geo.c
        );
        let mut w_scale = w_scale.cast_to::<f32>()?.into_owned();
        if w_scale.len() == 1 && geo.m > 1 {
            w_scale = w_scale.broadcast_scalar_to_shape(&[geo.m])?;
        }
        let bias = bias
            .map(|b| b.cast_to::<f32>().map(|b| b.into_owned()))
            .transpose()?;
        let conv = QConv::new(
            geo,
            w.try_as_plain_ram()?.as_slice::<i8>()?,
            w_scale.try_as_plain_ram()?.as_slice::<f32>()?,
            bias.as_ref()
                .map(|b| b.try_as_plain_ram().and_then(|v| v.as_slice::<f32>()))
                .transpose()?,
            x_scale,
            x_zero,
            self.relu,
        )
        .and_then(|c| match self.out {
            Some((scale, zero)) => c.with_requant(f32::from_bits(scale), zero),
            None => Ok(c),
        })
        .map_err(|e| format_err!("{prefix}: {e}"))?;
        model.wire_node(prefix, QConvOp(Arc::new(conv)), &inputs[..1])
    }
}

/// The typed op: shares its packed weights between plan copies.
#[derive(Debug, Clone)]
struct QConvOp(Arc<QConv>);

impl PartialEq for QConvOp {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for QConvOp {}

impl Op for QConvOp {
    fn name(&self) -> StaticName {
        OP_TYPE.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let g = self.0.geometry();
        Ok(vec![format!(
            "{}x{} stride {}x{}, {} -> {} channels, int8 x int8 -> int32{}{}",
            g.kh,
            g.kw,
            g.sh,
            g.sw,
            g.c,
            g.m,
            if self.0.relu() { ", relu" } else { "" },
            match self.0.requant() {
                Some(q) => format!(", out on the grid of scale {}", q.scale),
                None => String::new(),
            }
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for QConvOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = &inputs[0];
        let [n, c, h, w] = nchw_op::nchw(OP_TYPE, x)?;
        let g = self.0.geometry();
        ensure!(
            c == g.c,
            "{OP_TYPE}: input has {c} channels, weights {}",
            g.c
        );
        let (oh, ow) = fit(g.output_hw(h, w), h, w)?;
        // SAFETY: `run` writes every output element (every channel of every pixel) or
        // returns false, and then the tensor is dropped unread.
        let mut out = unsafe { Tensor::uninitialized::<f32>(&[n, g.m, oh, ow])? };
        let ok = self.0.run(
            x.try_as_plain_ram()?.as_slice::<f32>()?,
            n,
            h,
            w,
            out.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?,
        );
        ensure!(ok, "{OP_TYPE}: size mismatch for input {:?}", x.shape());
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for QConvOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let g = self.0.geometry();
        let fact =
            nchw_op::window_fact(OP_TYPE, inputs[0], f32::datum_type(), Some(g.m), |h, w| {
                fit(g.output_hw(h, w), h, w)
            })?;
        Ok(tvec!(fact))
    }

    as_op!();
}

/// The op type the rewrite gives a quantize/dequantize pair it folds into one pass.
pub const FAKE_QUANT: &str = "HydraNetFakeQuant";

/// `DequantizeLinear(QuantizeLinear(x, scale, zero), scale, zero)` in one elementwise pass
/// (tract runs the pair as two, with a uint8 tensor between them). Attributes `scale`
/// (float) and `zero_point` (int, 0-255).
#[derive(Debug, Clone, PartialEq)]
struct FakeQuant {
    scale: f32,
    zero: u8,
}

impl Eq for FakeQuant {}

fn parse_fake_quant(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let scale: f32 = node.get_attr("scale")?;
    let zero: i64 = node.get_attr("zero_point")?;
    ensure!(
        scale.is_finite() && scale > 0.0,
        "{FAKE_QUANT}: scale {scale} is not a positive finite number"
    );
    let zero = u8::try_from(zero).with_context(|| format!("{FAKE_QUANT}: zero point {zero}"))?;
    Ok((expand(FakeQuant { scale, zero }), vec![]))
}

impl Expansion for FakeQuant {
    fn name(&self) -> StaticName {
        FAKE_QUANT.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, f32::datum_type())?;
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.equals(&inputs[0].shape, &outputs[0].shape)
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, FakeQuantOp(self.clone()), inputs)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FakeQuantOp(FakeQuant);

impl Op for FakeQuantOp {
    fn name(&self) -> StaticName {
        FAKE_QUANT.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("scale {} zero {}", self.0.scale, self.0.zero)])
    }

    op_as_typed_op!();
}

impl EvalOp for FakeQuantOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = &inputs[0];
        // SAFETY: `fake_quantize` writes every element (same length as the input).
        let mut out = unsafe { Tensor::uninitialized::<f32>(x.shape())? };
        fake_quantize(
            x.try_as_plain_ram()?.as_slice::<f32>()?,
            self.0.scale,
            self.0.zero,
            out.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?,
        );
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for FakeQuantOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].without_value()))
    }

    as_op!();
}
