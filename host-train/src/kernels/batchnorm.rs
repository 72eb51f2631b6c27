//! Training-mode BatchNorm over NCHW, optionally fused with the ReLU after it: one pass
//! for the statistics, one to normalise, and a fused backward that reuses the forward's
//! statistics. Candle's composition transposes to channel-major, copies, and runs about
//! ten elementwise and reduction ops each way (plus four for the ReLU), each allocating
//! a full tensor.
use std::sync::{Arc, Mutex};

use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{f32_data, filled};

const OP: &str = "fast batch-norm";

/// `(y, mean, var)`: `y = gamma * (x - mean) / sqrt(var + eps) + beta` with per-channel
/// batch statistics (`var` biased, as the normalisation uses it), then `max(y, 0)` when
/// `relu`; gradients flow to `x`, `gamma` and `beta`; `mean` and `var` are detached (for
/// the running statistics).
///
/// # Shapes
/// `x`: `[N, C, H, W]`, `gamma`, `beta`: `[C]`; `mean`, `var`: `[C]`.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let x = x.contiguous()?;
    let stats: SharedStats = Arc::default();
    let y = x.apply_op3(
        &gamma.contiguous()?,
        &beta.contiguous()?,
        Forward {
            eps,
            relu,
            stats: stats.clone(),
        },
    )?;
    let st = stats
        .lock()
        .ok()
        .and_then(|s| s.clone())
        .ok_or_else(|| candle_core::Error::Msg(format!("{OP}: no statistics were computed")))?;
    let mean = Tensor::from_iter(st.iter().map(|s| s.0), x.device())?;
    let var = Tensor::from_iter(st.iter().map(|s| s.1), x.device())?;
    Ok((y, mean, var))
}

/// Per-channel `(mean, biased variance)` of the last forward pass.
type SharedStats = Arc<Mutex<Option<Vec<(f32, f32)>>>>;

/// `(N, C, H*W)` of a rank-4 (or rank-2, `H*W = 1`) input.
fn ncp(l: &Layout) -> Result<(usize, usize, usize)> {
    match *l.dims() {
        [n, c, h, w] => Ok((n, c, h * w)),
        [n, c] => Ok((n, c, 1)),
        ref d => bail!("fast batch-norm: input must be [N, C, H, W], got {d:?}"),
    }
}

/// Independent f32 partial sums per plane: one f32 accumulator is a chain of dependent
/// adds (one per 4 cycles), `LANES` of them fill a vector register. Planes (at most a few
/// thousand values) are summed this way and the per-plane totals in f64, so the error stays
/// that of a few hundred f32 adds whatever the batch size.
const LANES: usize = 8;

/// `(Σ u, Σ v)` of `(u, v) = f(a[i], b[i], c[i])` over one plane (the three slices have the
/// same length), in one pass.
#[inline(always)]
fn plane_sums(
    a: &[f32],
    b: &[f32],
    c: &[f32],
    f: impl Fn(f32, f32, f32) -> (f32, f32),
) -> (f64, f64) {
    let (mut su, mut sv) = ([0f32; LANES], [0f32; LANES]);
    let body = a.len() / LANES * LANES;
    for ((ca, cb), cc) in a[..body]
        .chunks_exact(LANES)
        .zip(b[..body].chunks_exact(LANES))
        .zip(c[..body].chunks_exact(LANES))
    {
        for l in 0..LANES {
            let (u, v) = f(ca[l], cb[l], cc[l]);
            su[l] += u;
            sv[l] += v;
        }
    }
    let total = |acc: [f32; LANES]| acc.iter().map(|&v| v as f64).sum::<f64>();
    (body..a.len()).fold((total(su), total(sv)), |(u0, v0), i| {
        let (u, v) = f(a[i], b[i], c[i]);
        (u0 + u as f64, v0 + v as f64)
    })
}

/// `Σ f(x[i])` over one plane.
#[inline(always)]
fn plane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    plane_sums(x, x, x, |v, _, _| (f(v), 0.0)).0
}

