//! An int8 convolution: uint8 activations × int8 weights, exact int32 sums, float out.
//!
//! Why hand-written and not tract's: tract 0.23 runs a QDQ convolution in float with a
//! quantize/dequantize pair around it, and a `QLinearConv` as im2col + an i8 matmul + a
//! chain of separate requantization ops; both are slower than its fp32 plan on x86
//! (docs/measurements.md, section "int8"). This kernel packs the weights once at load, lays the
//! quantized input out as padded NHWC bytes so that each output pixel's patch is, tap by
//! tap, a run of contiguous channels the tile reads in place, and multiplies with AVX-512 VNNI (`vpdpbusd`: 64 u8·i8 products per instruction, 4x the
//! multiply-adds of an fp32 FMA) where the CPU has it, else with a portable loop that the
//! compiler vectorises.
//!
//! Layouts:
//! - `k` runs over `(ky, kx, c)` with `c` padded to a multiple of 4, so that 4
//!   consecutive `k` are 4 channels of one tap (one `u32` of the NHWC input);
//! - packed weights: `[m / MB][k / 4][MB][4]` (`MB` = 32 output channels, zero-padded);
//! - input: `[h + pad_top + pad_bottom][w + pad_left + pad_right][c4]`, the border at the
//!   zero point (the quantized 0.0), so no tap needs a bounds check.
use std::cell::RefCell;

use super::epilogue::{self, Block, Dst, Store};
use super::grid::{quantize, Requant};
use super::tile::{widen, Acc, Dot, Patches, Tile, UnknownTile, Window, MB, NR};

/// Geometry of a 2-D convolution (NCHW input, OIHW weights, group 1, dilation 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Geometry {
    /// Input channels.
    pub c: usize,
    /// Output channels.
    pub m: usize,
    /// Kernel height and width.
    pub kh: usize,
    pub kw: usize,
    /// Strides (y, x).
    pub sh: usize,
    pub sw: usize,
    /// Padding: top, left, bottom, right.
    pub pads: [usize; 4],
}

impl Geometry {
    /// Output height and width for an `h`×`w` input, or `None` if the kernel does not fit.
    pub fn output_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let ph = h + self.pads[0] + self.pads[2];
        let pw = w + self.pads[1] + self.pads[3];
        if ph < self.kh || pw < self.kw || self.sh == 0 || self.sw == 0 {
            return None;
        }
        Some(((ph - self.kh) / self.sh + 1, (pw - self.kw) / self.sw + 1))
    }

    fn c4(&self) -> usize {
        self.c.div_ceil(4) * 4
    }

    fn k(&self) -> usize {
        self.kh * self.kw * self.c4()
    }
}

/// A convolution ready to run: packed int8 weights and what turns int32 sums into floats.
#[derive(Debug, Clone)]
pub struct QConv {
    geo: Geometry,
    /// Input grid: `q = clamp(round(x / x_scale) + x_zero, 0, 255)`.
    x_scale: f32,
    x_zero: u8,
    packed: Vec<i8>,
    /// The packed weights in the [`Dot::Wide`] form, when the tile takes that; else empty.
    wide: Vec<i16>,
    /// Per output channel: `Σ_k w[m, k]`.
    wsum: Vec<i32>,
    /// Per output channel: what the tile's raw sum exceeds `Σ (q - x_zero) · w` by:
    /// `(x_zero - offset) · Σ_k w[m, k]`, where the tile's input holds `q - offset`.
    zero_term: Vec<i32>,
    /// Per output channel: `x_scale · w_scale[m]`.
    scale: Vec<f32>,
    bias: Vec<f32>,
    relu: bool,
    /// The grid of a quantize/dequantize pair that read only this convolution's output.
    requant: Option<Requant>,
    tile: Tile,
    epilogue: Store,
}

/// Why a convolution cannot be packed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PackError {
    #[error("weights have {got} values, the geometry needs {want}")]
    WeightLen { got: usize, want: usize },
    #[error("{what} has {got} values, expected {want} (one per output channel)")]
    PerChannel {
        what: &'static str,
        got: usize,
        want: usize,
    },
    #[error("the input scale {0} is not a positive finite number")]
    Scale(String),
    #[error("the output grid's scale {0} is not a positive finite number")]
    OutScale(String),
    #[error(transparent)]
    Tile(#[from] UnknownTile),
}

