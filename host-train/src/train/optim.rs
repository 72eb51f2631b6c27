//! Optimisers whose whole state is named tensors, so a checkpoint holds it and `--resume`
//! continues exactly. (Candle's `AdamW` keeps its moments private, so it cannot resume.)
use std::collections::HashMap;

use candle_core::{backprop::GradStore, Result, Tensor, Var};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::names;

/// Which optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// AdamW (Loshchilov and Hutter 2019), decoupled weight decay.
    Adamw,
    /// SGD with momentum (PyTorch's formulation), weight decay added to the gradient.
    Sgd,
}

/// Variables the optimiser updates: everything but BatchNorm running statistics, sorted by
/// name so the order (and the state file) is stable.
pub fn trainable(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().expect("var map lock");
    let mut v: Vec<(String, Var)> = data
        .iter()
        .filter(|(n, _)| !n.ends_with("running_mean") && !n.ends_with("running_var"))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

// Decay only weight matrices and kernels: decaying BatchNorm scales, biases and the loss's
// log-variances only hurts (a common rule, e.g. in timm and the "bag of tricks" paper).
fn decays(var: &Var) -> bool {
    var.rank() >= 2
}

/// An optimiser with saveable state.
pub struct Optimizer {
    kind: OptimizerKind,
    params: Vec<(String, Var)>,
    /// AdamW: first moments; SGD: momentum buffers.
    m: Vec<Tensor>,
    /// AdamW: second moments (empty for SGD).
    v: Vec<Tensor>,
    /// Steps taken.
    pub steps: u64,
    weight_decay: f64,
    momentum: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    /// AdamW on CPU through [`crate::kernels::adamw`] (same math, in place).
    fused: bool,
}

impl Optimizer {
    /// A new optimiser over `params`.
    pub fn new(
        kind: OptimizerKind,
        params: Vec<(String, Var)>,
        weight_decay: f64,
        momentum: f64,
    ) -> Result<Self> {
        let zeros = |p: &[(String, Var)]| {
            p.iter()
                .map(|(_, v)| v.zeros_like())
                .collect::<Result<Vec<_>>>()
        };
        let m = zeros(&params)?;
        let v = if kind == OptimizerKind::Adamw {
            zeros(&params)?
        } else {
            Vec::new()
        };
        Ok(Self {
            kind,
            params,
            m,
            v,
            steps: 0,
            weight_decay,
            momentum,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            fused: false,
        })
    }

    /// Runs AdamW's update through the fused in-place kernel on CPU (`--kernels fast`).
    pub fn fused(mut self, on: bool) -> Self {
        self.fused = on;
        self
    }

    /// One update with learning rate `lr`. Variables without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.steps += 1;
        let t = self.steps as i32;
        for (i, (_, var)) in self.params.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            // A variable's gradient can still reference the forward graph (Candle detaches
            // only intermediate gradients). Keeping it in the moments would chain every
            // step's activations together: detach, or memory grows by a step per step.
            let g = &g.detach();
            let wd = if decays(var) { self.weight_decay } else { 0.0 };
            match self.kind {
                OptimizerKind::Adamw if self.fused && var.device().is_cpu() => {
                    crate::kernels::adamw::adamw_step(
                        var.as_tensor(),
                        g,
                        &self.m[i],
                        &self.v[i],
                        crate::kernels::adamw::AdamwStep {
                            lr,
                            beta1: self.beta1,
                            beta2: self.beta2,
                            eps: self.eps,
                            weight_decay: wd,
                            t,
                        },
                    )?;
                }
                OptimizerKind::Adamw => {
                    let m = ((&self.m[i] * self.beta1)? + (g * (1.0 - self.beta1))?)?;
                    let v = ((&self.v[i] * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
                    let mhat = (&m / (1.0 - self.beta1.powi(t)))?;
                    let vhat = (&v / (1.0 - self.beta2.powi(t)))?;
                    let update = (mhat / (vhat.sqrt()? + self.eps)?)?;
                    let p = ((var.as_tensor() * (1.0 - lr * wd))? - (update * lr)?)?;
                    var.set(&p)?;
                    self.m[i] = m;
                    self.v[i] = v;
                }
                OptimizerKind::Sgd => {
                    let g = if wd > 0.0 {
                        (g + (var.as_tensor() * wd)?)?
                    } else {
                        g.clone()
                    };
                    let buf = if self.steps == 1 {
                        g
                    } else {
                        ((&self.m[i] * self.momentum)? + g)?
                    };
                    var.set(&(var.as_tensor() - (&buf * lr)?)?)?;
                    self.m[i] = buf;
                }
            }
        }
        Ok(())
    }

    /// The state as named tensors (`optim.m.<var>`, `optim.v.<var>`).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.push((names::optim_m(name), self.m[i].clone()));
            if let Some(v) = self.v.get(i) {
                out.push((names::optim_v(name), v.clone()));
            }
        }
        out
    }

    /// Restores state saved by [`Optimizer::state`] after `steps` steps.
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, steps: u64) -> Result<()> {
        for (i, (name, var)) in self.params.iter().enumerate() {
            let get = |key: String| -> Result<Tensor> {
                let t = tensors.get(&key).ok_or_else(|| {
                    candle_core::Error::Msg(format!("checkpoint lacks optimiser state `{key}`"))
                })?;
                if t.dims() != var.dims() {
                    candle_core::bail!(
                        "optimiser state `{key}` has shape {:?}, expected {:?}",
                        t.dims(),
                        var.dims()
                    );
                }
                t.to_device(var.device())
            };
            self.m[i] = get(names::optim_m(name))?;
            if self.kind == OptimizerKind::Adamw {
                self.v[i] = get(names::optim_v(name))?;
            }
        }
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn setup(kind: OptimizerKind) -> (Var, Optimizer) {
        let w = Var::from_tensor(&Tensor::new(&[[1.0f32, -2.0]], &Device::Cpu).unwrap()).unwrap();
        let opt = Optimizer::new(kind, vec![("w".into(), w.clone())], 0.1, 0.9).unwrap();
        (w, opt)
    }

    #[test]
    fn adamw_first_step_matches_pytorch() {
        // PyTorch AdamW(lr=0.01, weight_decay=0.1), loss = sum(w^2): first step moves each
        // weight by lr * sign(g) after decay: w * (1 - 0.001) - 0.01 * sign(w).
        let (w, mut opt) = setup(OptimizerKind::Adamw);
        let loss = w.as_tensor().sqr().unwrap().sum_all().unwrap();
        opt.step(&loss.backward().unwrap(), 0.01).unwrap();
        let got: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
        let want = [1.0 * 0.999 - 0.01, -2.0 * 0.999 + 0.01];
        for (g, e) in got.iter().zip(want) {
            assert!((g - e).abs() < 1e-6, "{g} vs {e}");
        }
    }

    #[test]
    fn fused_adamw_matches_the_tensor_op_version() {
        let dev = Device::Cpu;
        let init = Tensor::randn(0f32, 1.0, (7, 33), &dev).unwrap();
        let bias = Tensor::randn(0f32, 1.0, 19, &dev).unwrap();
        let run = |fused: bool| -> Vec<f32> {
            let w = Var::from_tensor(&init.copy().unwrap()).unwrap();
            let b = Var::from_tensor(&bias.copy().unwrap()).unwrap();
            let mut opt = Optimizer::new(
                OptimizerKind::Adamw,
                vec![("b".into(), b.clone()), ("w".into(), w.clone())],
                0.05,
                0.9,
            )
            .unwrap()
            .fused(fused);
            for step in 0..4 {
                let loss = ((w.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap()
                    + b.as_tensor().sin().unwrap().sum_all().unwrap())
                .unwrap();
                opt.step(&loss.backward().unwrap(), 0.01 * (step + 1) as f64)
                    .unwrap();
            }
            let mut out: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
            out.extend(b.to_vec1::<f32>().unwrap());
            for (_, t) in opt.state() {
                out.extend(t.flatten_all().unwrap().to_vec1::<f32>().unwrap());
            }
            out
        };
        let (a, b) = (run(false), run(true));
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-6 * (1.0 + x.abs()), "{x} vs {y}");
        }
    }

    #[test]
    fn sgd_momentum_matches_hand_computation() {
        // g = 2w + 0.1w = 2.1w; step 1: buf = g, w -= 0.1 g; step 2: buf = 0.9 buf + g'.
        let (w, mut opt) = setup(OptimizerKind::Sgd);
        for _ in 0..2 {
            let loss = w.as_tensor().sqr().unwrap().sum_all().unwrap();
            opt.step(&loss.backward().unwrap(), 0.1).unwrap();
        }
        let w0 = 1.0f32;
        let g1 = 2.1 * w0;
        let w1 = w0 - 0.1 * g1;
        let buf2 = 0.9 * g1 + 2.1 * w1;
        let w2 = w1 - 0.1 * buf2;
        let got: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
        assert!((got[0] - w2).abs() < 1e-6, "{} vs {w2}", got[0]);
    }

    #[test]
    fn moments_do_not_hold_the_forward_graph() {
        // Guards the memory leak where AdamW moments kept each step's activations alive.
        let a = Var::from_tensor(&Tensor::new(&[1.0f32, 2.0], &Device::Cpu).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::new(&[3.0f32, -1.0], &Device::Cpu).unwrap()).unwrap();
        for kind in [OptimizerKind::Adamw, OptimizerKind::Sgd] {
            let mut opt = Optimizer::new(
                kind,
                vec![("a".into(), a.clone()), ("b".into(), b.clone())],
                0.1,
                0.9,
            )
            .unwrap();
            for _ in 0..2 {
                // d(loss)/da = b * 2 (b is a variable, so the raw gradient is tracked).
                let loss = (a.as_tensor() * (b.as_tensor() * 2.0).unwrap())
                    .unwrap()
                    .sum_all()
                    .unwrap();
                opt.step(&loss.backward().unwrap(), 0.01).unwrap();
            }
            assert!(
                opt.m.iter().chain(&opt.v).all(|t| !t.track_op()),
                "{kind:?} state tracks ops"
            );
        }
    }

    #[test]
    fn state_round_trips() {
        let (w, mut opt) = setup(OptimizerKind::Adamw);
        let loss = w.as_tensor().sqr().unwrap().sum_all().unwrap();
        opt.step(&loss.backward().unwrap(), 0.01).unwrap();
        let state: HashMap<String, Tensor> = opt.state().into_iter().collect();
        let (_, mut fresh) = setup(OptimizerKind::Adamw);
        fresh.load_state(&state, opt.steps).unwrap();
        assert_eq!(fresh.steps, 1);
        let a: Vec<f32> = fresh.v[0].flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = opt.v[0].flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a, b);
        let mut bad = state.clone();
        bad.insert(
            "optim.m.w".into(),
            Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
        );
        assert!(fresh.load_state(&bad, 1).is_err());
    }
}
