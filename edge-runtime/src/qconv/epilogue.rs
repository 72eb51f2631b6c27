//! int32 tile sums to the NCHW float output: `relu?(scale · (sum - zero_term) + bias)`,
//! transposed, since a tile holds pixels × channels and the output is channels × pixels;
//! then, when the convolution's only reader was a quantize/dequantize pair, rounded to that
//! pair's grid ([`Requant`]), so the pair's own pass over the output is gone.
//!
//! The plain loop ([`store`]) converts in place across channels (vectorised) and then
//! copies element by element down the channels: that copy was 19 % of an int8 run on the
//! AVX-512 host (perf, docs/measurements.md). [`avx512`] transposes in registers and writes
//! each channel's pixels with one masked store. Both do the same float operations in the
//! same order (multiply, then add: no fused multiply-add), so their outputs are identical.
pub use super::grid::Requant;
use super::tile::{Acc, MB, NR};

/// One block's per-channel constants, `MB` of each.
#[derive(Clone, Copy)]
pub struct Block<'a> {
    pub scale: &'a [f32],
    pub bias: &'a [f32],
    pub zero_term: &'a [i32],
    /// 0.0 for a fused relu, `-inf` without one.
    pub floor: f32,
    /// The grid of a quantize/dequantize pair fused after the relu.
    pub requant: Option<Requant>,
}

/// Where one tile lands: `channels` rows (≤ `MB`) of `pixels` floats (≤ `NR`), `stride`
/// floats apart.
pub struct Dst {
    pub ptr: *mut f32,
    pub stride: usize,
    pub channels: usize,
    pub pixels: usize,
}

/// The best epilogue this CPU runs.
pub fn pick() -> Store {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        return avx512::store;
    }
    store
}

/// An epilogue.
///
/// # Safety
/// `dst.ptr` must be valid for writes at `c · stride + p` for every `c < channels`,
/// `p < pixels`, and no other thread may touch those elements.
pub type Store = unsafe fn(&mut Acc, Block, &Dst);

