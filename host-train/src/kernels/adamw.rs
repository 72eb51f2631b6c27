//! AdamW's update in place, in three passes over flat f32 buffers: Candle's tensor-op
//! version allocates about ten parameter-sized temporaries per variable per step.
use candle_core::{bail, CpuStorage, InplaceOp2, InplaceOp3, Layout, Result, Tensor};
use rayon::prelude::*;

use super::{f32_data, f32_data_mut};

const OP: &str = "fused AdamW";

/// Hyper-parameters of one step.
#[derive(Debug, Clone, Copy)]
pub struct AdamwStep {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Steps taken including this one (for bias correction).
    pub t: i32,
}

/// `m ← β₁m + (1-β₁)g`, `v ← β₂v + (1-β₂)g²`, `p ← p(1 - lr·wd) - lr·m̂/(√v̂ + ε)`, all in
/// place. `p`, `m`, `v` and `g` are same-shaped contiguous f32 CPU tensors.
pub fn adamw_step(p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, h: AdamwStep) -> Result<()> {
    let g = g.contiguous()?;
    m.inplace_op2(
        &g,
        &Moment {
            beta: h.beta1,
            square: false,
        },
    )?;
    v.inplace_op2(
        &g,
        &Moment {
            beta: h.beta2,
            square: true,
        },
    )?;
    p.inplace_op3(m, v, &Apply(h))
}

const CHUNK: usize = 1 << 14;

struct Moment {
    beta: f64,
    square: bool,
}

impl InplaceOp2 for Moment {
    fn name(&self) -> &'static str {
        "fused-adamw-moment"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let g = f32_data(s2, l2, OP, "gradient")?;
        let m = f32_data_mut(s1, l1, OP, "moment")?;
        if m.len() != g.len() {
            bail!(
                "fused AdamW: moment has {} values, gradient {}",
                m.len(),
                g.len()
            );
        }
        let (b, a) = (self.beta as f32, (1.0 - self.beta) as f32);
        m.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .for_each(|(m, g)| {
                if self.square {
                    // `a * (g * g)`, not `a * g * g`: the rounding of Candle's `sqr` then
                    // scale, so this path reproduces the tensor-op path bit for bit.
                    m.iter_mut()
                        .zip(g)
                        .for_each(|(m, &g)| *m = b * *m + a * (g * g));
                } else {
                    m.iter_mut().zip(g).for_each(|(m, &g)| *m = b * *m + a * g);
                }
            });
        Ok(())
    }
}

struct Apply(AdamwStep);

impl InplaceOp3 for Apply {
    fn name(&self) -> &'static str {
        "fused-adamw-apply"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        let h = self.0;
        let (m, v) = (
            f32_data(s2, l2, OP, "first moment")?,
            f32_data(s3, l3, OP, "second moment")?,
        );
        let p = f32_data_mut(s1, l1, OP, "parameter")?;
        if p.len() != m.len() || p.len() != v.len() {
            bail!("fused AdamW: parameter and moments differ in size");
        }
        let decay = (1.0 - h.lr * h.weight_decay) as f32;
        let c1 = (1.0 / (1.0 - h.beta1.powi(h.t))) as f32;
        let c2 = (1.0 / (1.0 - h.beta2.powi(h.t))) as f32;
        let (lr, eps) = (h.lr as f32, h.eps as f32);
        p.par_chunks_mut(CHUNK)
            .zip(m.par_chunks(CHUNK).zip(v.par_chunks(CHUNK)))
            .for_each(|(p, (m, v))| {
                for ((p, &m), &v) in p.iter_mut().zip(m).zip(v) {
                    let update = (m * c1) / ((v * c2).sqrt() + eps);
                    *p = *p * decay - update * lr;
                }
            });
        Ok(())
    }
}
