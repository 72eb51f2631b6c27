//! 2-D convolution (NCHW, no bias, no dilation, one group) as three custom ops: the
//! forward pass and its two gradients, each im2col/col2im + one GEMM per image.
use candle_core::{
    backend::BackendStorage, bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor,
};
use rayon::prelude::*;

use super::matmul::{matmul, Mat};

/// `y = conv2d(x, w)` with the fast kernels; gradients flow to both `x` and `w`.
///
/// # Shapes
/// `x`: `[N, C, H, W]`, `w`: `[K, C, kh, kw]` → `[N, K, OH, OW]`.
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&w.contiguous()?, Conv2d { stride, padding })
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

    /// Rows of the im2col matrix (= weight columns).
    fn ck(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Output pixels per channel (= im2col columns).
    fn p(&self) -> usize {
        self.oh * self.ow
    }

    fn image_len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// A 1x1 stride-1 convolution reads the image as its own im2col matrix.
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0
    }

    /// For output row `o` and kernel offset `ki`: the input row, if inside the image.
    fn src(&self, o: usize, ki: usize, size: usize) -> Option<usize> {
        (o * self.stride + ki)
            .checked_sub(self.pad)
            .filter(|&i| i < size)
    }

    /// `col[(c*kh + ki)*kw + kj][oh*OW + ow] = x[c][oh*s + ki - pad][ow*s + kj - pad]`.
    fn im2col(&self, x: &[f32], col: &mut [f32]) {
        let p = self.p();
        for c in 0..self.c {
            let plane = &x[c * self.h * self.w..(c + 1) * self.h * self.w];
            for ki in 0..self.kh {
                for kj in 0..self.kw {
                    let row = ((c * self.kh + ki) * self.kw + kj) * p;
                    let dst = &mut col[row..row + p];
                    for oy in 0..self.oh {
                        let out = &mut dst[oy * self.ow..(oy + 1) * self.ow];
                        match self.src(oy, ki, self.h) {
                            None => out.fill(0.0),
                            Some(iy) => {
                                let line = &plane[iy * self.w..(iy + 1) * self.w];
                                for (ox, v) in out.iter_mut().enumerate() {
                                    *v = self.src(ox, kj, self.w).map_or(0.0, |ix| line[ix]);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The adjoint of [`Geom::im2col`]: adds each column entry back to its input pixel.
    fn col2im(&self, col: &[f32], dx: &mut [f32]) {
        let p = self.p();
        dx.fill(0.0);
        for c in 0..self.c {
            let plane = &mut dx[c * self.h * self.w..(c + 1) * self.h * self.w];
            for ki in 0..self.kh {
                for kj in 0..self.kw {
                    let row = ((c * self.kh + ki) * self.kw + kj) * p;
                    let src = &col[row..row + p];
                    for oy in 0..self.oh {
                        let Some(iy) = self.src(oy, ki, self.h) else {
                            continue;
                        };
                        let line = &mut plane[iy * self.w..(iy + 1) * self.w];
                        for (ox, v) in src[oy * self.ow..(oy + 1) * self.ow].iter().enumerate() {
                            if let Some(ix) = self.src(ox, kj, self.w) {
                                line[ix] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Contiguous f32 data of a custom op's argument.
fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        bail!("fast conv2d: {what} must be f32, got {:?}", s.dtype());
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("fast conv2d: {what} must be contiguous"),
    }
}

fn dims4(l: &Layout, what: &str) -> Result<[usize; 4]> {
    match l.dims() {
        &[a, b, c, d] => Ok([a, b, c, d]),
        d => bail!("fast conv2d: {what} must be 4-D, got {d:?}"),
    }
}

/// How a batch's images share the cores: one image per rayon task when there are enough
/// images, otherwise one image at a time with gemm splitting each product.
fn gemm_threads(images: usize) -> usize {
    let t = rayon::current_num_threads();
    if images >= t {
        1
    } else {
        t
    }
}

/// Runs `f(image, out_chunk, scratch)` for every image, in parallel when the batch allows.
fn per_image<F>(out: &mut [f32], chunk: usize, scratch: usize, f: F)
where
    F: Fn(usize, &mut [f32], &mut Vec<f32>) + Sync,
{
    if gemm_threads(out.len() / chunk.max(1)) == 1 {
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each_init(|| vec![0f32; scratch], |buf, (i, o)| f(i, o, buf));
    } else {
        let mut buf = vec![0f32; scratch];
        for (i, o) in out.chunks_mut(chunk).enumerate() {
            f(i, o, &mut buf);
        }
    }
}

/// The forward convolution.
struct Conv2d {
    stride: usize,
    padding: usize,
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
        let (x, w) = (f32_slice(s1, l1, "input")?, f32_slice(s2, l2, "kernel")?);
        let (ck, p) = (g.ck(), g.p());
        let threads = gemm_threads(g.n);
        let mut y = vec![0f32; g.n * g.k * p];
        let scratch = if g.is_pointwise() { 0 } else { ck * p };
        per_image(&mut y, g.k * p, scratch, |i, out, col| {
            let img = &x[i * g.image_len()..(i + 1) * g.image_len()];
            let cols = if g.is_pointwise() {
                img
            } else {
                g.im2col(img, col);
                col
            };
            matmul(
                out,
                Mat::rows(w, g.k, ck),
                Mat::rows(cols, ck, p),
                false,
                threads,
            );
        });
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
        let dx = dy.apply_op2_no_bwd(
            w,
            &InputGrad {
                stride: self.stride,
                padding: self.padding,
                h,
                w: wd,
            },
        )?;
        let (_, _, kh, kw) = w.dims4()?;
        let dw = x.apply_op2_no_bwd(
            &dy,
            &WeightGrad {
                stride: self.stride,
                padding: self.padding,
                kh,
                kw,
            },
        )?;
        Ok((Some(dx), Some(dw)))
    }
}

/// `dx = col2im(wᵀ · dy)`, image by image. Arguments: `(dy, w)`.
struct InputGrad {
    stride: usize,
    padding: usize,
    h: usize,
    w: usize,
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
            f32_slice(s1, l1, "output gradient")?,
            f32_slice(s2, l2, "kernel")?,
        );
        let (ck, p) = (g.ck(), g.p());
        let threads = gemm_threads(n);
        let mut dx = vec![0f32; n * g.image_len()];
        let scratch = if g.is_pointwise() { 0 } else { ck * p };
        per_image(&mut dx, g.image_len(), scratch, |i, out, col| {
            let dyi = Mat::rows(&dy[i * k * p..(i + 1) * k * p], k, p);
            let wt = Mat::transposed(w, k, ck);
            if g.is_pointwise() {
                matmul(out, wt, dyi, false, threads);
            } else {
                matmul(col, wt, dyi, false, threads);
                g.col2im(col, out);
            }
        });
        Ok((CpuStorage::F32(dx), Shape::from((n, g.c, g.h, g.w))))
    }
}

/// `dw = Σ_images dy · im2col(x)ᵀ`. Arguments: `(x, dy)`.
struct WeightGrad {
    stride: usize,
    padding: usize,
    kh: usize,
    kw: usize,
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
            f32_slice(s1, l1, "input")?,
            f32_slice(s2, l2, "output gradient")?,
        );
        let (ck, p) = (g.ck(), g.p());
        let accumulate = |images: std::ops::Range<usize>, dw: &mut [f32], col: &mut [f32], t| {
            for (j, i) in images.enumerate() {
                let img = &x[i * g.image_len()..(i + 1) * g.image_len()];
                let cols = if g.is_pointwise() {
                    img
                } else {
                    g.im2col(img, col);
                    &*col
                };
                matmul(
                    dw,
                    Mat::rows(&dy[i * k * p..(i + 1) * k * p], k, p),
                    Mat::transposed(cols, ck, p),
                    j > 0,
                    t,
                );
            }
        };
        let scratch = if g.is_pointwise() { 0 } else { ck * p };
        let threads = rayon::current_num_threads();
        let mut dw = vec![0f32; k * ck];
        if n == 0 {
        } else if gemm_threads(n) > 1 {
            accumulate(0..n, &mut dw, &mut vec![0f32; scratch], threads);
        } else {
            // One partial sum per thread (not per image): the partials are the size of the
            // weight, which for late layers is larger than an image.
            let per = n.div_ceil(threads);
            let partials: Vec<Vec<f32>> = (0..n.div_ceil(per))
                .into_par_iter()
                .map(|t| {
                    let mut part = vec![0f32; k * ck];
                    accumulate(
                        t * per..((t + 1) * per).min(n),
                        &mut part,
                        &mut vec![0f32; scratch],
                        1,
                    );
                    part
                })
                .collect();
            for part in &partials {
                dw.iter_mut().zip(part).for_each(|(d, s)| *d += s);
            }
        }
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
        let max_diff = |a: &Tensor, b: &Tensor| -> f32 {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar()
                .unwrap()
        };
        let tol = 1e-4 * (c * ks * ks) as f32;
        assert!(max_diff(&fast, &reference) < tol, "forward");
        let gf = (&fast * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gr = (&reference * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (v, what) in [(&x, "input"), (&w, "weight")] {
            let d = max_diff(gf.get(v).unwrap(), gr.get(v).unwrap());
            assert!(
                d < tol * (n * k) as f32,
                "{what} gradient differs by {d} (n={n} c={c} hw={hw:?} k={k} ks={ks} s={stride} p={pad})"
            );
        }
    }

    #[test]
    fn matches_candle_forward_and_gradients() {
        check(2, 3, (17, 13), 8, 7, 2, 3); // stem
        check(3, 4, (9, 9), 5, 3, 1, 1);
        check(2, 4, (9, 9), 6, 3, 2, 1);
        // Non-square maps: Candle's own conv backward fails on them (its output padding
        // reads the height for both axes), so they are checked by finite differences below.
        check(2, 4, (9, 9), 6, 1, 2, 0); // downsample
        check(5, 4, (6, 6), 3, 1, 1, 0); // pointwise
        check(1, 2, (4, 4), 2, 3, 1, 0); // one image: gemm splits instead
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
