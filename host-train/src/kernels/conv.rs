//! 2-D convolution (NCHW, no bias, no dilation, one group) as three custom ops: the
//! forward pass and its two gradients, each a GEMM on a patch matrix.
//!
//! Two layouts of the patch matrix, chosen by the size of the output map:
//! - large maps (at least [`PER_IMAGE_MIN_PIXELS`] output pixels): "im2col" per image,
//!   `C_i[C*kh*kw, P]`, one row per kernel tap. For stride 1 each row is a run of shifted
//!   copies of input lines (vector copies, and vector adds on the way back), and every
//!   product runs per image (rayon across images), writing NCHW directly.
//! - small maps: "im2row" over the batch, `R[N*P, C*kh*kw]`, one row per output pixel of
//!   every image, so the GEMMs see `N*P` pixels at once. Per-image products would be tiny
//!   in the late layers (2x2 maps at 64x64 input: 4 pixels against 4608-wide weights).
use std::{
    mem::MaybeUninit,
    sync::{Arc, Mutex},
};

use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{
    f32_data, filled,
    matmul::{matmul_acc, matmul_into, matmul_uninit, Mat},
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

    /// Channel and kernel offsets `(c, ki, kj)` of im2col row `tap`.
    fn tap(&self, tap: usize) -> (usize, usize, usize) {
        let area = self.kh * self.kw;
        (tap / area, tap % area / self.kw, tap % self.kw)
    }

    /// One image's columns: `cols[(c*kh + ki)*kw + kj][oy*OW + ox] =
    /// x[c][oy*s+ki-pad][ox*s+kj-pad]`, each output row of each tap a (strided) copy of
    /// one input line.
    fn im2col(&self, x: &[f32], cols: &mut [MaybeUninit<f32>]) {
        let (p, s, ow) = (self.p(), self.stride, self.ow);
        for (tap, row) in cols.chunks_exact_mut(p).enumerate() {
            let (c, ki, kj) = self.tap(tap);
            let plane = &x[c * self.h * self.w..][..self.h * self.w];
            let (lo, hi) = self.valid(kj, self.w, ow);
            for (oy, out) in row.chunks_exact_mut(ow).enumerate() {
                let Some(iy) = self.src(oy, ki, self.h) else {
                    out.fill(MaybeUninit::new(0.0));
                    continue;
                };
                out[..lo].fill(MaybeUninit::new(0.0));
                out[hi..].fill(MaybeUninit::new(0.0));
                if lo < hi {
                    let line = &plane[iy * self.w + lo * s + kj - self.pad..];
                    for (o, &v) in out[lo..hi].iter_mut().zip(line.iter().step_by(s)) {
                        o.write(v);
                    }
                }
            }
        }
    }

    /// The adjoint of [`Geom::im2col`]: adds each entry back to its input pixel of the
    /// zeroed `dx`.
    fn col2im(&self, cols: &[f32], dx: &mut [f32]) {
        let (p, s, ow) = (self.p(), self.stride, self.ow);
        for (tap, row) in cols.chunks_exact(p).enumerate() {
            let (c, ki, kj) = self.tap(tap);
            let plane = &mut dx[c * self.h * self.w..][..self.h * self.w];
            let (lo, hi) = self.valid(kj, self.w, ow);
            if lo >= hi {
                continue;
            }
            for (oy, g) in row.chunks_exact(ow).enumerate() {
                let Some(iy) = self.src(oy, ki, self.h) else {
                    continue;
                };
                let line = &mut plane[iy * self.w + lo * s + kj - self.pad..];
                for (d, &v) in line.iter_mut().step_by(s).zip(&g[lo..hi]) {
                    *d += v;
                }
            }
        }
    }

    /// The batch's patch matrix in this geometry's layout: per-image im2col blocks
    /// `[N][CK][P]` for large maps, the im2row matrix `[N*P, CK]` otherwise.
    fn patches(&self, x: &[f32]) -> Vec<f32> {
        let block = self.p() * self.ck();
        let fill = |r: &mut [MaybeUninit<f32>], img: &[f32]| match self.per_image() {
            true => self.im2col(img, r),
            false => self.im2row(img, r),
        };
        // SAFETY: im2col and im2row write every element of each image's block.
        unsafe {
            filled(self.n * block, |rows| {
                rows.par_chunks_mut(block.max(1))
                    .zip(x.par_chunks(self.image_len().max(1)))
                    .for_each(|(r, img)| fill(r, img));
            })
        }
    }

    /// For output column `ox`: the first input column of its window (may lie left of the
    /// map) and the window offsets `lo..hi` that fall inside `0..W`.
    fn window_cols(&self, ox: usize) -> (isize, usize, usize) {
        let x0 = (ox * self.stride) as isize - self.pad as isize;
        let lo = (-x0).clamp(0, self.kw as isize) as usize;
        let hi = (self.w as isize - x0).clamp(lo as isize, self.kw as isize) as usize;
        (x0, lo, hi)
    }

    /// One image's rows: `rows[oy*OW + ox][(c*kh + ki)*kw + kj] = x[c][oy*s+ki-pad][ox*s+kj-pad]`.
    ///
    /// Written row by row, in order: each `(c, ki)` segment of a row is a copy of `kw`
    /// neighbouring input values. (Column-major filling, one column of the matrix at a
    /// time, wrote one float per cache line and was 15 % of a training step.) The input
    /// lines one output row reads (`C * kh * W` floats) stay in cache across its pixels.
    fn im2row(&self, x: &[f32], rows: &mut [MaybeUninit<f32>]) {
        let (ck, kh, kw, hw) = (self.ck(), self.kh, self.kw, self.h * self.w);
        debug_assert_eq!(ck, self.c * kh * kw);
        for oy in 0..self.oh {
            let iys: Vec<Option<usize>> = (0..kh).map(|ki| self.src(oy, ki, self.h)).collect();
            for ox in 0..self.ow {
                let (x0, lo, hi) = self.window_cols(ox);
                let mut segs = rows[(oy * self.ow + ox) * ck..][..ck].chunks_exact_mut(kw);
                for c in 0..self.c {
                    for &iy in &iys {
                        let Some(seg) = segs.next() else { return };
                        match iy {
                            Some(iy) => {
                                let start = (c * hw + iy * self.w) as isize + x0;
                                let line = &x[(start + lo as isize) as usize..][..hi - lo];
                                seg[..lo].fill(MaybeUninit::new(0.0));
                                copy(&mut seg[lo..hi], line);
                                seg[hi..].fill(MaybeUninit::new(0.0));
                            }
                            None => seg.fill(MaybeUninit::new(0.0)),
                        }
                    }
                }
            }
        }
    }

    /// The adjoint of [`Geom::im2row`]: adds each entry back to its input pixel of the
    /// zeroed `dx`, reading the rows in order.
    fn row2im(&self, rows: &[f32], dx: &mut [f32]) {
        let (ck, kh, kw, hw) = (self.ck(), self.kh, self.kw, self.h * self.w);
        debug_assert_eq!(ck, self.c * kh * kw);
        for oy in 0..self.oh {
            let iys: Vec<Option<usize>> = (0..kh).map(|ki| self.src(oy, ki, self.h)).collect();
            for ox in 0..self.ow {
                let (x0, lo, hi) = self.window_cols(ox);
                let mut segs = rows[(oy * self.ow + ox) * ck..][..ck].chunks_exact(kw);
                for c in 0..self.c {
                    for &iy in &iys {
                        let Some(seg) = segs.next() else { return };
                        if let Some(iy) = iy {
                            let start = (c * hw + iy * self.w) as isize + x0;
                            let line = &mut dx[(start + lo as isize) as usize..][..hi - lo];
                            for (d, &v) in line.iter_mut().zip(&seg[lo..hi]) {
                                *d += v;
                            }
                        }
                    }
                }
            }
        }
    }

    /// `(y, rows)`: the convolution `[N, K, OH, OW]` of `x` by `w` (`[K, C, kh, kw]`) and
    /// the batch's im2row matrix it multiplied.
    fn forward(&self, x: &[f32], w: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let (ck, np, p) = (self.ck(), self.n * self.p(), self.p());
        let rows = self.patches(x);
        let y = if self.per_image() {
            // y_i[K, P] = W[K, CK] · C_i[CK, P]
            // SAFETY: each image's K*P block is written by its product.
            unsafe {
                filled(self.n * self.k * p, |y| {
                    y.par_chunks_mut(self.k * p)
                        .zip(rows.par_chunks(p * ck))
                        .for_each(|(yi, ri)| {
                            matmul_into(yi, Mat::rows(w, self.k, ck), Mat::rows(ri, ck, p), 1)
                        })
                })
            }
        } else {
            // [K, N*P] = W[K, CK] · Rᵀ
            let t = matmul_uninit(
                Mat::rows(w, self.k, ck),
                Mat::transposed(&rows, np, ck),
                threads(),
            );
            self.image_major(&t)
        };
        (y, rows)
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
        let (y, rows) = g.forward(x, w);
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
            // dC_i[CK, P] = Wᵀ[CK, K] · dY_i[K, P], added into dx_i while in cache.
            dx.par_chunks_mut(g.image_len().max(1))
                .zip(dy.par_chunks(k * p))
                .for_each(|(d, dyi)| {
                    let dc = matmul_uninit(Mat::transposed(w, k, ck), Mat::rows(dyi, k, p), 1);
                    g.col2im(&dc, d);
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
        let (ck, np, p) = (g.ck(), n * g.p(), g.p());
        let sized = |v: &Vec<f32>, len| v.len() == len;
        let rows = take(&self.rows)
            .filter(|r| sized(r, np * ck))
            .unwrap_or_else(|| g.patches(x));
        let dw = if g.per_image() {
            // dW[K, CK] = Σ_i dY_i[K, P] · C_iᵀ[P, CK]: one partial sum per rayon task.
            let parts: Vec<Vec<f32>> = dy
                .par_chunks(k * p)
                .zip(rows.par_chunks(ck * p))
                .with_min_len(n.div_ceil(threads()))
                .fold(
                    || vec![0f32; k * ck],
                    |mut acc, (dyi, ci)| {
                        matmul_acc(&mut acc, Mat::rows(dyi, k, p), Mat::transposed(ci, ck, p));
                        acc
                    },
                )
                .collect();
            parts
                .into_iter()
                .reduce(|mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                    a
                })
                .unwrap_or_else(|| vec![0f32; k * ck])
        } else {
            let t = take(&self.dy_t)
                .filter(|t| sized(t, k * np))
                .unwrap_or_else(|| g.channel_major(dy));
            // dW[K, CK] = dY[K, N*P] · R[N*P, CK]
            matmul_uninit(Mat::rows(&t, k, np), Mat::rows(&rows, np, ck), threads())
        };
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
        finite_differences(2, 1);
        finite_differences(1, 1);
        finite_differences(1, 0);
    }

    fn finite_differences(stride: usize, pad: usize) {
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
            conv2d(&x, &w, stride, pad)
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
        let grads = conv2d(&x, &w, stride, pad)
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
                    "{} {i}: numeric {n}, analytic {a} (stride {stride}, pad {pad})",
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