/// Per-channel mean and biased variance (two passes).
fn channel_stats(x: &[f32], n: usize, c: usize, p: usize) -> Vec<(f32, f32)> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let planes = (0..n).map(|i| &x[(i * c + ch) * p..(i * c + ch + 1) * p]);
            let m = (n * p) as f64;
            let mean = planes.clone().map(|s| plane_sum(s, |v| v)).sum::<f64>() / m;
            let mf = mean as f32;
            let var = planes
                .map(|s| plane_sum(s, |v| (v - mf) * (v - mf)))
                .sum::<f64>()
                / m;
            (mf, var as f32)
        })
        .collect()
}

struct Forward {
    eps: f64,
    relu: bool,
    stats: SharedStats,
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
        let relu = self.relu;
        // SAFETY: every plane of `p` values is written.
        let y = unsafe {
            filled(x.len(), |y| {
                y.par_chunks_mut(p)
                    .zip(x.par_chunks(p))
                    .enumerate()
                    .for_each(|(i, (yo, xi))| {
                        let (s, t) = affine[i % c];
                        if relu {
                            for (o, &v) in yo.iter_mut().zip(xi) {
                                o.write((v * s + t).max(0.0));
                            }
                        } else {
                            for (o, &v) in yo.iter_mut().zip(xi) {
                                o.write(v * s + t);
                            }
                        }
                    })
            })
        };
        if let Ok(mut slot) = self.stats.lock() {
            *slot = Some(st);
        }
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let c = gamma.dim(0)?;
        let len = x.elem_count();
        let stats = self.stats.lock().ok().and_then(|s| s.clone());
        let Some(stats) = stats.filter(|s| s.len() == c) else {
            bail!("{OP}: backward without the forward pass's statistics");
        };
        // One op returns dx, dgamma and dbeta packed in one flat tensor.
        let packed = x.apply_op3_no_bwd(
            &dy.contiguous()?,
            y,
            &Backward {
                eps: self.eps,
                relu: self.relu,
                gamma: gamma.to_vec1()?,
                stats,
            },
        )?;
        let dx = packed.narrow(0, 0, len)?.reshape(x.shape())?;
        let dgamma = packed.narrow(0, len, c)?;
        let dbeta = packed.narrow(0, len + c, c)?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

/// Arguments `(x, dy, y)` → `[dx (flat), dgamma, dbeta]`; `y` masks `dy` when `relu`.
struct Backward {
    eps: f64,
    relu: bool,
    gamma: Vec<f32>,
    stats: Vec<(f32, f32)>,
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
        let (x, dy, y) = (
            f32_data(s1, l1, OP, "input")?,
            f32_data(s2, l2, OP, "output gradient")?,
            f32_data(s3, l3, OP, "output")?,
        );
        let (gamma, st) = (&self.gamma, &self.stats);
        if dy.len() != x.len() || y.len() != x.len() || gamma.len() != c || st.len() != c {
            bail!("fast batch-norm backward: mismatched shapes");
        }
        // The gradient reaching the normalisation: dy, or dy where the ReLU let y through.
        let relu = self.relu;
        let grad = move |d: f32, y: f32| if relu && y <= 0.0 { 0.0 } else { d };
        let m = (n * p) as f64;
        let plane = |i: usize| i * p..(i + 1) * p;
        // Per channel: Σg and Σg·(x − mean), then dx = γ/σ · (g − Σg/M − x̂·Σg·x̂/M).
        let sums: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let (mean, var) = st[ch];
                let inv = 1.0 / (var as f64 + self.eps).sqrt();
                let (mut sd, mut sdx) = (0.0, 0.0);
                for r in (0..n).map(|i| plane(i * c + ch)) {
                    let (x, dy, y) = (&x[r.clone()], &dy[r.clone()], &y[r]);
                    let (a, b) = plane_sums(dy, y, x, |d, y, x| {
                        let g = grad(d, y);
                        (g, g * (x - mean))
                    });
                    sd += a;
                    sdx += b;
                }
                (sd, sdx * inv)
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
            let r = plane(i);
            for ((o, &xv), (&dv, &yv)) in d
                .iter_mut()
                .zip(&x[r.clone()])
                .zip(dy[r.clone()].iter().zip(&y[r]))
            {
                *o = k * (grad(dv, yv) - a - (xv - mean) * inv * b);
            }
        });
        for ch in 0..c {
            params[ch] = sums[ch].1 as f32;
            params[c + ch] = sums[ch].0 as f32;
        }
        Ok((CpuStorage::F32(out), Shape::from(x.len() + 2 * c)))
    }
}