/// The portable epilogue; the reference for the others.
///
/// # Safety
/// See [`Store`].
pub unsafe fn store(tile: &mut Acc, blk: Block, dst: &Dst) {
    let (s, b, z) = (&blk.scale[..MB], &blk.bias[..MB], &blk.zero_term[..MB]);
    // In place, as the floats' bits, so no second buffer is zeroed.
    for t in tile.iter_mut() {
        for (((t, &s), &b), &z) in t.iter_mut().zip(s).zip(b).zip(z) {
            let v = (s * (*t - z) as f32 + b).max(blk.floor);
            *t = blk.requant.map_or(v, |q| q.apply(v)).to_bits() as i32;
        }
    }
    for lane in 0..dst.channels.min(MB) {
        // SAFETY: the caller's contract.
        let row = unsafe {
            std::slice::from_raw_parts_mut(dst.ptr.add(lane * dst.stride), dst.pixels.min(NR))
        };
        for (d, t) in row.iter_mut().zip(tile.iter()) {
            *d = f32::from_bits(t[lane] as u32);
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub mod avx512 {
    use super::{Acc, Block, Dst, MB, NR};
    use crate::qconv::grid::avx512::Grid;
    use std::arch::x86_64::*;

    /// The AVX-512 epilogue: per 16 channels, 12 pixel rows converted, transposed as a
    /// 16 × 16 block (4 shuffle stages), one masked store per channel.
    ///
    /// # Safety
    /// See [`super::Store`]; and the CPU must have AVX-512F ([`super::pick`] checks).
    pub unsafe fn store(tile: &mut Acc, blk: Block, dst: &Dst) {
        // SAFETY: forwarded.
        unsafe { run(tile, blk, dst) }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn run(tile: &Acc, blk: Block, dst: &Dst) {
        const { assert!(NR <= 16 && MB.is_multiple_of(16)) };
        assert!(blk.scale.len() >= MB && blk.bias.len() >= MB && blk.zero_term.len() >= MB);
        let mask: __mmask16 = (1u32 << dst.pixels.min(NR)).wrapping_sub(1) as __mmask16;
        let floor = _mm512_set1_ps(blk.floor);
        for half in 0..MB / 16 {
            let c0 = half * 16;
            if c0 >= dst.channels {
                break;
            }
            // SAFETY: c0 + 16 ≤ MB ≤ the slices' lengths (asserted).
            let (s, b, z) = unsafe {
                (
                    _mm512_loadu_ps(blk.scale.as_ptr().add(c0)),
                    _mm512_loadu_ps(blk.bias.as_ptr().add(c0)),
                    _mm512_loadu_si512(blk.zero_term.as_ptr().add(c0) as *const _),
                )
            };
            let mut r = [_mm512_setzero_ps(); 16];
            for (r, t) in r.iter_mut().zip(tile.iter()) {
                // SAFETY: a tile row is MB i32; c0 + 16 ≤ MB.
                let v = unsafe { _mm512_loadu_si512(t.as_ptr().add(c0) as *const _) };
                let v = _mm512_cvtepi32_ps(_mm512_sub_epi32(v, z));
                *r = _mm512_max_ps(_mm512_add_ps(_mm512_mul_ps(s, v), b), floor);
            }
            if let Some(q) = blk.requant {
                let grid = Grid::new(q);
                for r in &mut r {
                    *r = grid.apply(*r);
                }
            }
            let cols = transpose(r);
            for (c, col) in cols.iter().enumerate().take(dst.channels - c0) {
                // SAFETY: channel c0 + c < channels, pixels under the mask < pixels: the
                // caller's contract.
                unsafe { _mm512_mask_storeu_ps(dst.ptr.add((c0 + c) * dst.stride), mask, *col) };
            }
        }
    }

    /// 16 × 16 f32 transpose: 32-bit, 64-bit and two 128-bit interleaving stages.
    #[target_feature(enable = "avx512f")]
    fn transpose(r: [__m512; 16]) -> [__m512; 16] {
        let mut t = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        // Each group of 4 rows a..d: [a0 b0 c0 d0 | a4 b4 c4 d4 | ...] for column 0, 1, 2, 3.
        let mut u = [_mm512_setzero_ps(); 16];
        for g in 0..4 {
            let (t0, t1, t2, t3) = (t[4 * g], t[4 * g + 1], t[4 * g + 2], t[4 * g + 3]);
            u[4 * g] = _mm512_shuffle_ps::<0x44>(t0, t2);
            u[4 * g + 1] = _mm512_shuffle_ps::<0xEE>(t0, t2);
            u[4 * g + 2] = _mm512_shuffle_ps::<0x44>(t1, t3);
            u[4 * g + 3] = _mm512_shuffle_ps::<0xEE>(t1, t3);
        }
        // 128-bit lanes: rows 0-3 with 4-7 and 8-11 with 12-15, then those with each other.
        let mut v = [_mm512_setzero_ps(); 16];
        for i in 0..4 {
            v[i] = _mm512_shuffle_f32x4::<0x88>(u[i], u[4 + i]);
            v[4 + i] = _mm512_shuffle_f32x4::<0xDD>(u[i], u[4 + i]);
            v[8 + i] = _mm512_shuffle_f32x4::<0x88>(u[8 + i], u[12 + i]);
            v[12 + i] = _mm512_shuffle_f32x4::<0xDD>(u[8 + i], u[12 + i]);
        }
        let mut out = [_mm512_setzero_ps(); 16];
        for i in 0..4 {
            out[i] = _mm512_shuffle_f32x4::<0x88>(v[i], v[8 + i]);
            out[4 + i] = _mm512_shuffle_f32x4::<0x88>(v[4 + i], v[12 + i]);
            out[8 + i] = _mm512_shuffle_f32x4::<0xDD>(v[i], v[8 + i]);
            out[12 + i] = _mm512_shuffle_f32x4::<0xDD>(v[4 + i], v[12 + i]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a random tile into a buffer of `channels` rows of `stride` floats,
    /// sentinel-filled, and returns the buffer.
    fn run(
        f: Store,
        seed: u64,
        channels: usize,
        pixels: usize,
        relu: bool,
        requant: Option<Requant>,
    ) -> Vec<u32> {
        let mut state = seed;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as i32
        };
        let mut tile: Acc = [[0; MB]; NR];
        tile.iter_mut()
            .flatten()
            .for_each(|t| *t = next() % 2_000_000);
        let scale: Vec<f32> = (0..MB).map(|_| (next() % 1000) as f32 * 1e-6).collect();
        let bias: Vec<f32> = (0..MB).map(|_| (next() % 1000) as f32 * 1e-3).collect();
        let zero_term: Vec<i32> = (0..MB).map(|_| next() % 50_000).collect();
        let stride = NR + 3;
        let mut out = vec![f32::from_bits(0xDEAD_BEEF); MB * stride];
        let blk = Block {
            scale: &scale,
            bias: &bias,
            zero_term: &zero_term,
            floor: if relu { 0.0 } else { f32::NEG_INFINITY },
            requant,
        };
        let dst = Dst {
            ptr: out.as_mut_ptr(),
            stride,
            channels,
            pixels,
        };
        // SAFETY: `out` holds MB rows of `stride` ≥ NR floats.
        unsafe { f(&mut tile, blk, &dst) };
        out.iter().map(|f| f.to_bits()).collect()
    }

    #[test]
    fn every_epilogue_matches_the_portable_one_bit_for_bit() {
        let picked = pick();
        // Grids from fine (values round often) to coarse (many saturate), zero points at
        // both ends.
        let grids = [
            None,
            Some(Requant::new(0.013, 0)),
            Some(Requant::new(0.0021, 128)),
            Some(Requant::new(0.5, 255)),
        ];
        for (seed, channels, pixels, relu) in [
            (1, MB, NR, true),
            (2, MB, NR, false),
            (3, 5, NR, true),
            (4, 17, 7, false),
            (5, MB, 1, true),
            (6, 16, 12, false),
        ] {
            for requant in grids {
                let want = run(store, seed, channels, pixels, relu, requant);
                // The sentinel survives outside the written rectangle.
                let stride = NR + 3;
                for (i, &v) in want.iter().enumerate() {
                    let inside = i / stride < channels && i % stride < pixels;
                    assert_eq!(v == 0xDEAD_BEEF, !inside, "element {i}");
                }
                assert_eq!(
                    run(picked, seed, channels, pixels, relu, requant),
                    want,
                    "seed {seed} {requant:?}"
                );
                #[cfg(target_arch = "x86_64")]
                if std::is_x86_feature_detected!("avx512f") {
                    let got = run(avx512::store, seed, channels, pixels, relu, requant);
                    assert_eq!(got, want, "avx512, seed {seed} {requant:?}");
                }
            }
        }
    }

    /// The fused grid is the separate pass's: the same bits as `fake_quantize` of the
    /// epilogue's plain output.
    #[test]
    fn the_fused_grid_is_the_fake_quantize_pass() {
        for (seed, relu) in [(7, true), (8, false)] {
            for zero in [0u8, 77, 255] {
                let q = Requant::new(0.0037, zero);
                let plain: Vec<f32> = run(store, seed, MB, NR, relu, None)
                    .into_iter()
                    .map(f32::from_bits)
                    .collect();
                let mut want = vec![0f32; plain.len()];
                crate::qconv::grid::fake_quantize(&plain, q.scale, zero, &mut want);
                let got = run(pick(), seed, MB, NR, relu, Some(q));
                let stride = NR + 3;
                for (i, (&g, w)) in got.iter().zip(&want).enumerate() {
                    if i % stride < NR {
                        assert_eq!(g, w.to_bits(), "element {i}, zero {zero}");
                    }
                }
            }
        }
    }
}
