//! 2-D convolution (NCHW, no bias, no dilation, one group) as three custom ops: the
//! forward pass and its two gradients, each one GEMM over the whole batch.
//!
//! The batch is laid out "im2row": `R[N*P, C*kh*kw]`, one row per output pixel of every
//! image, so each image's rows are one contiguous block (filled in parallel) and the
//! GEMMs see `N*P` pixels at once. Per-image products would be tiny in the late layers
//! (2x2 maps at 64x64 input: 4 pixels against 4608-wide weights) and the weight
//! gradient would stream the whole weight once per image.
use std::{
    mem::MaybeUninit,
    sync::{Arc, Mutex},
};

use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{
    f32_data, filled,
    matmul::{matmul_into, matmul_uninit, Mat},
};

const OP: &str = "fast conv2d";

/// From this many output pixels per image, the forward product and the input gradient run
/// one GEMM per image (rayon across images), writing NCHW directly and keeping each
/// image's rows in cache; below it, one GEMM over the batch (see the module docs).
const PER_IMAGE_MIN_PIXELS: usize = 64;

/// `y = conv2d(x, w)` with the fast kernels; gradients flow to both `x` and `w`.
///
/// # Shapes
/// `x`: `[N, C, H, W]`, `w`: `[K, C, kh, kw]` → `[N, K, OH, OW]`.
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    x.contiguous()?.apply_op2(
        &w.contiguous()?,
        Conv2d {
            stride,
            padding,
            rows: Mutex::new(None),
        },
    )
}

/// A buffer one op fills and a later op of the same backward pass takes.
type Handoff = Arc<Mutex<Option<Vec<f32>>>>;

fn take(slot: &Mutex<Option<Vec<f32>>>) -> Option<Vec<f32>> {
    slot.lock().ok().and_then(|mut s| s.take())
}

fn put(slot: &Mutex<Option<Vec<f32>>>, v: Vec<f32>) {
    if let Ok(mut s) = slot.lock() {
        *s = Some(v);
    }
}

/// Sizes of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    pad: usize,
    oh: usize,
    ow: usize,
}

impl Geom {
    fn new(x: [usize; 4], k: [usize; 4], stride: usize, pad: usize) -> Result<Self> {
        let [n, c, h, w] = x;
        let [ko, kc, kh, kw] = k;
        if kc != c {
            bail!("conv2d: input has {c} channels, kernel expects {kc}");
        }
        if stride == 0 || h + 2 * pad < kh || w + 2 * pad < kw {
            bail!("conv2d: kernel {kh}x{kw} (stride {stride}, pad {pad}) does not fit {h}x{w}");
        }
        Ok(Self {
            n,
            c,
            h,
            w,
            k: ko,
            kh,
            kw,
            stride,
            pad,
            oh: (h + 2 * pad - kh) / stride + 1,
            ow: (w + 2 * pad - kw) / stride + 1,
        })
    }

