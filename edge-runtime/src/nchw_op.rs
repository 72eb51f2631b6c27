//! What the project's own tract ops share: each maps an NCHW input to an NCHW output whose
//! height and width follow from a 2-D window (kernel, strides, pads). The inference rules,
//! the typed output fact, the input's dimensions and the constant inputs of `wire` are
//! written once, here, for `maxpool`, `depthwise` and `qconv::op`.
use std::sync::Arc;

use tract_onnx::tract_hir::{infer::rules::DimProxy, internal::*};

/// Inference rules of a window op: `y` has rank 4, `x`'s batch, `channels` channels, and
/// the height and width `hw` gives for `x`'s (an error when the window does not fit).
pub fn window_rules<'r, 'p: 'r>(
    s: &mut Solver<'r>,
    x: &'p TensorProxy,
    y: &'p TensorProxy,
    channels: &'p DimProxy,
    hw: impl Fn(usize, usize) -> TractResult<(usize, usize)> + 'r,
) -> InferenceResult {
    s.equals(&x.rank, 4)?;
    s.equals(&y.rank, 4)?;
    s.equals(&y.shape[0], &x.shape[0])?;
    s.equals(&y.shape[1], channels)?;
    s.given_2(&x.shape[2], &x.shape[3], move |s, h, w| {
        let (oh, ow) = hw(h.to_usize()?, w.to_usize()?)?;
        s.equals(&y.shape[2], TDim::from(oh))?;
        s.equals(&y.shape[3], TDim::from(ow))
    })
}

/// The typed output fact of a window op: `x`'s batch, `channels` (`None`: `x`'s), and the
/// height and width `hw` gives, in `dt`.
pub fn window_fact(
    op: &str,
    x: &TypedFact,
    dt: DatumType,
    channels: Option<usize>,
    hw: impl Fn(usize, usize) -> TractResult<(usize, usize)>,
) -> TractResult<TypedFact> {
    let s = &x.shape;
    ensure!(s.rank() == 4, "{op}: input rank {} is not 4", s.rank());
    let (oh, ow) = hw(s[2].to_usize()?, s[3].to_usize()?)?;
    let c = channels.map_or_else(|| s[1].clone(), TDim::from);
    Ok(dt.fact([s[0].clone(), c, oh.into(), ow.into()]))
}

/// The dimensions of an NCHW input at run time.
pub fn nchw(op: &str, x: &Tensor) -> TractResult<[usize; 4]> {
    match *x.shape() {
        [n, c, h, w] => Ok([n, c, h, w]),
        _ => bail!("{op}: input shape {:?} is not NCHW", x.shape()),
    }
}

/// Input `i` of a node being wired, which the op needs constant (weights, scales, zero
/// points): the typed model has folded it by then.
pub fn konst(
    model: &TypedModel,
    inputs: &[OutletId],
    i: usize,
    prefix: &str,
    op: &str,
    what: &str,
) -> TractResult<Arc<Tensor>> {
    model
        .outlet_fact(inputs[i])?
        .konst
        .clone()
        .with_context(|| format!("{prefix}: {op} needs a constant {what}"))
}
