//! The uint8 grid of ONNX's `QuantizeLinear`: `clamp(round(x / scale) + zero, 0, 255)`,
//! round half to even, and the float passes built on it (quantize, fake-quantize, the
//! epilogue's output grid).
//!
//! `x / scale` is a division, as ONNX and onnxruntime define it; multiplying by `1 / scale`
//! instead rounds a few values per thousand to the neighbouring code. With AVX-512 the
//! division was the cost of these passes (perf: a quarter of the epilogue), so
//! [`avx512::quotient`] multiplies and divides only the vectors where that can matter.

/// Adding 1.5·2^23 to an f32 of magnitude < 2^22 rounds it to an integer, half to even
/// (the default rounding mode), and leaves that integer in the low mantissa bits: no
/// float-to-int conversion and no libm call (`round_ties_even` is `rintf` on x86-64
/// without SSE4.1, and was 12 % of a run), so the loops below vectorise.
pub const ROUND: f32 = 12_582_912.0;
const ROUND_BITS: i32 = 0x4B40_0000;

/// `round(clamp(x / scale, lo, hi)) + ROUND` (`max`/`min` send NaN to `lo`).
#[inline(always)]
fn rounded(x: f32, scale: f32, lo: f32, hi: f32) -> f32 {
    (x / scale).max(lo).min(hi) + ROUND
}

/// `-zero` and `255 - zero`: the bounds of `round(x / scale)` on the grid.
fn bounds(zero: u8) -> (f32, f32) {
    (-(zero as f32), 255.0 - zero as f32)
}

/// ONNX `QuantizeLinear` to uint8: `clamp(round(x / scale) + zero, 0, 255)` (clamping
/// before adding the zero point is the same: the bounds are integers).
pub fn quantize(src: &[f32], scale: f32, zero: u8, dst: &mut [u8]) {
    let n = src.len().min(dst.len());
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F.
        let done = unsafe { avx512::quantize(&src[..n], scale, zero, &mut dst[..n]) };
        return quantize_plain(&src[done..n], scale, zero, &mut dst[done..n]);
    }
    quantize_plain(&src[..n], scale, zero, &mut dst[..n])
}

fn quantize_plain(src: &[f32], scale: f32, zero: u8, dst: &mut [u8]) {
    let (lo, hi) = bounds(zero);
    let z = zero as i32 - ROUND_BITS;
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = (rounded(x, scale, lo, hi).to_bits() as i32 + z) as u8;
    }
}

/// `DequantizeLinear(QuantizeLinear(x))`: `x` rounded to its uint8 grid, in float.
pub fn fake_quantize(src: &[f32], scale: f32, zero: u8, dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F.
        let done = unsafe { avx512::fake_quantize(&src[..n], scale, zero, &mut dst[..n]) };
        return fake_quantize_plain(&src[done..n], scale, zero, &mut dst[done..n]);
    }
    fake_quantize_plain(&src[..n], scale, zero, &mut dst[..n])
}

fn fake_quantize_plain(src: &[f32], scale: f32, zero: u8, dst: &mut [f32]) {
    let q = Requant::new(scale, zero);
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = q.apply(x);
    }
}

/// `DequantizeLinear(QuantizeLinear(v))` on one uint8 grid, as [`fake_quantize`] computes
/// it, the same float operations in the same order: `(round(clamp(v / scale, lo, hi)) -
/// ROUND) · scale`. The epilogue applies it to a convolution's output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Requant {
    pub scale: f32,
    /// `-zero` and `255 - zero`.
    pub lo: f32,
    pub hi: f32,
}

impl Requant {
    pub fn new(scale: f32, zero: u8) -> Self {
        let (lo, hi) = bounds(zero);
        Self { scale, lo, hi }
    }

    #[inline(always)]
    pub fn apply(&self, v: f32) -> f32 {
        (rounded(v, self.scale, self.lo, self.hi) - ROUND) * self.scale
    }
}