/// Work items (tiles × channel blocks) per rayon task: a tile is a few microseconds, so
/// single items would spend a noticeable share on scheduling.
const PAR_MIN_ITEMS: usize = 4;

impl QConv {
    /// Packs OIHW int8 `weights` with one scale per output channel. The convolution then
    /// computes `relu?(x_scale · w_scale[m] · Σ (q(x) - x_zero) · w + bias[m])`, which is
    /// what `DequantizeLinear(QuantizeLinear(x))` convolved with dequantized weights is.
    /// Runs on [`Tile::chosen`].
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        geo: Geometry,
        weights: &[i8],
        w_scale: &[f32],
        bias: Option<&[f32]>,
        x_scale: f32,
        x_zero: u8,
        relu: bool,
    ) -> Result<Self, PackError> {
        let want = geo.m * geo.c * geo.kh * geo.kw;
        if weights.len() != want {
            return Err(PackError::WeightLen {
                got: weights.len(),
                want,
            });
        }
        if w_scale.len() != geo.m {
            return Err(PackError::PerChannel {
                what: "the weight scale",
                got: w_scale.len(),
                want: geo.m,
            });
        }
        if let Some(b) = bias.filter(|b| b.len() != geo.m) {
            return Err(PackError::PerChannel {
                what: "the bias",
                got: b.len(),
                want: geo.m,
            });
        }
        if !(x_scale.is_finite() && x_scale > 0.0) {
            return Err(PackError::Scale(x_scale.to_string()));
        }
        let tile = Tile::chosen()?;
        let (c4, k) = (geo.c4(), geo.k());
        let blocks = geo.m.div_ceil(MB);
        let mut packed = vec![0i8; blocks * MB * k];
        let mut wsum = vec![0i32; blocks * MB];
        for m in 0..geo.m {
            let (b, lane) = (m / MB, m % MB);
            for ky in 0..geo.kh {
                for kx in 0..geo.kw {
                    for c in 0..geo.c {
                        let w = weights[((m * geo.c + c) * geo.kh + ky) * geo.kw + kx];
                        let kk = (ky * geo.kw + kx) * c4 + c;
                        packed[((b * (k / 4) + kk / 4) * MB + lane) * 4 + kk % 4] = w;
                        wsum[m] += w as i32;
                    }
                }
            }
        }
        // Per-channel values padded to whole blocks, like the packed weights.
        let mut scale: Vec<f32> = w_scale.iter().map(|s| s * x_scale).collect();
        let mut bias = bias.map_or_else(|| vec![0.0; geo.m], <[f32]>::to_vec);
        scale.resize(blocks * MB, 0.0);
        bias.resize(blocks * MB, 0.0);
        let mut conv = Self {
            geo,
            x_scale,
            x_zero,
            packed,
            wide: Vec::new(),
            wsum,
            zero_term: Vec::new(),
            scale,
            bias,
            relu,
            requant: None,
            tile: Tile::PORTABLE,
            epilogue: epilogue::pick(),
        };
        conv.set_tile(tile);
        Ok(conv)
    }

    /// Rounds the output to the uint8 grid `(scale, zero)`, as
    /// `DequantizeLinear(QuantizeLinear(y, scale, zero))` after the convolution would.
    pub fn with_requant(mut self, scale: f32, zero: u8) -> Result<Self, PackError> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(PackError::OutScale(scale.to_string()));
        }
        self.requant = Some(Requant::new(scale, zero));
        Ok(self)
    }

    pub fn requant(&self) -> Option<Requant> {
        self.requant
    }

    /// Runs on `tile` from now on.
    pub fn set_tile(&mut self, tile: Tile) {
        let offset = if tile.signed { 128 } else { 0 };
        let z = self.x_zero as i32 - offset;
        self.zero_term = self.wsum.iter().map(|s| s * z).collect();
        self.wide = match tile.dot {
            Dot::Wide(_) => {
                let k = self.geo.k();
                self.packed
                    .chunks_exact(MB * k)
                    .flat_map(|block| widen(block, k))
                    .collect()
            }
            Dot::Bytes(_) => Vec::new(),
        };
        self.tile = tile;
    }

    pub fn tile(&self) -> Tile {
        self.tile
    }

    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    pub fn relu(&self) -> bool {
        self.relu
    }

    /// The byte a row holds for the quantized 0.0 (padding, padded channels).
    fn zero_code(&self) -> u8 {
        if self.tile.signed {
            self.x_zero ^ 0x80
        } else {
            self.x_zero
        }
    }

    /// Convolves `n` NCHW images of `h`×`w` (`x.len() == n·c·h·w`) into `out`
    /// (`n·m·oh·ow`). Returns false (and writes nothing) if the sizes disagree. Uses the
    /// threads of tract's current executor (`--threads`) for layers large enough to pay
    /// for them ([`Tile::par_min_macs`]).
    pub fn run(&self, x: &[f32], n: usize, h: usize, w: usize, out: &mut [f32]) -> bool {
        let g = &self.geo;
        let Some((oh, ow)) = g.output_hw(h, w) else {
            return false;
        };
        if x.len() != n * g.c * h * w || out.len() != n * g.m * oh * ow {
            return false;
        }
        let macs = g.m * oh * ow * g.k();
        let pool = match tract_linalg::multithread::current_tract_executor() {
            tract_linalg::multithread::Executor::MultiThread(pool)
                if macs >= self.tile.par_min_macs =>
            {
                Some(pool)
            }
            _ => None,
        };
        let pool = pool.as_deref();
        SCRATCH.with(|s| {
            let s = &mut *s.borrow_mut();
            for (img, o) in x
                .chunks_exact(g.c * h * w)
                .zip(out.chunks_exact_mut(g.m * oh * ow))
            {
                let pw = w + g.pads[1] + g.pads[3];
                window_offsets(g, pw, (oh, ow), &mut s.taps, &mut s.starts);
                let at = (&s.taps[..], &s.starts[..]);
                match self.tile.dot {
                    Dot::Bytes(dot) => {
                        let bufs = (&mut s.planes, &mut s.nhwc);
                        self.image(img, (h, w), oh * ow, bufs, at, &self.packed, dot, pool, o)
                    }
                    Dot::Wide(dot) => {
                        let bufs = (&mut s.planes, &mut s.nhwc16);
                        self.image(img, (h, w), oh * ow, bufs, at, &self.wide, dot, pool, o)
                    }
                }
            }
        });
        true
    }

    /// One image through quantization and the tile, in codes of type `T` (the tile's
    /// input form) against weights `packed`, with the window offsets `(taps, starts)` of
    /// [`window_offsets`]; on `pool` when it is given.
    #[allow(clippy::too_many_arguments)]
    fn image<T: Code, W: Sync>(
        &self,
        img: &[f32],
        (h, w): (usize, usize),
        pixels: usize,
        (planes, nhwc): (&mut Vec<u8>, &mut Vec<T>),
        (taps, starts): (&[usize], &[usize]),
        packed: &[W],
        dot: fn(&Window<T>, &[W], &mut Acc),
        pool: Option<&rayon::ThreadPool>,
        out: &mut [f32],
    ) {
        self.quantize_nhwc(img, h, w, planes, nhwc);
        let patches = Patches::new(&nhwc[..], starts, taps, self.geo.c4());
        let block = MB * self.geo.k();
        let tile = |p0: usize, b: usize, acc: &mut Acc| {
            dot(
                &patches.window(p0),
                &packed[b * block..(b + 1) * block],
                acc,
            )
        };
        match pool {
            Some(pool) => pool.install(|| self.multiply(tile, pixels, out, true)),
            None => self.multiply(tile, pixels, out, false),
        }
    }

    /// `q(x)` as padded NHWC codes (`q - 128` for a signed tile; bytes, or u16 for a wide
    /// one), channels padded to 4 and the border filled with the zero point.
    fn quantize_nhwc<T: Code>(
        &self,
        img: &[f32],
        h: usize,
        w: usize,
        planes: &mut Vec<u8>,
        nhwc: &mut Vec<T>,
    ) {
        let g = &self.geo;
        let (ph, pw) = (h + g.pads[0] + g.pads[2], w + g.pads[1] + g.pads[3]);
        // Quantize the planes as they lie (contiguous, vectorised), then interleave.
        // Every element of both buffers is written below: grow them, never clear them.
        let planes = grown(planes, g.c * h * w, 0);
        quantize(img, self.x_scale, self.x_zero, planes);
        if self.tile.signed {
            planes.iter_mut().for_each(|q| *q ^= 0x80);
        }
        let zero = self.zero_code();
        let nhwc = grown(nhwc, ph * pw * g.c4(), T::from(zero));
        interleave(planes, g.c, (h, w), g.pads, zero, nhwc);
    }

    /// Every (pixel tile, channel block) pair through `tile` (which fills the sums of
    /// pixels `p0..p0 + NR` in channel block `b`) and the epilogue; pairs in parallel when
    /// `par`.
    fn multiply(
        &self,
        tile: impl Fn(usize, usize, &mut Acc) + Sync,
        pixels: usize,
        out: &mut [f32],
        par: bool,
    ) {
        let blocks = self.geo.m.div_ceil(MB);
        let items = pixels.div_ceil(NR) * blocks;
        let dst = Out(out.as_mut_ptr(), out.len());
        // The tile buffer is made once per task, not per item: zeroing 1.5 KB per item was
        // a visible share of a run (a memset per 12 pixels × 32 channels). Every tile
        // writes all of it.
        let item = |acc: &mut Acc, i: usize| {
            let (p0, b) = ((i / blocks) * NR, i % blocks);
            tile(p0, b, acc);
            // SAFETY: `dst` is `out`, borrowed mutably for this whole call; item (p0, b)
            // writes only channels b·MB.. of pixels p0..p0+NR, which no other item writes.
            unsafe { self.store(acc, b * MB, p0, pixels, &dst) };
        };
        if par && items > PAR_MIN_ITEMS {
            use rayon::prelude::*;
            (0..items)
                .into_par_iter()
                .with_min_len(PAR_MIN_ITEMS)
                .for_each_init(|| [[0i32; MB]; NR], item);
        } else {
            let mut acc = [[0i32; MB]; NR];
            (0..items).for_each(|i| item(&mut acc, i));
        }
    }

    /// The epilogue for channels `m0..m0 + MB` of pixels `p0..p0 + NR`.
    ///
    /// # Safety
    /// `out` must be valid for writes of `m · pixels` floats, and no other thread may
    /// touch the elements this tile writes.
    unsafe fn store(&self, tile: &mut Acc, m0: usize, p0: usize, pixels: usize, out: &Out) {
        let blk = Block {
            scale: &self.scale[m0..m0 + MB],
            bias: &self.bias[m0..m0 + MB],
            zero_term: &self.zero_term[m0..m0 + MB],
            floor: if self.relu { 0.0 } else { f32::NEG_INFINITY },
            requant: self.requant,
        };
        let channels = MB.min(self.geo.m - m0);
        assert!((m0 + channels) * pixels <= out.1);
        let dst = Dst {
            // SAFETY: in bounds (asserted above).
            ptr: unsafe { out.0.add(m0 * pixels + p0) },
            stride: pixels,
            channels,
            pixels: NR.min(pixels - p0),
        };
        // SAFETY: rows m0.. of `out` from p0 on, `channels` × `dst.pixels` of them, are in
        // bounds and exclusive to this tile (the caller's contract).
        unsafe { (self.epilogue)(tile, blk, &dst) }
    }
}

