//! Per-head losses and how they are combined.
use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;
use models::{HeadKind, HeadSpec};
use serde::{Deserialize, Serialize};

/// Mean absolute error. `pred`: `[N, 1]` or `[N]`; `target`: `[N]`.
pub fn l1(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    (pred.flatten_all()? - target)?.abs()?.mean_all()
}

/// Binary cross-entropy on logits, in the stable form
/// `max(x, 0) - x * t + log(1 + exp(-|x|))`: no `exp` of a large positive number, so no
/// overflow for any logit (Candle's own version takes `log(sigmoid(x))` and overflows).
pub fn bce_with_logits(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    let x = logits.flatten_all()?;
    let softplus = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
    ((x.relu()? - (&x * target)?)? + softplus)?.mean_all()
}

/// Cross-entropy over classes. `logits`: `[N, K]`; `target`: `[N]` u32.
pub fn cross_entropy(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    candle_nn::loss::cross_entropy(logits, target)
}

/// The "two-hot" distribution of `value` over ascending, evenly spaced `centres`: its mass
/// split between the two nearest centres so that its expectation is `value` exactly
/// (clamped to the centres' range). Written into `row` (`centres.len()` long).
pub fn two_hot(centres: &[f32], value: f32, row: &mut [f32]) {
    row.fill(0.0);
    let b = centres.len();
    let step = (centres[b - 1] - centres[0]) / (b as f32 - 1.0);
    let t = ((value - centres[0]) / step).clamp(0.0, (b - 1) as f32);
    let k = (t.floor() as usize).min(b - 2);
    let f = t - k as f32;
    row[k] = 1.0 - f;
    row[k + 1] = f;
}

/// A distribution head's loss per sample, `[N]`: cross-entropy of the logits `out`
/// (`[N, B]`) against the two-hot targets `q` (`[N, B]`), plus the L1 error of the
/// expected value in units of a quarter of the range (the regression head's default
/// normalisation), which ties the readout to the metric it is judged by.
fn distribution_per_sample(head: &HeadSpec, out: &Tensor, q: &Tensor) -> Result<Tensor> {
    let HeadKind::Distribution { min, max, .. } = head.kind else {
        candle_core::bail!("head `{}` is not a distribution head", head.name)
    };
    let centres = head.kind.centres();
    let c = Tensor::from_vec(centres.clone(), (centres.len(), 1), out.device())?;
    let logp = candle_nn::ops::log_softmax(out, 1)?;
    let ce = (q * &logp)?.sum(1)?.neg()?;
    let expected = logp.exp()?.matmul(&c)?.squeeze(1)?;
    let truth = q.matmul(&c)?.squeeze(1)?;
    let l1 = ((expected - truth)?.abs()? / f64::from((max - min) / 4.0))?;
    ce + l1
}

/// The loss of one head, chosen by its kind.
pub fn head_loss(head: &HeadSpec, out: &Tensor, target: &Tensor) -> Result<Tensor> {
    match head.kind {
        HeadKind::Regression { .. } => l1(out, target),
        HeadKind::Binary { .. } => bce_with_logits(out, target),
        HeadKind::Multiclass { .. } => cross_entropy(out, target),
        HeadKind::Distribution { .. } => distribution_per_sample(head, out, target)?.mean_all(),
    }
}

/// Each sample's loss for one head, `[N]`: the terms whose mean [`head_loss`] is.
pub fn per_sample_loss(head: &HeadSpec, out: &Tensor, target: &Tensor) -> Result<Tensor> {
    match head.kind {
        HeadKind::Regression { .. } => (out.flatten_all()? - target)?.abs(),
        HeadKind::Binary { .. } => {
            let x = out.flatten_all()?;
            let softplus = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
            (x.relu()? - (&x * target)?)? + softplus
        }
        HeadKind::Multiclass { .. } => candle_nn::ops::log_softmax(out, 1)?
            .gather(&target.unsqueeze(1)?, 1)?
            .squeeze(1)?
            .neg(),
        HeadKind::Distribution { .. } => distribution_per_sample(head, out, target),
    }
}