#[cfg(target_arch = "x86_64")]
pub mod avx512 {
    use super::{Requant, ROUND, ROUND_BITS};
    use std::arch::x86_64::*;

    /// What the grid's rounding needs of `x / s`, given `r = 1 / s` (rounded): `x · r`
    /// where that rounds to the code `x / s` rounds to, else `x / s` itself.
    ///
    /// Why this is exact: `x · r` is within 3 units in the last place (2^-24 relative,
    /// each) of the correctly rounded `x / s`, so for `|x / s| < 1024` the two are within
    /// 3·2^-14 of each other, and they round to different integers only if a half-integer
    /// lies between them (or is the quotient itself: a tie). Vectors where some lane's
    /// product lies within 2^-12 of a half-integer (about 1 in 2048 lanes) take the
    /// division. Beyond 1024 both saturate at the grid's ends, wherever they round; NaN
    /// and infinities pass through both forms alike.
    ///
    /// # Safety
    /// The CPU must have AVX-512F (as for every function of this module: callable safely
    /// only from code compiled for it).
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub fn quotient(x: __m512, s: __m512, r: __m512) -> __m512 {
        let t = _mm512_mul_ps(x, r);
        let whole = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(t);
        let off = _mm512_sub_ps(_mm512_sub_ps(t, whole), _mm512_set1_ps(0.5));
        let near =
            _mm512_cmp_ps_mask::<_CMP_LE_OQ>(_mm512_abs_ps(off), _mm512_set1_ps(1.0 / 4096.0));
        if near == 0 {
            t
        } else {
            _mm512_div_ps(x, s)
        }
    }

    /// The grid's `round(clamp(v / scale, lo, hi)) + ROUND`, 16 lanes.
    pub struct Grid {
        s: __m512,
        r: __m512,
        lo: __m512,
        hi: __m512,
        round: __m512,
    }

    impl Grid {
        /// # Safety
        /// The CPU must have AVX-512F.
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub fn new(q: Requant) -> Self {
            Self {
                s: _mm512_set1_ps(q.scale),
                r: _mm512_set1_ps(1.0 / q.scale),
                lo: _mm512_set1_ps(q.lo),
                hi: _mm512_set1_ps(q.hi),
                round: _mm512_set1_ps(ROUND),
            }
        }

        /// `round(clamp(v / scale)) + ROUND` (`max` sends NaN to `lo`, as `f32::max`).
        ///
        /// # Safety
        /// The CPU must have AVX-512F.
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub fn rounded(&self, v: __m512) -> __m512 {
            let q = quotient(v, self.s, self.r);
            _mm512_add_ps(
                _mm512_min_ps(_mm512_max_ps(q, self.lo), self.hi),
                self.round,
            )
        }

        /// `v` on the grid, in float: [`Requant::apply`].
        ///
        /// # Safety
        /// The CPU must have AVX-512F.
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub fn apply(&self, v: __m512) -> __m512 {
            _mm512_mul_ps(_mm512_sub_ps(self.rounded(v), self.round), self.s)
        }
    }

