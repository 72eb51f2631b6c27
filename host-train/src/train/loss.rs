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

/// The loss of one head, chosen by its kind.
pub fn head_loss(head: &HeadSpec, out: &Tensor, target: &Tensor) -> Result<Tensor> {
    match head.kind {
        HeadKind::Regression { .. } => l1(out, target),
        HeadKind::Binary { .. } => bce_with_logits(out, target),
        HeadKind::Multiclass { .. } => cross_entropy(out, target),
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
    /// A combiner for `n` heads. Learned parameters live under `vb` (named `loss.log_var`
    /// by the caller) so they are optimised and checkpointed with the model.
    pub fn new(
        weighting: LossWeighting,
        weights: &[f32],
        n: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weights = match weighting {
            LossWeighting::Fixed => {
                if weights.len() != n {
                    candle_core::bail!("--head-weights needs {n} values, got {}", weights.len());
                }
                weights.to_vec()
            }
            _ => vec![1.0; n],
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
        match (&self.weighting, &self.log_vars) {
            (LossWeighting::Uncertainty, Some(s)) => ((stacked * s.neg()?.exp()?)? + s)?.sum_all(),
            _ => {
                let w = Tensor::from_slice(&self.weights, self.weights.len(), stacked.device())?
                    .to_dtype(DType::F32)?;
                (stacked * w)?.sum_all()
            }
        }
    }

    /// Current effective weight of each head (`exp(-s_i)` when learned).
    pub fn effective_weights(&self) -> Result<Vec<f32>> {
        match &self.log_vars {
            Some(s) => s.neg()?.exp()?.to_vec1(),
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

    #[test]
    fn combiners_match_hand_computation() {
        let vm = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let losses = [t(&[1.0]).squeeze(0).unwrap(), t(&[2.0]).squeeze(0).unwrap()];
        let sum = LossCombiner::new(LossWeighting::Sum, &[], 2, vb.pp("loss")).unwrap();
        assert_eq!(scalar(sum.combine(&losses).unwrap()), 3.0);
        let fixed = LossCombiner::new(LossWeighting::Fixed, &[0.5, 2.0], 2, vb.pp("loss")).unwrap();
        assert_eq!(scalar(fixed.combine(&losses).unwrap()), 4.5);
        assert!(LossCombiner::new(LossWeighting::Fixed, &[1.0], 2, vb.pp("loss")).is_err());
        let unc = LossCombiner::new(LossWeighting::Uncertainty, &[], 2, vb.pp("loss")).unwrap();
        // s = 0: exp(0) * (1 + 2) + 0 = 3.
        assert_eq!(scalar(unc.combine(&losses).unwrap()), 3.0);
        assert!(vm.data().lock().unwrap().contains_key("loss.log_var"));
    }
}