/// The loss of one head over the samples labelled for it: with a `mask` (`[N]`, 1 for
/// labelled, 0 for not), the sum of the labelled samples' losses over their count
/// `labelled`, 0 when there are none. An unlabelled sample's loss is multiplied by 0, so
/// its gradient into the head, and through the head into the body, is exactly 0. Without
/// a mask (every sample labelled), [`head_loss`] itself.
pub fn masked_head_loss(
    head: &HeadSpec,
    out: &Tensor,
    target: &Tensor,
    mask: Option<&Tensor>,
    labelled: usize,
) -> Result<Tensor> {
    match mask {
        None => head_loss(head, out, target),
        Some(m) => {
            let sum = (per_sample_loss(head, out, target)? * m)?.sum_all()?;
            sum / labelled.max(1) as f64
        }
    }
}

/// How per-head losses become one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LossWeighting {
    /// Plain sum (the seed's).
    Sum,
    /// Fixed per-head weights (`--head-weights`).
    Fixed,
    /// Learned homoscedastic uncertainty (Kendall, Gal, Cipolla, CVPR 2018):
    /// `sum_i exp(-s_i) * L_i + s_i`, one learned `s_i` per head.
    Uncertainty,
}

/// Combines per-head losses; owns the learned log-variances when weighting by uncertainty.
pub struct LossCombiner {
    weighting: LossWeighting,
    weights: Vec<f32>,
    log_vars: Option<Tensor>,
}

impl LossCombiner {
    /// A combiner for `heads`: each head's loss is scaled by its declared weight (the heads
    /// file's `weight`, default 1), or by `fixed` (`--head-weights`) with
    /// [`LossWeighting::Fixed`]. Learned parameters live under `vb` (named `loss.log_var`
    /// by the caller) so they are optimised and checkpointed with the model.
    pub fn new(
        weighting: LossWeighting,
        fixed: &[f32],
        heads: &[HeadSpec],
        vb: VarBuilder,
    ) -> Result<Self> {
        let n = heads.len();
        let weights = match weighting {
            LossWeighting::Fixed => {
                if fixed.len() != n {
                    candle_core::bail!("--head-weights needs {n} values, got {}", fixed.len());
                }
                fixed.to_vec()
            }
            _ => heads.iter().map(|h| h.weight()).collect(),
        };
        let log_vars = match weighting {
            LossWeighting::Uncertainty => {
                Some(vb.get_with_hints(n, "log_var", candle_nn::Init::Const(0.0))?)
            }
            _ => None,
        };
        Ok(Self {
            weighting,
            weights,
            log_vars,
        })
    }

    /// The total loss. `losses`: one scalar per head.
    pub fn combine(&self, losses: &[Tensor]) -> Result<Tensor> {
        let stacked = Tensor::stack(losses, 0)?;
        let device = stacked.device().clone();
        match (&self.weighting, &self.log_vars) {
            (LossWeighting::Uncertainty, Some(s)) => {
                let scaled = (stacked * s.neg()?.exp()?)?;
                let scaled = match self.weights.iter().all(|w| *w == 1.0) {
                    true => scaled,
                    false => (scaled * self.weight_tensor(&device)?)?,
                };
                (scaled + s)?.sum_all()
            }
            _ => (stacked * self.weight_tensor(&device)?)?.sum_all(),
        }
    }

    fn weight_tensor(&self, device: &candle_core::Device) -> Result<Tensor> {
        Tensor::from_slice(&self.weights, self.weights.len(), device)?.to_dtype(DType::F32)
    }

