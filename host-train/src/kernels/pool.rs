//! The stem's 2x2/2 max-pool as one op each way.
//!
//! Why our own: Candle 0.11's max-pool backward builds the gradient from an upsampled
//! output, an equality mask, an average pool of that mask and two more upsample/multiply
//! passes: about eight passes over the largest map of the network (the stem's output, 25 MB
//! at 112x112, batch 64, half width). Here the backward is one pass that reads the input
//! window again and sends each output gradient to its window's first maximum (PyTorch's
//! rule, and the true gradient: Candle's multiplies by the mask's window average where it
//! means to divide, so it hands back a quarter of each gradient).
use std::mem::MaybeUninit;

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{f32_data, filled};

const OP: &str = "fast max-pool";

/// `max_pool2d(x, 2)` with stride 2 (an odd last row or column is dropped, as in Candle);
/// gradients flow to `x`.
///
/// # Shapes
/// `x`: `[N, C, H, W]` → `[N, C, H/2, W/2]`.
pub fn max_pool2x2(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(MaxPool)
}

fn dims(l: &Layout, what: &str) -> Result<(usize, usize, usize)> {
    match l.dims() {
        &[n, c, h, w] if h >= 2 && w >= 2 => Ok((n * c, h, w)),
        d => bail!("{OP}: {what} must be [N, C, H>=2, W>=2], got {d:?}"),
    }
}

/// One window row pair's outputs: `out[ox] = max` of the 2x2 window at column `2ox`.
fn pool_rows(top: &[f32], bottom: &[f32], out: &mut [MaybeUninit<f32>]) {
    for ((o, t), b) in out
        .iter_mut()
        .zip(top.chunks_exact(2))
        .zip(bottom.chunks_exact(2))
    {
        o.write(t[0].max(t[1]).max(b[0].max(b[1])));
    }
}

/// The gradient of one window row pair: each `g[ox]` goes to its window's first maximum in
/// the order top-left, top-right, bottom-left, bottom-right (PyTorch's rule); the other
/// three get zero. Branch-free, so the loop runs in vector registers.
fn route_rows(top: &[f32], bottom: &[f32], g: &[f32], dtop: &mut [f32], dbottom: &mut [f32]) {
    for ((((t, b), &g), dt), db) in top
        .chunks_exact(2)
        .zip(bottom.chunks_exact(2))
        .zip(g)
        .zip(dtop.chunks_exact_mut(2))
        .zip(dbottom.chunks_exact_mut(2))
    {
        let m = t[0].max(t[1]).max(b[0].max(b[1]));
        let e0 = t[0] == m;
        let e1 = !e0 && t[1] == m;
        let e2 = !e0 && !e1 && b[0] == m;
        let e3 = !e0 && !e1 && !e2;
        dt[0] = if e0 { g } else { 0.0 };
        dt[1] = if e1 { g } else { 0.0 };
        db[0] = if e2 { g } else { 0.0 };
        db[1] = if e3 { g } else { 0.0 };
    }
}

struct MaxPool;

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "fast-max-pool"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (planes, h, w) = dims(l, "input")?;
        let x = f32_data(s, l, OP, "input")?;
        let (oh, ow) = (h / 2, w / 2);
        // SAFETY: every output plane is written in full.
        let y = unsafe {
            filled(planes * oh * ow, |y| {
                y.par_chunks_mut(oh * ow)
                    .zip(x.par_chunks(h * w))
                    .for_each(|(out, plane)| {
                        for (oy, o) in out.chunks_exact_mut(ow).enumerate() {
                            let top = &plane[2 * oy * w..][..2 * ow];
                            pool_rows(top, &plane[(2 * oy + 1) * w..][..2 * ow], o);
                        }
                    })
            })
        };
        let mut shape = l.dims().to_vec();
        shape[2] = oh;
        shape[3] = ow;
        Ok((CpuStorage::F32(y), Shape::from(shape)))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&dy.contiguous()?, &MaxPoolGrad)?))
    }
}

