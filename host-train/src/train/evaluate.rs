//! Validation and `eval`: run the network in inference mode over a cache, decode with the
//! contract, score with the shared metrics.
use candle_core::{Device, Tensor};
use models::{decode::decode, metrics::Evaluator, metrics::Report, HeadSpec, Prediction};

use super::loss::masked_head_loss;
use crate::{
    data::{AugmentConfig, Batcher, ImageCache},
    net::HydraNet,
    Result,
};

/// Metrics and losses of one evaluation.
pub struct EvalResult {
    /// Metrics with breakdowns.
    pub report: Report,
    /// Mean loss of each head over the samples labelled for it.
    pub head_losses: Vec<f64>,
    /// Sum of the head losses (unweighted); the best-checkpoint criterion.
    pub loss: f64,
}

/// Raw head outputs as rows: `out[h][i]` is head `h`'s values for sample `i`.
pub fn outputs_to_rows(outputs: &[Tensor]) -> Result<Vec<Vec<Vec<f32>>>> {
    Ok(outputs
        .iter()
        .map(|t| t.to_vec2::<f32>())
        .collect::<candle_core::Result<_>>()?)
}

/// Evaluates `net` on every image of `cache`.
pub fn evaluate(
    net: &HydraNet,
    cache: &ImageCache,
    heads: &[HeadSpec],
    batch: usize,
    device: &Device,
) -> Result<EvalResult> {
    evaluate_each(net, cache, heads, batch, device, |_, _| {})
}

/// [`evaluate`], also handing each sample's targets (head order) and decoded prediction
/// to `each`, in cache order (e.g. for a predicted-vs-true plot).
pub fn evaluate_each(
    net: &HydraNet,
    cache: &ImageCache,
    heads: &[HeadSpec],
    batch: usize,
    device: &Device,
    mut each: impl FnMut(&[f32], &Prediction),
) -> Result<EvalResult> {
    let batcher = Batcher::new(cache, heads, AugmentConfig::NONE, 0);
    let mut ev = Evaluator::new(heads);
    let mut sums = vec![0.0f64; heads.len()];
    let mut counts = vec![0usize; heads.len()];
    let indices: Vec<usize> = (0..cache.len()).collect();
    for chunk in indices.chunks(batch.max(1)) {
        let b = batcher.batch(chunk, 0, false, device)?;
        let outs = net.forward_t(&b.input, false)?;
        for (k, (h, o)) in heads.iter().zip(&outs).enumerate() {
            let n = b.labelled[k];
            let loss = masked_head_loss(h, o, &b.targets[k], b.masks[k].as_ref(), n)?;
            sums[k] += loss.to_scalar::<f32>()? as f64 * n as f64;
            counts[k] += n;
        }
        let rows = outputs_to_rows(&outs)?;
        for (i, t) in b.raw_targets.iter().enumerate() {
            let raw: Vec<&[f32]> = rows.iter().map(|r| r[i].as_slice()).collect();
            let pred = decode(heads, &raw)?;
            each(t, &pred);
            ev.add(t, &pred);
        }
    }
    let head_losses: Vec<f64> = sums
        .iter()
        .zip(&counts)
        .map(|(s, &n)| s / n.max(1) as f64)
        .collect();
    Ok(EvalResult {
        report: ev.report(),
        loss: head_losses.iter().sum(),
        head_losses,
    })
}