    /// [`super::quantize`] on the whole vectors of `src`; returns how many it did.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn quantize(src: &[f32], scale: f32, zero: u8, dst: &mut [u8]) -> usize {
        let grid = Grid::new(Requant::new(scale, zero));
        let z = _mm512_set1_epi32(zero as i32 - ROUND_BITS);
        for (d, x) in dst.chunks_exact_mut(16).zip(src.chunks_exact(16)) {
            // SAFETY: 16 floats in, 16 bytes out.
            unsafe {
                let v = grid.rounded(_mm512_loadu_ps(x.as_ptr()));
                let code = _mm512_add_epi32(_mm512_castps_si512(v), z);
                _mm_storeu_si128(d.as_mut_ptr() as *mut _, _mm512_cvtepi32_epi8(code));
            }
        }
        src.len() / 16 * 16
    }

    /// [`super::fake_quantize`] on the whole vectors of `src`; returns how many it did.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn fake_quantize(src: &[f32], scale: f32, zero: u8, dst: &mut [f32]) -> usize {
        let grid = Grid::new(Requant::new(scale, zero));
        for (d, x) in dst.chunks_exact_mut(16).zip(src.chunks_exact(16)) {
            // SAFETY: 16 floats in and out.
            unsafe {
                let v = grid.apply(_mm512_loadu_ps(x.as_ptr()));
                _mm512_storeu_ps(d.as_mut_ptr(), v);
            }
        }
        src.len() / 16 * 16
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qconv::tile::tests::lcg;

    /// ONNX QuantizeLinear, written out: divide, round half to even, add, saturate.
    fn onnx_quantize(x: f32, scale: f32, zero: u8) -> u8 {
        ((x / scale).round_ties_even() + zero as f32).clamp(0.0, 255.0) as u8
    }

    #[test]
    fn quantize_rounds_and_saturates_as_onnx_does() {
        let scale = 0.5;
        // Ties (x / scale = k + 0.5) go to the even neighbour, both signs; far values
        // saturate; every zero point.
        let mut xs: Vec<f32> = (-600..600).map(|i| i as f32 * 0.125).collect();
        xs.extend([
            1e9,
            -1e9,
            f32::MAX,
            f32::MIN,
            0.0,
            -0.0,
            1.25,
            1.75,
            -1.25,
            -1.75,
        ]);
        for zero in [0u8, 1, 127, 128, 254, 255] {
            let mut q = vec![0u8; xs.len()];
            quantize(&xs, scale, zero, &mut q);
            let mut f = vec![0f32; xs.len()];
            fake_quantize(&xs, scale, zero, &mut f);
            for ((&x, &q), &f) in xs.iter().zip(&q).zip(&f) {
                let want = onnx_quantize(x, scale, zero);
                assert_eq!(q, want, "x {x} zero {zero}");
                assert_eq!(f, (want as f32 - zero as f32) * scale, "x {x} zero {zero}");
            }
        }
        // Random values on an awkward scale, against the definition.
        let mut s = 3;
        let xs: Vec<f32> = (0..4099)
            .map(|_| (lcg(&mut s) as f32 / u32::MAX as f32 - 0.5) * 7.0)
            .collect();
        let mut q = vec![0u8; xs.len()];
        quantize(&xs, 0.0173, 97, &mut q);
        for (&x, &q) in xs.iter().zip(&q) {
            assert_eq!(q, onnx_quantize(x, 0.0173, 97), "x {x}");
        }
        // NaN has no defined code; it must not panic and lands on the zero point's floor.
        let mut q = [9u8];
        quantize(&[f32::NAN], 1.0, 10, &mut q);
        assert_eq!(q[0], 0);
    }

    /// Ties and their neighbours, where multiplying by the reciprocal and dividing round
    /// apart: every vector path against the plain division, bit for bit.
    #[test]
    fn ties_round_as_the_division_does() {
        for scale in [0.0173f32, 1.0 / 3.0, 0.1, 4.0 / 255.0, 0.0021, 7.77e-3] {
            let mut xs = Vec::new();
            for k in -300..300 {
                let x = (k as f32 + 0.5) * scale;
                for d in -3i32..=3 {
                    xs.push(f32::from_bits((x.to_bits() as i32 + d) as u32));
                }
            }
            for zero in [0u8, 128, 255] {
                let mut q = vec![0u8; xs.len()];
                let mut want = q.clone();
                quantize(&xs, scale, zero, &mut q);
                quantize_plain(&xs, scale, zero, &mut want);
                assert_eq!(q, want, "scale {scale} zero {zero}");
                let mut f = vec![0f32; xs.len()];
                let mut fwant = f.clone();
                fake_quantize(&xs, scale, zero, &mut f);
                fake_quantize_plain(&xs, scale, zero, &mut fwant);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&f), bits(&fwant), "scale {scale} zero {zero}");
            }
        }
    }
}