    /// Current effective weight of each head (`w_i exp(-s_i)` when learned).
    pub fn effective_weights(&self) -> Result<Vec<f32>> {
        match &self.log_vars {
            Some(s) => Ok(s
                .neg()?
                .exp()?
                .to_vec1::<f32>()?
                .iter()
                .zip(&self.weights)
                .map(|(e, w)| e * w)
                .collect()),
            None => Ok(self.weights.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    fn scalar(x: Tensor) -> f32 {
        x.to_scalar::<f32>().unwrap()
    }

    #[test]
    fn two_hot_targets_have_the_value_as_their_expectation() {
        let h = HeadSpec::distribution("age", "years", 1.0, 116.0, 116);
        let c = h.kind.centres();
        let mut row = vec![0f32; 116];
        for v in [1.0f32, 1.25, 30.0, 30.7, 115.5, 116.0] {
            two_hot(&c, v, &mut row);
            let mean: f32 = row.iter().zip(&c).map(|(q, c)| q * c).sum();
            assert!((mean - v).abs() < 1e-4, "{v}: {mean}");
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
            assert!(row.iter().filter(|&&q| q > 0.0).count() <= 2);
        }
        // Outside the range: clamped to the end bins.
        two_hot(&c, -5.0, &mut row);
        assert_eq!(row[0], 1.0);
        two_hot(&c, 500.0, &mut row);
        assert_eq!(row[115], 1.0);
    }

    #[test]
    fn the_distribution_loss_is_cross_entropy_plus_the_readouts_l1() {
        // 3 bins at 0, 5, 10; target 2.5 = half on 0, half on 5.
        let h = HeadSpec::distribution("x", "", 0.0, 10.0, 3);
        let q = Tensor::new(&[[0.5f32, 0.5, 0.0]], &Device::Cpu).unwrap();
        let z = Tensor::new(&[[0.0f32, 0.0, 0.0]], &Device::Cpu).unwrap();
        // Uniform: CE = ln 3, readout 5 vs 2.5: L1 2.5 / (10 / 4) = 1.
        let l = scalar(head_loss(&h, &z, &q).unwrap());
        assert!((l - (3f32.ln() + 1.0)).abs() < 1e-5, "{l}");
        // Per-sample terms (masked losses) agree with the mean.
        let per = per_sample_loss(&h, &z, &q)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!((per[0] - l).abs() < 1e-6);
    }

    #[test]
    fn l1_matches_hand_computation() {
        // |1-0| + |-2-1| + |0.5-0.5| = 4, mean 4/3.
        let l = scalar(
            l1(
                &t(&[1.0, -2.0, 0.5]).reshape((3, 1)).unwrap(),
                &t(&[0.0, 1.0, 0.5]),
            )
            .unwrap(),
        );
        assert!((l - 4.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn bce_matches_hand_computation_and_survives_extremes() {
        // x=0,t=1: ln 2; x=2,t=0: 2 + ln(1+e^-2) = 2.126928; mean = 1.4100.
        let l = scalar(bce_with_logits(&t(&[0.0, 2.0]), &t(&[1.0, 0.0])).unwrap());
        let want = ((2f32).ln() + 2.0 + (1.0 + (-2f32).exp()).ln()) / 2.0;
        assert!((l - want).abs() < 1e-6, "{l} vs {want}");
        assert!((want - 1.4100).abs() < 1e-4);
        // Extreme logits: the right answer costs ~0, the wrong one costs |x|.
        let l = scalar(bce_with_logits(&t(&[1e4, -1e4]), &t(&[1.0, 0.0])).unwrap());
        assert!(l.is_finite() && l.abs() < 1e-6, "{l}");
        let l = scalar(bce_with_logits(&t(&[1e4, -1e30]), &t(&[0.0, 1.0])).unwrap());
        assert!(l.is_finite() && l > 1e29, "{l}");
        let l = scalar(bce_with_logits(&t(&[f32::MAX]), &t(&[0.0])).unwrap());
        assert!(l.is_finite());
    }

    #[test]
    fn cross_entropy_matches_hand_computation_and_survives_extremes() {
        // logits [0, ln 3] target 1: p = 3/4, loss = ln(4/3).
        let logits = Tensor::new(&[[0.0f32, 3f32.ln()]], &Device::Cpu).unwrap();
        let target = Tensor::new(&[1u32], &Device::Cpu).unwrap();
        let l = scalar(cross_entropy(&logits, &target).unwrap());
        assert!((l - (4.0f32 / 3.0).ln()).abs() < 1e-6);
        let logits = Tensor::new(&[[1e30f32, -1e30, 0.0]], &Device::Cpu).unwrap();
        let right =
            scalar(cross_entropy(&logits, &Tensor::new(&[0u32], &Device::Cpu).unwrap()).unwrap());
        let wrong =
            scalar(cross_entropy(&logits, &Tensor::new(&[2u32], &Device::Cpu).unwrap()).unwrap());
        assert!(right.is_finite() && right.abs() < 1e-6);
        assert!(wrong.is_finite() && wrong > 1e29);
    }

    /// The property partial labels rest on: an unlabelled sample gives its head exactly
    /// zero gradient, whatever its output or placeholder target, and the labelled samples'
    /// loss is their plain mean.
    #[test]
    fn a_masked_sample_contributes_exactly_zero_gradient_to_its_head() {
        use candle_core::Var;
        let dev = Device::Cpu;
        let heads = models::heads::utkface_heads();
        let mask = t(&[1.0, 0.0, 1.0]);
        for (h, width) in heads.iter().zip([1usize, 1, 5]) {
            // A linear head over fixed features, so the gradient reaches real weights.
            let x = Tensor::new(&[[0.3f32, -1.2], [50.0, 80.0], [-0.7, 0.4]], &dev).unwrap();
            let w = Var::from_tensor(
                &Tensor::new(
                    &[
                        [0.5f32, -0.25, 0.1, 0.2, -0.3],
                        [0.75, 0.6, -0.4, 0.05, 0.9],
                    ],
                    &dev,
                )
                .unwrap()
                .narrow(1, 0, width)
                .unwrap(),
            )
            .unwrap();
            let target = |v: [f32; 3]| match h.num_classes() {
                Some(k) if k > 2 => Tensor::new(&v.map(|v| v as u32), &dev).unwrap(),
                _ => Tensor::new(&v, &dev).unwrap(),
            };
            let grads = |x: &Tensor, tgt: &Tensor| {
                let out = x.matmul(w.as_tensor()).unwrap();
                let loss = masked_head_loss(h, &out, tgt, Some(&mask), 2).unwrap();
                let g = loss.backward().unwrap();
                (
                    scalar(loss),
                    g.get(w.as_tensor())
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap(),
                )
            };
            let (l, g) = grads(&x, &target([1.0, 0.0, 0.0]));
            // The masked sample (row 1) with another input and another placeholder target:
            // bit-identical loss and gradient.
            let x2 = Tensor::new(&[[0.3f32, -1.2], [-9e3, 4e3], [-0.7, 0.4]], &dev).unwrap();
            let (l2, g2) = grads(&x2, &target([1.0, 1.0, 0.0]));
            assert_eq!(l.to_bits(), l2.to_bits(), "{}", h.name);
            assert_eq!(g, g2, "{}", h.name);
            // The same as the unmasked loss over the labelled rows alone.
            let sub = Tensor::new(&[[0.3f32, -1.2], [-0.7, 0.4]], &dev).unwrap();
            let tsub = match h.num_classes() {
                Some(k) if k > 2 => Tensor::new(&[1u32, 0], &dev).unwrap(),
                _ => t(&[1.0, 0.0]),
            };
            let out = sub.matmul(w.as_tensor()).unwrap();
            let lsub = head_loss(h, &out, &tsub).unwrap();
            let gsub = lsub
                .backward()
                .unwrap()
                .get(w.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let lsub = scalar(lsub);
            assert!((l - lsub).abs() < 1e-6, "{}: {l} vs {lsub}", h.name);
            for (a, b) in g.iter().zip(&gsub) {
                assert!((a - b).abs() < 1e-6, "{}: {g:?} vs {gsub:?}", h.name);
            }
            // The output gradient of the masked row is exactly zero.
            let out = Var::from_tensor(&x.matmul(w.as_tensor()).unwrap()).unwrap();
            let loss =
                masked_head_loss(h, out.as_tensor(), &target([1.0, 0.0, 0.0]), Some(&mask), 2)
                    .unwrap();
            let go = loss
                .backward()
                .unwrap()
                .get(out.as_tensor())
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            assert!(go[1].iter().all(|v| *v == 0.0), "{}: {go:?}", h.name);
            assert!(go[0].iter().any(|v| *v != 0.0), "{}: {go:?}", h.name);
        }
        // No labelled sample: zero loss, zero gradient.
        let h = &heads[0];
        let out = Var::from_tensor(&t(&[1.0, 2.0])).unwrap();
        let loss = masked_head_loss(
            h,
            out.as_tensor(),
            &t(&[0.0, 0.0]),
            Some(&t(&[0.0, 0.0])),
            0,
        )
        .unwrap();
        assert_eq!(scalar(loss.clone()), 0.0);
        let g = loss
            .backward()
            .unwrap()
            .get(out.as_tensor())
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(g, vec![0.0, 0.0]);
    }

    #[test]
    fn per_sample_losses_average_to_the_head_loss() {
        let dev = Device::Cpu;
        let heads = models::heads::utkface_heads();
        let reg = t(&[0.5, -1.0, 2.0]).reshape((3, 1)).unwrap();
        let bin = t(&[0.5, -3.0, 9.0]).reshape((3, 1)).unwrap();
        let cls = Tensor::new(
            &[
                [0.1f32, 2.0, -1.0, 0.0, 0.3],
                [1.0, 0.0, 0.0, 0.0, 0.0],
                [-2.0, 0.5, 0.5, 3.0, 0.0],
            ],
            &dev,
        )
        .unwrap();
        for (h, out, tgt) in [
            (&heads[0], reg, t(&[0.0, 1.0, 1.5])),
            (&heads[1], bin, t(&[1.0, 0.0, 1.0])),
            (&heads[2], cls, Tensor::new(&[1u32, 0, 3], &dev).unwrap()),
        ] {
            let mean = scalar(per_sample_loss(h, &out, &tgt).unwrap().mean_all().unwrap());
            let want = scalar(head_loss(h, &out, &tgt).unwrap());
            assert!((mean - want).abs() < 1e-6, "{}: {mean} vs {want}", h.name);
        }
    }

    #[test]
    fn combiners_match_hand_computation() {
        let vm = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let losses = [t(&[1.0]).squeeze(0).unwrap(), t(&[2.0]).squeeze(0).unwrap()];
        let two = &models::heads::utkface_heads()[..2];
        let sum = LossCombiner::new(LossWeighting::Sum, &[], two, vb.pp("loss")).unwrap();
        assert_eq!(scalar(sum.combine(&losses).unwrap()), 3.0);
        let fixed =
            LossCombiner::new(LossWeighting::Fixed, &[0.5, 2.0], two, vb.pp("loss")).unwrap();
        assert_eq!(scalar(fixed.combine(&losses).unwrap()), 4.5);
        assert!(LossCombiner::new(LossWeighting::Fixed, &[1.0], two, vb.pp("loss")).is_err());
        let unc = LossCombiner::new(LossWeighting::Uncertainty, &[], two, vb.pp("loss")).unwrap();
        // s = 0: exp(0) * (1 + 2) + 0 = 3.
        assert_eq!(scalar(unc.combine(&losses).unwrap()), 3.0);
        // Declared weights (a heads file's `weight`) scale the sum.
        let mut weighted = two.to_vec();
        weighted[1].labeling.weight = 0.25;
        let w = LossCombiner::new(LossWeighting::Sum, &[], &weighted, vb.pp("loss")).unwrap();
        assert_eq!(scalar(w.combine(&losses).unwrap()), 1.5);
        assert!(vm.data().lock().unwrap().contains_key("loss.log_var"));
    }
}