    /// Columns of the im2row matrix (= weight columns).
    fn ck(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Output pixels per channel and image.
    fn p(&self) -> usize {
        self.oh * self.ow
    }

    /// Whether products run per image (see [`PER_IMAGE_MIN_PIXELS`]).
    fn per_image(&self) -> bool {
        self.n > 1 && self.p() >= PER_IMAGE_MIN_PIXELS
    }

    fn image_len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// For output coordinate `o` and kernel offset `ki`: the input coordinate, if inside.
    fn src(&self, o: usize, ki: usize, size: usize) -> Option<usize> {
        (o * self.stride + ki)
            .checked_sub(self.pad)
            .filter(|&i| i < size)
    }

    /// The output coordinates `lo..hi` whose input `o*s + k - pad` lies in `0..size`.
    fn valid(&self, k: usize, size: usize, outs: usize) -> (usize, usize) {
        let s = self.stride;
        // o*s + k >= pad  and  o*s + k < pad + size
        let lo = self.pad.saturating_sub(k).div_ceil(s);
        let hi = if self.pad + size > k {
            (self.pad + size - k).div_ceil(s).min(outs)
        } else {
            0
        };
        (lo.min(hi), hi)
    }

    /// One image's rows: `rows[oy*OW + ox][(c*kh + ki)*kw + kj] = x[c][oy*s+ki-pad][ox*s+kj-pad]`.
    ///
    /// Loops run over `ox` innermost with the valid range computed once per column, so
    /// the hot loop is a strided copy with no bounds tests; one output row's block
    /// (`OW * CK` floats) stays in cache while it is filled.
    fn im2row(&self, x: &[f32], rows: &mut [MaybeUninit<f32>]) {
        let (ck, s) = (self.ck(), self.stride);
        for oy in 0..self.oh {
            let block = &mut rows[oy * self.ow * ck..][..self.ow * ck];
            for c in 0..self.c {
                let plane = &x[c * self.h * self.w..][..self.h * self.w];
                for ki in 0..self.kh {
                    let iy = self.src(oy, ki, self.h);
                    for kj in 0..self.kw {
                        let col = (c * self.kh + ki) * self.kw + kj;
                        let (lo, hi) = match iy {
                            Some(_) => self.valid(kj, self.w, self.ow),
                            None => (0, 0),
                        };
                        for ox in (0..lo).chain(hi..self.ow) {
                            block[ox * ck + col].write(0.0);
                        }
                        if let Some(iy) = iy {
                            let line = &plane[iy * self.w..][..self.w];
                            for ox in lo..hi {
                                block[ox * ck + col].write(line[ox * s + kj - self.pad]);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The adjoint of [`Geom::im2row`]: adds each entry back to its input pixel of the
    /// zeroed `dx`.
    fn row2im(&self, rows: &[f32], dx: &mut [f32]) {
        let (ck, s) = (self.ck(), self.stride);
        for oy in 0..self.oh {
            let block = &rows[oy * self.ow * ck..][..self.ow * ck];
            for c in 0..self.c {
                let plane = &mut dx[c * self.h * self.w..][..self.h * self.w];
                for ki in 0..self.kh {
                    let Some(iy) = self.src(oy, ki, self.h) else {
                        continue;
                    };
                    let line = &mut plane[iy * self.w..][..self.w];
                    for kj in 0..self.kw {
                        let col = (c * self.kh + ki) * self.kw + kj;
                        let (lo, hi) = self.valid(kj, self.w, self.ow);
                        for ox in lo..hi {
                            line[ox * s + kj - self.pad] += block[ox * ck + col];
                        }
                    }
                }
            }
        }
    }

    /// The batch's im2row matrix `[N*P, CK]`.
    fn im2row_batch(&self, x: &[f32]) -> Vec<f32> {
        let block = self.p() * self.ck();
        // SAFETY: im2row writes every element of each image's block.
        unsafe {
            filled(self.n * block, |rows| {
                rows.par_chunks_mut(block.max(1))
                    .zip(x.par_chunks(self.image_len().max(1)))
                    .for_each(|(r, img)| self.im2row(img, r));
            })
        }
    }

    /// `[N, K, P]` → `[K, N*P]` (the GEMM's pixel-major operand).
    fn channel_major(&self, y: &[f32]) -> Vec<f32> {
        let (p, np) = (self.p(), self.n * self.p());
        // SAFETY: each channel row gets all N blocks of P values.
        unsafe {
            filled(self.k * np, |out| {
                out.par_chunks_mut(np.max(1))
                    .enumerate()
                    .for_each(|(k, row)| {
                        for i in 0..self.n {
                            copy(&mut row[i * p..][..p], &y[(i * self.k + k) * p..][..p]);
                        }
                    })
            })
        }
    }

    /// `[K, N*P]` → `[N, K, P]`.
    fn image_major(&self, t: &[f32]) -> Vec<f32> {
        let (p, np) = (self.p(), self.n * self.p());
        // SAFETY: each image gets all K blocks of P values.
        unsafe {
            filled(self.n * self.k * p, |out| {
                out.par_chunks_mut((self.k * p).max(1))
                    .enumerate()
                    .for_each(|(i, img)| {
                        for k in 0..self.k {
                            copy(&mut img[k * p..][..p], &t[k * np + i * p..][..p]);
                        }
                    })
            })
        }
    }
}

fn copy(dst: &mut [MaybeUninit<f32>], src: &[f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        d.write(s);
    }
}

fn dims4(l: &Layout, what: &str) -> Result<[usize; 4]> {
    match l.dims() {
        &[a, b, c, d] => Ok([a, b, c, d]),
        d => bail!("fast conv2d: {what} must be 4-D, got {d:?}"),
    }
}

fn threads() -> usize {
    rayon::current_num_threads()
}

/// The forward convolution. It keeps its im2row matrix for the weight gradient, which
/// needs exactly that matrix again (building it is a quarter of the conv's time).
struct Conv2d {
    stride: usize,
    padding: usize,
    rows: Mutex<Option<Vec<f32>>>,
}

impl CustomOp2 for Conv2d {
    fn name(&self) -> &'static str {
        "fast-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geom::new(
            dims4(l1, "input")?,
            dims4(l2, "kernel")?,
            self.stride,
            self.padding,
        )?;
        let (x, w) = (
            f32_data(s1, l1, OP, "input")?,
            f32_data(s2, l2, OP, "kernel")?,
        );
        let (ck, np, p) = (g.ck(), g.n * g.p(), g.p());
        let rows = g.im2row_batch(x);
        let y = if g.per_image() {
            // y_i[K, P] = W[K, CK] · R_iᵀ
            // SAFETY: each image's K*P block is written by its product.
            unsafe {
                filled(g.n * g.k * p, |y| {
                    y.par_chunks_mut(g.k * p)
                        .zip(rows.par_chunks(p * ck))
                        .for_each(|(yi, ri)| {
                            matmul_into(yi, Mat::rows(w, g.k, ck), Mat::transposed(ri, p, ck), 1)
                        })
                })
            }
        } else {
            // [K, N*P] = W[K, CK] · Rᵀ
            let t = matmul_uninit(
                Mat::rows(w, g.k, ck),
                Mat::transposed(&rows, np, ck),
                threads(),
            );
            g.image_major(&t)
        };
        put(&self.rows, rows);
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.k, g.oh, g.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let (_, _, h, wd) = x.dims4()?;
        // dY in channel-major order serves both gradients: the input gradient builds it,
        // the weight gradient takes it.
        let dy_t: Handoff = Arc::default();
        // The stem's input (the image batch) needs no gradient: Candle calls `bwd` for it
        // all the same, and it was a fifth of the body's input-gradient work at 112 px.
        let dx = match x.track_op() {
            true => Some(dy.apply_op2_no_bwd(
                w,
                &InputGrad {
                    stride: self.stride,
                    padding: self.padding,
                    h,
                    w: wd,
                    dy_t: dy_t.clone(),
                },
            )?),
            false => None,
        };
        let (_, _, kh, kw) = w.dims4()?;
        let dw = x.apply_op2_no_bwd(
            &dy,
            &WeightGrad {
                stride: self.stride,
                padding: self.padding,
                kh,
                kw,
                rows: Mutex::new(take(&self.rows)),
                dy_t,
            },
        )?;
        Ok((dx, Some(dw)))
    }
}

/// `dx = row2im(dYᵀ · W)`. Arguments: `(dy, w)`.
struct InputGrad {
    stride: usize,
    padding: usize,
    h: usize,
    w: usize,
    dy_t: Handoff,
}

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "fast-conv2d-input-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let [n, k, oh, ow] = dims4(l1, "output gradient")?;
        let wdims = dims4(l2, "kernel")?;
        let g = Geom::new(
            [n, wdims[1], self.h, self.w],
            wdims,
            self.stride,
            self.padding,
        )?;
        if g.k != k || g.oh != oh || g.ow != ow {
            bail!(
                "fast conv2d input grad: gradient {:?} does not match {g:?}",
                l1.dims()
            );
        }
        let (dy, w) = (
            f32_data(s1, l1, OP, "output gradient")?,
            f32_data(s2, l2, OP, "kernel")?,
        );
        let (ck, np, p) = (g.ck(), n * g.p(), g.p());
        let mut dx = vec![0f32; n * g.image_len()];
        if g.per_image() {
            // dR_i[P, CK] = dY_iᵀ[P, K] · W[K, CK], scattered into dx_i while in cache.
            dx.par_chunks_mut(g.image_len().max(1))
                .zip(dy.par_chunks(k * p))
                .for_each(|(d, dyi)| {
                    let r = matmul_uninit(Mat::transposed(dyi, k, p), Mat::rows(w, k, ck), 1);
                    g.row2im(&r, d);
                });
            return Ok((CpuStorage::F32(dx), Shape::from((n, g.c, g.h, g.w))));
        }
        let t = g.channel_major(dy);
        // dR[N*P, CK] = dYᵀ[N*P, K] · W[K, CK]
        let rows = matmul_uninit(Mat::transposed(&t, k, np), Mat::rows(w, k, ck), threads());
        put(&self.dy_t, t);
        dx.par_chunks_mut(g.image_len().max(1))
            .zip(rows.par_chunks((g.p() * ck).max(1)))
            .for_each(|(d, r)| g.row2im(r, d));
        Ok((CpuStorage::F32(dx), Shape::from((n, g.c, g.h, g.w))))
    }
}

/// `dw = dY · R`. Arguments: `(x, dy)`.
struct WeightGrad {
    stride: usize,
    padding: usize,
    kh: usize,
    kw: usize,
    /// The forward pass's im2row matrix, when it ran on this device.
    rows: Mutex<Option<Vec<f32>>>,
    dy_t: Handoff,
}

impl CustomOp2 for WeightGrad {
    fn name(&self) -> &'static str {
        "fast-conv2d-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let xd = dims4(l1, "input")?;
        let [n, k, oh, ow] = dims4(l2, "output gradient")?;
        let g = Geom::new(xd, [k, xd[1], self.kh, self.kw], self.stride, self.padding)?;
        if g.n != n || g.oh != oh || g.ow != ow {
            bail!(
                "fast conv2d weight grad: gradient {:?} does not match {g:?}",
                l2.dims()
            );
        }
        let (x, dy) = (
            f32_data(s1, l1, OP, "input")?,
            f32_data(s2, l2, OP, "output gradient")?,
        );
        let (ck, np) = (g.ck(), n * g.p());
        let sized = |v: &Vec<f32>, len| v.len() == len;
        let rows = take(&self.rows)
            .filter(|r| sized(r, np * ck))
            .unwrap_or_else(|| g.im2row_batch(x));
        let t = take(&self.dy_t)
            .filter(|t| sized(t, k * np))
            .unwrap_or_else(|| g.channel_major(dy));
        // dW[K, CK] = dY[K, N*P] · R[N*P, CK]
        let dw = matmul_uninit(Mat::rows(&t, k, np), Mat::rows(&rows, np, ck), threads());
        Ok((CpuStorage::F32(dw), Shape::from((k, g.c, self.kh, self.kw))))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    /// Forward values and both gradients against Candle's own conv2d and its backward.
    fn check(
        n: usize,
        c: usize,
        hw: (usize, usize),
        k: usize,
        ks: usize,
        stride: usize,
        pad: usize,
    ) {
        let dev = Device::Cpu;
        let x =
            Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, c, hw.0, hw.1), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.3, (k, c, ks, ks), &dev).unwrap()).unwrap();
        let fast = conv2d(&x, &w, stride, pad).unwrap();
        let reference = x.conv2d(&w, pad, stride, 1, 1).unwrap();
        assert_eq!(fast.dims(), reference.dims());
        let r = Tensor::randn(0f32, 1.0, fast.dims(), &dev).unwrap();
        let tol = 1e-4 * (c * ks * ks) as f32;
        assert!(
            super::super::max_abs_diff(&fast, &reference) < tol,
            "forward"
        );
        let gf = (&fast * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gr = (&reference * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (v, what) in [(&x, "input"), (&w, "weight")] {
            let d = super::super::max_abs_diff(gf.get(v).unwrap(), gr.get(v).unwrap());
            assert!(
                d < tol * (n * k) as f32,
                "{what} gradient differs by {d} (n={n} c={c} hw={hw:?} k={k} ks={ks} s={stride} p={pad})"
            );
        }
    }

    #[test]
    fn matches_candle_forward_and_gradients() {
        check(2, 3, (17, 13), 8, 7, 2, 3); // stem
        check(3, 4, (9, 9), 5, 3, 1, 1); // 81 pixels: one product per image
        check(2, 3, (20, 20), 4, 3, 2, 1); // per image, strided
        check(3, 5, (12, 10), 6, 3, 1, 1); // per image, non-square
        check(2, 4, (9, 9), 6, 3, 2, 1); // 25 pixels: one product for the batch
                                         // Non-square maps: Candle's own conv backward fails on them (its output padding
                                         // reads the height for both axes), so they are checked by finite differences below.
        check(2, 4, (9, 9), 6, 1, 2, 0); // downsample
        check(5, 4, (6, 6), 3, 1, 1, 0); // pointwise
        check(1, 2, (4, 4), 2, 3, 1, 0); // one image: gemm splits instead
    }

    #[test]
    fn an_input_without_gradient_gets_none_and_the_weight_gradient_is_unchanged() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 10, 10), &dev).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.3, (4, 3, 7, 7), &dev).unwrap()).unwrap();
        let fast = conv2d(&x, &w, 2, 3)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap();
        let reference = x
            .conv2d(&w, 3, 2, 1, 1)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap();
        let (gf, gr) = (fast.backward().unwrap(), reference.backward().unwrap());
        assert!(gf.get(&x).is_none());
        let d = super::super::max_abs_diff(gf.get(&w).unwrap(), gr.get(&w).unwrap());
        assert!(d < 1e-2, "weight gradient differs by {d}");
    }

    #[test]
    fn matches_finite_differences_on_a_non_square_map() {
        let dev = Device::Cpu;
        let xs = (1, 2, 7, 6);
        let ws = (3, 2, 3, 3);
        let x0: Vec<f32> = Tensor::randn(0f32, 1.0, xs, &dev)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let w0: Vec<f32> = Tensor::randn(0f32, 0.5, ws, &dev)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let loss = |x: &[f32], w: &[f32]| -> f64 {
            let x = Tensor::from_slice(x, xs, &dev).unwrap();
            let w = Tensor::from_slice(w, ws, &dev).unwrap();
            conv2d(&x, &w, 2, 1)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
        };
        let x = Var::from_slice(&x0, xs, &dev).unwrap();
        let w = Var::from_slice(&w0, ws, &dev).unwrap();
        let grads = conv2d(&x, &w, 2, 1)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gx: Vec<f32> = grads
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let gw: Vec<f32> = grads
            .get(&w)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let eps = 1e-2f32;
        let numeric = |which: usize, i: usize| -> f64 {
            let (mut xp, mut xm, mut wp, mut wm) = (x0.clone(), x0.clone(), w0.clone(), w0.clone());
            if which == 0 {
                xp[i] += eps;
                xm[i] -= eps;
            } else {
                wp[i] += eps;
                wm[i] -= eps;
            }
            (loss(&xp, &wp) - loss(&xm, &wm)) / (2.0 * eps as f64)
        };
        for (which, analytic, picks) in [(0, &gx, [0usize, 5, 41, 83]), (1, &gw, [0, 7, 20, 53])] {
            for i in picks {
                let (n, a) = (numeric(which, i), analytic[i] as f64);
                assert!(
                    (n - a).abs() <= 1e-2 * (1.0 + a.abs()),
                    "{} {i}: numeric {n}, analytic {a}",
                    ["input", "weight"][which]
                );
            }
        }
    }

    #[test]
    fn refuses_bad_shapes_with_an_error() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 3, 4, 4), candle_core::DType::F32, &dev).unwrap();
        let w = Tensor::zeros((2, 4, 3, 3), candle_core::DType::F32, &dev).unwrap();
        assert!(conv2d(&x, &w, 1, 1).is_err());
        let w = Tensor::zeros((2, 3, 7, 7), candle_core::DType::F32, &dev).unwrap();
        assert!(conv2d(&x, &w, 1, 0).is_err());
    }
}
