//! Training-mode BatchNorm over NCHW in two fused passes (statistics, then normalise), with
//! a fused backward: Candle's composition transposes to channel-major, copies, and runs
//! about ten elementwise and reduction ops each way, each allocating a full tensor.
use candle_core::{bail, CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::f32_data;

const OP: &str = "fast batch-norm";

/// `(y, mean, var)`: `y = gamma * (x - mean) / sqrt(var + eps) + beta` with per-channel
/// batch statistics (`var` biased, as the normalisation uses it); gradients flow to `x`,
/// `gamma` and `beta`; `mean` and `var` are detached (for the running statistics).
///
/// # Shapes
/// `x`: `[N, C, H, W]`, `gamma`, `beta`: `[C]`; `mean`, `var`: `[C]`.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let x = x.contiguous()?;
    let stats = x.apply_op1_no_bwd(&Stats)?;
    let y = x.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, Forward { eps })?;
    Ok((y, stats.get(0)?, stats.get(1)?))
}

/// `(N, C, H*W)` of a rank-4 (or rank-2, `H*W = 1`) input.
fn ncp(l: &Layout) -> Result<(usize, usize, usize)> {
    match *l.dims() {
        [n, c, h, w] => Ok((n, c, h * w)),
        [n, c] => Ok((n, c, 1)),
        ref d => bail!("fast batch-norm: input must be [N, C, H, W], got {d:?}"),
    }
}

/// Per-channel mean and biased variance (two passes, f64 sums).
fn channel_stats(x: &[f32], n: usize, c: usize, p: usize) -> Vec<(f32, f32)> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let planes = (0..n).map(|i| &x[(i * c + ch) * p..(i * c + ch + 1) * p]);
            let m = (n * p) as f64;
            let mean = planes
                .clone()
                .map(|s| s.iter().map(|&v| v as f64).sum::<f64>())
                .sum::<f64>()
                / m;
            let var = planes
                .map(|s| s.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>())
                .sum::<f64>()
                / m;
            (mean as f32, var as f32)
        })
        .collect()
}

struct Stats;

impl CustomOp1 for Stats {
    fn name(&self) -> &'static str {
        "fast-batch-norm-stats"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, p) = ncp(l)?;
        let st = channel_stats(f32_data(s, l, OP, "input")?, n, c, p);
        let mut out: Vec<f32> = st.iter().map(|s| s.0).collect();
        out.extend(st.iter().map(|s| s.1));
        Ok((CpuStorage::F32(out), Shape::from((2, c))))
    }
}

struct Forward {
    eps: f64,
}