/// `max(a + b, 0)` (a residual join) as one op, with the gradient `dy · [y > 0]` for both
/// inputs computed once: Candle's `add` + `relu` allocate four tensors on the way back.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.contiguous()?.apply_op2(&b.contiguous()?, AddRelu)
}

struct AddRelu;

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "fast-add-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        zip_map((s1, l1, "lhs"), (s2, l2, "rhs"), "fast add-relu", |a, b| {
            (a + b).max(0.0)
        })
    }

    fn bwd(
        &self,
        _a: &Tensor,
        _b: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = dy.contiguous()?.apply_op2_no_bwd(y, &ReluGrad)?;
        Ok((Some(g.clone()), Some(g)))
    }
}

/// `(dy, y)` → `dy · [y > 0]`.
struct ReluGrad;

impl CustomOp2 for ReluGrad {
    fn name(&self) -> &'static str {
        "fast-relu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        zip_map(
            (s1, l1, "gradient"),
            (s2, l2, "output"),
            "fast relu grad",
            |g, y| {
                if y > 0.0 {
                    g
                } else {
                    0.0
                }
            },
        )
    }
}

/// `f(a[i], b[i])` over two same-shaped contiguous f32 tensors, in parallel.
fn zip_map(
    (s1, l1, what1): (&CpuStorage, &Layout, &str),
    (s2, l2, what2): (&CpuStorage, &Layout, &str),
    op: &str,
    f: impl Fn(f32, f32) -> f32 + Sync,
) -> Result<(CpuStorage, Shape)> {
    let (a, b) = (f32_data(s1, l1, op, what1)?, f32_data(s2, l2, op, what2)?);
    if l1.dims() != l2.dims() {
        bail!(
            "{op}: {what1} {:?} and {what2} {:?} differ",
            l1.dims(),
            l2.dims()
        );
    }
    let out: Vec<f32> = a
        .par_iter()
        .zip(b.par_iter())
        .map(|(&u, &v)| f(u, v))
        .collect();
    Ok((CpuStorage::F32(out), l1.shape().clone()))
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
            for relu in [false, true] {
                let mut want = reference.forward_t(&x, true).unwrap();
                if relu {
                    want = want.relu().unwrap();
                }
                let (got, mean, var) = batch_norm_train(&x, &g, &b, 1e-5, relu).unwrap();
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
                // The input gradient is a difference of terms of size |γ|/σ; with
                // few elements per channel (the 1x1 case) it cancels to ~0 and
                // float rounding in either implementation scales with |γ|/σ, so
                // the tolerance does too (inputs are unseeded random draws).
                let gain = (g.as_tensor().abs().unwrap()
                    / (&want_var + 1e-5).unwrap().sqrt().unwrap())
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                .max(1.0);
                for (v, what, tol) in [
                    (&x, "input", 1e-3 * gain),
                    (&g, "weight", 1e-3),
                    (&b, "bias", 1e-3),
                ] {
                    let d = super::super::max_abs_diff(gf.get(v).unwrap(), gr.get(v).unwrap());
                    assert!(
                        d < tol,
                        "{what} gradient differs by {d} (tolerance {tol}) for {shape:?}, relu {relu}"
                    );
                }
            }
        }
    }

    #[test]
    fn add_relu_matches_candle_values_and_gradients() {
        let dev = Device::Cpu;
        let a = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 4, 5, 2), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 4, 5, 2), &dev).unwrap()).unwrap();
        let got = add_relu(&a, &b).unwrap();
        let want = (a.as_tensor() + b.as_tensor()).unwrap().relu().unwrap();
        assert!(super::super::max_abs_diff(&got, &want) < 1e-6);
        let r = Tensor::randn(0f32, 1.0, (3, 4, 5, 2), &dev).unwrap();
        let gf = (&got * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gr = (&want * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&a, &b] {
            assert!(super::super::max_abs_diff(gf.get(v).unwrap(), gr.get(v).unwrap()) < 1e-6);
        }
        let c = Tensor::zeros((3, 4, 5, 3), candle_core::DType::F32, &dev).unwrap();
        assert!(add_relu(&a, &c).is_err());
    }
}