/// Arguments `(x, dy)` → `dx`.
struct MaxPoolGrad;

impl CustomOp2 for MaxPoolGrad {
    fn name(&self) -> &'static str {
        "fast-max-pool-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (planes, h, w) = dims(l1, "input")?;
        let (oh, ow) = (h / 2, w / 2);
        let want = [l1.dims()[0], l1.dims()[1], oh, ow];
        if l2.dims() != want {
            bail!("{OP}: gradient {:?}, expected {want:?}", l2.dims());
        }
        let (x, dy) = (
            f32_data(s1, l1, OP, "input")?,
            f32_data(s2, l2, OP, "gradient")?,
        );
        let mut dx = vec![0f32; planes * h * w];
        dx.par_chunks_mut(h * w)
            .zip(x.par_chunks(h * w).zip(dy.par_chunks(oh * ow)))
            .for_each(|(d, (plane, g))| {
                for (oy, g) in g.chunks_exact(ow).enumerate() {
                    let (dt, db) = d[2 * oy * w..(2 * oy + 2) * w].split_at_mut(w);
                    let (t, b) = (&plane[2 * oy * w..][..w], &plane[(2 * oy + 1) * w..][..w]);
                    route_rows(t, b, g, &mut dt[..2 * ow], &mut db[..2 * ow]);
                }
            });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    #[test]
    fn matches_candle_values_and_routes_each_gradient_to_its_maximum() {
        let dev = Device::Cpu;
        // Odd sizes: the last row and column take no part and get no gradient.
        for (h, w) in [(6, 8), (7, 5), (2, 2)] {
            let x =
                Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, h, w), &dev).unwrap()).unwrap();
            let got = max_pool2x2(&x).unwrap();
            let want = x.max_pool2d_with_stride(2, 2).unwrap();
            assert_eq!(got.dims(), want.dims());
            assert_eq!(super::super::max_abs_diff(&got, &want), 0.0);
            let r = Tensor::randn(0f32, 1.0, got.dims(), &dev).unwrap();
            let grads = (&got * &r).unwrap().sum_all().unwrap().backward().unwrap();
            // d(sum(y * r))/dx = r at each window's maximum, 0 elsewhere (no ties in randn).
            // Candle's own max-pool backward scales this by 1/4 (it multiplies by the
            // mask's average where it means to divide), so it is not the reference.
            let (eh, ew) = (h / 2 * 2, w / 2 * 2);
            let up = |t: &Tensor| t.upsample_nearest2d(eh, ew).unwrap();
            let mask = x
                .narrow(2, 0, eh)
                .unwrap()
                .narrow(3, 0, ew)
                .unwrap()
                .eq(&up(&want))
                .unwrap()
                .to_dtype(candle_core::DType::F32)
                .unwrap();
            let expected = (up(&r) * mask).unwrap();
            let dx = grads.get(&x).unwrap();
            let inside = dx.narrow(2, 0, eh).unwrap().narrow(3, 0, ew).unwrap();
            assert_eq!(
                super::super::max_abs_diff(&inside, &expected),
                0.0,
                "{h}x{w}"
            );
            let flat: Vec<f32> = dx.flatten_all().unwrap().to_vec1().unwrap();
            for (i, v) in flat.iter().enumerate() {
                let (y, x) = ((i / w) % h, i % w);
                if y >= eh || x >= ew {
                    assert_eq!(
                        *v, 0.0,
                        "gradient outside the windows at ({y}, {x}), {h}x{w}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_tied_window_sends_its_gradient_to_the_first_maximum() {
        let dev = Device::Cpu;
        let x = Var::from_slice(&[0f32, 1.0, 1.0, 0.5], (1, 1, 2, 2), &dev).unwrap();
        let g = max_pool2x2(&x)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let dx: Vec<f32> = g.get(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(dx, [0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn refuses_a_map_smaller_than_the_window() {
        let x = Tensor::zeros((1, 1, 1, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(max_pool2x2(&x).is_err());
    }
}