/// The first `len` bytes of `buf`, grown with `fill` if it is shorter: scratch reused across
/// layers and frames, whose contents the caller overwrites.
fn grown<T: Copy>(buf: &mut Vec<T>, len: usize, fill: T) -> &mut [T] {
    if buf.len() < len {
        buf.resize(len, fill);
    }
    &mut buf[..len]
}

/// The output buffer, shared by the tasks of one [`QConv::multiply`], each of which writes
/// its own disjoint elements.
struct Out(*mut f32, usize);
// SAFETY: see `QConv::store`: the tasks write disjoint elements of a buffer that outlives
// them.
unsafe impl Sync for Out {}
unsafe impl Send for Out {}

/// Where each tap and each output pixel's patch start in the padded NHWC input of width
/// `pw` (in codes): `taps` in the packed weights' `(ky, kx)` order, `starts` one per output
/// pixel and `NR`-padded (the padding pixels read pixel 0's patch: their sums are computed
/// and never stored).
fn window_offsets(
    g: &Geometry,
    pw: usize,
    (oh, ow): (usize, usize),
    taps: &mut Vec<usize>,
    starts: &mut Vec<usize>,
) {
    let c4 = g.c4();
    // Plain loops: `extend` over a `flat_map` did not vectorise and was 1.5 % of a run.
    taps.clear();
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            taps.push((ky * pw + kx) * c4);
        }
    }
    starts.clear();
    starts.resize((oh * ow).div_ceil(NR) * NR, 0);
    for (oy, line) in starts.chunks_mut(ow).take(oh).enumerate() {
        let first = oy * g.sh * pw * c4;
        for (ox, s) in line.iter_mut().enumerate() {
            *s = first + ox * g.sw * c4;
        }
    }
}