impl CustomOp3 for Forward {
    fn name(&self) -> &'static str {
        "fast-batch-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, p) = ncp(l1)?;
        let x = f32_data(s1, l1, OP, "input")?;
        let (gamma, beta) = (
            f32_data(s2, l2, OP, "weight")?,
            f32_data(s3, l3, OP, "bias")?,
        );
        if gamma.len() != c || beta.len() != c {
            bail!(
                "fast batch-norm: {c} channels but weight/bias have {}/{}",
                gamma.len(),
                beta.len()
            );
        }
        let st = channel_stats(x, n, c, p);
        // y = x * scale + shift per channel.
        let affine: Vec<(f32, f32)> = st
            .iter()
            .zip(gamma.iter().zip(beta))
            .map(|(&(mean, var), (&g, &b))| {
                let scale = g / (var + self.eps as f32).sqrt();
                (scale, b - mean * scale)
            })
            .collect();
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(p)
            .zip(x.par_chunks(p))
            .enumerate()
            .for_each(|(i, (yo, xi))| {
                let (s, t) = affine[i % c];
                yo.iter_mut().zip(xi).for_each(|(o, &v)| *o = v * s + t);
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let c = gamma.dim(0)?;
        let len = x.elem_count();
        // One op returns dx, dgamma and dbeta packed in one flat tensor.
        let packed = x.apply_op3_no_bwd(&dy.contiguous()?, gamma, &Backward { eps: self.eps })?;
        let dx = packed.narrow(0, 0, len)?.reshape(x.shape())?;
        let dgamma = packed.narrow(0, len, c)?;
        let dbeta = packed.narrow(0, len + c, c)?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

/// Arguments `(x, dy, gamma)` → `[dx (flat), dgamma, dbeta]`.
struct Backward {
    eps: f64,
}

impl CustomOp3 for Backward {
    fn name(&self) -> &'static str {
        "fast-batch-norm-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, p) = ncp(l1)?;
        let (x, dy) = (
            f32_data(s1, l1, OP, "input")?,
            f32_data(s2, l2, OP, "output gradient")?,
        );
        let gamma = f32_data(s3, l3, OP, "weight")?;
        if dy.len() != x.len() || gamma.len() != c {
            bail!("fast batch-norm backward: mismatched shapes");
        }
        let m = (n * p) as f64;
        let st = channel_stats(x, n, c, p);
        // Per channel: Σdy and Σdy·x̂ (f64), then dx = γ/σ · (dy − Σdy/M − x̂·Σdy·x̂/M).
        let sums: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let (mean, var) = st[ch];
                let inv = 1.0 / (var as f64 + self.eps).sqrt();
                (0..n).fold((0.0, 0.0), |(sd, sdx), i| {
                    let r = (i * c + ch) * p..(i * c + ch + 1) * p;
                    x[r.clone()]
                        .iter()
                        .zip(&dy[r])
                        .fold((sd, sdx), |(a, b), (&xv, &g)| {
                            let g = g as f64;
                            (a + g, b + g * (xv as f64 - mean as f64) * inv)
                        })
                })
            })
            .collect();
        let mut out = vec![0f32; x.len() + 2 * c];
        let (dx, params) = out.split_at_mut(x.len());
        dx.par_chunks_mut(p).enumerate().for_each(|(i, d)| {
            let ch = i % c;
            let (mean, var) = st[ch];
            let inv = (1.0 / (var as f64 + self.eps).sqrt()) as f32;
            let (sd, sdx) = sums[ch];
            let k = gamma[ch] * inv;
            let (a, b) = ((sd / m) as f32, (sdx / m) as f32);
            let r = i * p..(i + 1) * p;
            for ((o, &xv), &g) in d.iter_mut().zip(&x[r.clone()]).zip(&dy[r]) {
                *o = k * (g - a - (xv - mean) * inv * b);
            }
        });
        for ch in 0..c {
            params[ch] = sums[ch].1 as f32;
            params[c + ch] = sums[ch].0 as f32;
        }
        Ok((CpuStorage::F32(out), Shape::from(x.len() + 2 * c)))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};
    use candle_nn::{BatchNorm, ModuleT};

    use super::*;

    #[test]
    fn matches_candle_batch_norm_values_statistics_and_gradients() {
        let dev = Device::Cpu;
        for shape in [(4, 3, 5, 6), (2, 8, 1, 1), (3, 2, 7, 4)] {
            let c = shape.1;
            let x =
                Var::from_tensor(&(Tensor::randn(0f32, 2.0, shape, &dev).unwrap() + 0.7).unwrap())
                    .unwrap();
            let g = Var::from_tensor(&Tensor::randn(1f32, 0.3, c, &dev).unwrap()).unwrap();
            let b = Var::from_tensor(&Tensor::randn(0f32, 0.3, c, &dev).unwrap()).unwrap();
            let rm = Tensor::zeros(c, candle_core::DType::F32, &dev).unwrap();
            let rv = Tensor::ones(c, candle_core::DType::F32, &dev).unwrap();
            let reference = BatchNorm::new(
                c,
                rm,
                rv,
                g.as_tensor().clone(),
                b.as_tensor().clone(),
                1e-5,
            )
            .unwrap();
            let want = reference.forward_t(&x, true).unwrap();
            let (got, mean, var) = batch_norm_train(&x, &g, &b, 1e-5).unwrap();
            assert!(
                super::super::max_abs_diff(&got, &want) < 1e-4,
                "forward {shape:?}"
            );
            let xm = x.transpose(0, 1).unwrap().flatten_from(1).unwrap();
            let want_mean = xm.mean(1).unwrap();
            let want_var = xm
                .broadcast_sub(&want_mean.unsqueeze(1).unwrap())
                .unwrap()
                .sqr()
                .unwrap()
                .mean(1)
                .unwrap();
            assert!(super::super::max_abs_diff(&mean, &want_mean) < 1e-5);
            assert!(super::super::max_abs_diff(&var, &want_var) < 1e-4);
            let r = Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
            let gf = (&got * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gr = (&want * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for (v, what) in [(&x, "input"), (&g, "weight"), (&b, "bias")] {
                let d = super::super::max_abs_diff(gf.get(v).unwrap(), gr.get(v).unwrap());
                assert!(d < 1e-3, "{what} gradient differs by {d} for {shape:?}");
            }
        }
    }
}