/// `[c][h][w]` planes to the `[ph][pw][c4]` padded pixels, four channels (one `u32`) per
/// store; channels past `c` and the border of `pads` (top, left, bottom, right) are `zero`.
/// Writes every element of `nhwc`.
fn interleave<T: Code>(
    planes: &[u8],
    c: usize,
    (h, w): (usize, usize),
    pads: [usize; 4],
    zero: u8,
    nhwc: &mut [T],
) {
    let c4 = c.div_ceil(4) * 4;
    let line = (w + pads[1] + pads[3]) * c4;
    let (top, rest) = nhwc.split_at_mut(pads[0] * line);
    let (body, bottom) = rest.split_at_mut(h * line);
    top.fill(T::from(zero));
    bottom.fill(T::from(zero));
    let pad = vec![zero; if c.is_multiple_of(4) { 0 } else { w }];
    for (y, row) in body.chunks_exact_mut(line).enumerate() {
        let (left, rest) = row.split_at_mut(pads[1] * c4);
        let (px, right) = rest.split_at_mut(w * c4);
        left.fill(T::from(zero));
        right.fill(T::from(zero));
        let plane = |ch: usize| {
            if ch < c {
                &planes[(ch * h + y) * w..(ch * h + y + 1) * w]
            } else {
                &pad[..]
            }
        };
        for g in 0..c4 / 4 {
            let (a, b, cc, d) = (
                plane(4 * g),
                plane(4 * g + 1),
                plane(4 * g + 2),
                plane(4 * g + 3),
            );
            let px = px.chunks_exact_mut(c4).map(|px| &mut px[4 * g..4 * g + 4]);
            for ((((o, &a), &b), &cc), &d) in px.zip(a).zip(b).zip(cc).zip(d) {
                o.copy_from_slice(&[a.into(), b.into(), cc.into(), d.into()]);
            }
        }
    }
}

/// A quantized code as a tile's input holds it: a byte, or a u16 for [`Dot::Wide`].
trait Code: Copy + From<u8> + Send + Sync {}
impl Code for u8 {}
impl Code for u16 {}

/// The quantized planes, the padded NHWC input (bytes, and u16 for a wide tile) and the
/// window offsets, reused across runs: no allocation per frame once the largest layer has
/// been seen.
struct Scratch {
    planes: Vec<u8>,
    nhwc: Vec<u8>,
    nhwc16: Vec<u16>,
    taps: Vec<usize>,
    starts: Vec<usize>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const {
        RefCell::new(Scratch {
            planes: Vec::new(),
            nhwc: Vec::new(),
            nhwc16: Vec::new(),
            taps: Vec::new(),
            starts: Vec::new(),
        })
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::qconv::grid::fake_quantize;
    use crate::qconv::tile::tests::lcg;
    use tract_linalg::multithread::{multithread_tract_scope, Executor};

    /// Direct convolution over the quantized grid, in f64: the definition.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        geo: &Geometry,
        x: &[f32],
        n: usize,
        h: usize,
        w: usize,
        wq: &[i8],
        ws: &[f32],
        bias: &[f32],
        xs: f32,
        xz: u8,
        relu: bool,
    ) -> Vec<f32> {
        let (oh, ow) = geo.output_hw(h, w).unwrap();
        let q =
            |v: f32| ((v / xs).round_ties_even() + xz as f32).clamp(0.0, 255.0) as i64 - xz as i64;
        let mut out = vec![0f32; n * geo.m * oh * ow];
        for i in 0..n {
            for m in 0..geo.m {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut s = 0i64;
                        for c in 0..geo.c {
                            for ky in 0..geo.kh {
                                for kx in 0..geo.kw {
                                    let iy = (oy * geo.sh + ky) as isize - geo.pads[0] as isize;
                                    let ix = (ox * geo.sw + kx) as isize - geo.pads[1] as isize;
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                        continue;
                                    }
                                    let xv =
                                        x[((i * geo.c + c) * h + iy as usize) * w + ix as usize];
                                    let wv = wq[((m * geo.c + c) * geo.kh + ky) * geo.kw + kx];
                                    s += q(xv) * wv as i64;
                                }
                            }
                        }
                        let v = (s as f64 * xs as f64 * ws[m] as f64 + bias[m] as f64) as f32;
                        out[((i * geo.m + m) * oh + oy) * ow + ox] =
                            if relu { v.max(0.0) } else { v };
                    }
                }
            }
        }
        out
    }

    fn check(geo: Geometry, n: usize, h: usize, w: usize, xz: u8, relu: bool, seed: u64) {
        let mut s = seed;
        let x: Vec<f32> = (0..n * geo.c * h * w)
            .map(|_| (lcg(&mut s) % 2001) as f32 / 500.0 - 2.0)
            .collect();
        let wq: Vec<i8> = (0..geo.m * geo.c * geo.kh * geo.kw)
            .map(|_| ((lcg(&mut s) % 255) as i32 - 127) as i8)
            .collect();
        let ws: Vec<f32> = (0..geo.m).map(|i| 0.001 + i as f32 * 1e-4).collect();
        let bias: Vec<f32> = (0..geo.m).map(|i| i as f32 * 0.01 - 0.1).collect();
        let xs = 4.0 / 255.0;
        let conv = QConv::new(geo, &wq, &ws, Some(&bias), xs, xz, relu).unwrap();
        let (oh, ow) = geo.output_hw(h, w).unwrap();
        let want = reference(&geo, &x, n, h, w, &wq, &ws, &bias, xs, xz, relu);
        for tile in Tile::available() {
            let name = tile.name;
            let mut conv = conv.clone();
            conv.set_tile(tile);
            let mut out = vec![f32::NAN; n * geo.m * oh * ow];
            assert!(conv.run(&x, n, h, w, &mut out));
            // Two threads split the same work (here on layers of any size): the same bits.
            let mut conv = conv.clone();
            conv.set_tile(Tile {
                par_min_macs: 0,
                ..tile
            });
            let mut par = vec![f32::NAN; out.len()];
            multithread_tract_scope(Executor::multithread(2), || {
                assert!(conv.run(&x, n, h, w, &mut par))
            });
            assert!(
                out.iter()
                    .zip(&par)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{name} {geo:?}: two threads differ from one"
            );
            for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "{name} {geo:?}: output {i}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn matches_the_direct_convolution_on_every_shape_the_body_uses() {
        let g = |c, m, k: usize, s, p| Geometry {
            c,
            m,
            kh: k,
            kw: k,
            sh: s,
            sw: s,
            pads: [p; 4],
        };
        // Stem (3 channels: padded to 4), 3x3 same and strided, 1x1 downsample; channel
        // counts that are not multiples of 32, pixel counts that are not multiples of 12.
        check(g(3, 32, 7, 2, 3), 1, 23, 19, 128, true, 1);
        check(g(16, 32, 3, 1, 1), 2, 9, 7, 0, true, 2);
        check(g(16, 40, 3, 2, 1), 1, 9, 9, 17, false, 3);
        check(g(32, 64, 1, 2, 0), 1, 8, 8, 0, false, 4);
        check(g(5, 7, 3, 1, 0), 1, 5, 6, 255, false, 5);
    }

    /// A grid fused into the epilogue gives the bits of the separate pass after it, on
    /// every tile.
    #[test]
    fn a_fused_output_grid_is_the_fake_quantize_pass_after_it() {
        let geo = Geometry {
            c: 16,
            m: 40,
            kh: 3,
            kw: 3,
            sh: 1,
            sw: 1,
            pads: [1; 4],
        };
        let (h, w) = (7, 9);
        let mut s = 11;
        let x: Vec<f32> = (0..geo.c * h * w)
            .map(|_| (lcg(&mut s) % 2001) as f32 / 500.0 - 2.0)
            .collect();
        let wq: Vec<i8> = (0..geo.m * geo.c * 9)
            .map(|_| ((lcg(&mut s) % 255) as i32 - 127) as i8)
            .collect();
        let ws: Vec<f32> = (0..geo.m).map(|i| 0.001 + i as f32 * 1e-4).collect();
        for (relu, zero) in [(false, 128u8), (true, 0), (false, 3)] {
            let plain = QConv::new(geo, &wq, &ws, None, 4.0 / 255.0, 9, relu).unwrap();
            let grid = plain.clone().with_requant(0.021, zero).unwrap();
            for tile in Tile::available() {
                let (mut plain, mut grid) = (plain.clone(), grid.clone());
                plain.set_tile(tile);
                grid.set_tile(tile);
                let mut a = vec![0f32; geo.m * h * w];
                let mut b = a.clone();
                assert!(plain.run(&x, 1, h, w, &mut a));
                assert!(grid.run(&x, 1, h, w, &mut b));
                let mut want = vec![0f32; a.len()];
                fake_quantize(&a, 0.021, zero, &mut want);
                assert!(
                    want.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()),
                    "{} relu {relu} zero {zero}",
                    tile.name
                );
            }
        }
        assert!(QConv::new(geo, &wq, &ws, None, 0.1, 0, false)
            .unwrap()
            .with_requant(f32::NAN, 0)
            .is_err());
    }

    #[test]
    fn interleave_pads_channels_and_the_border_with_the_zero_point() {
        let (c, h, w) = (3, 2, 3);
        let planes: Vec<u8> = (0..(c * h * w) as u8).collect();
        // Top 1, left 2, bottom 0, right 1: 3 rows of 6 pixels.
        let pads = [1, 2, 0, 1];
        let mut nhwc = vec![7u8; 3 * 6 * 4];
        interleave(&planes, c, (h, w), pads, 200, &mut nhwc);
        for py in 0..3 {
            for px in 0..6 {
                let got = &nhwc[(py * 6 + px) * 4..][..4];
                let (y, x) = (py as isize - 1, px as isize - 2);
                if y < 0 || !(0..w as isize).contains(&x) {
                    assert_eq!(got, [200; 4], "border pixel {py},{px}");
                } else {
                    let p = y as usize * w + x as usize;
                    let hw = h * w;
                    assert_eq!(got, [p as u8, (hw + p) as u8, (2 * hw + p) as u8, 200]);
                }
            }
        }
    }

    #[test]
    fn refuses_inconsistent_weights() {
        let geo = Geometry {
            c: 2,
            m: 3,
            kh: 1,
            kw: 1,
            sh: 1,
            sw: 1,
            pads: [0; 4],
        };
        assert!(matches!(
            QConv::new(geo, &[0; 5], &[1.0; 3], None, 0.1, 0, false),
            Err(PackError::WeightLen { got: 5, want: 6 })
        ));
        assert!(matches!(
            QConv::new(geo, &[0; 6], &[1.0; 2], None, 0.1, 0, false),
            Err(PackError::PerChannel { .. })
        ));
        assert!(QConv::new(geo, &[0; 6], &[1.0; 3], None, 0.0, 0, false).is_err());
        let conv = QConv::new(geo, &[0; 6], &[1.0; 3], None, 0.1, 0, false).unwrap();
        assert!(!conv.run(&[0.0; 7], 1, 2, 2, &mut [0.0; 12]));
    }
}
