//! The x86 tile for CPUs without VNNI (AVX2 only: Zen 1-3 EPYC, Haswell to Skylake client).
//!
//! AVX2's only u8·i8 product, `vpmaddubsw`, sums pairs into a *saturating* int16, which is
//! not exact for 8-bit codes (255·127 + 255·127 overflows; onnxruntime's u8s8 path on these
//! CPUs differs from the exact sums for this reason, docs/measurements.md). This tile uses
//! `vpmaddwd` on int16 operands, whose pair sums land in int32 exactly: half the products
//! per instruction of `vpmaddubsw`, but the same answers as every other tile.
//!
//! Both operands arrive already widened ([`super::tile::Dot::Wide`]): the NHWC input as
//! u16 codes, laid out once per layer, and the weights as i16 pairs, `[k / 2][MB][2]`, packed
//! once at load. A first version widened them here, per step (`vpmovsxbw` of the weights
//! for every two pixels, `vpmovzxbw` + a broadcast per pixel); those shuffles, not the
//! multiplies, bounded it at ~15 GMAC/s on a Zen 3, where this loop has no shuffle at all:
//! per step of two `k`, 2 weight loads, 6 broadcast loads, 12 `vpmaddwd` and 12 `vpaddd`.
use super::tile::{Acc, Window, MB, NR};
use std::arch::x86_64::*;

pub fn available() -> bool {
    std::is_x86_feature_detected!("avx2")
}

/// Safe entry for [`super::tile::Tile`]: only listed when [`available`] says so.
pub fn dot_tile(win: &Window<u16>, w: &[i16], tile: &mut Acc) {
    win.check(w);
    assert!(available());
    // SAFETY: the window's reads are in bounds (its `Patches` and the check above) and the
    // CPU has the features `dot` is compiled for.
    unsafe { dot(win, w, tile) }
}

/// Pixels per pass and 8-channel vectors per pass: 6 × 2 accumulators, 2 weight vectors
/// and one broadcast input are 15 of AVX2's 16 registers.
const PP: usize = 6;
const GP: usize = 2;

#[target_feature(enable = "avx2")]
unsafe fn dot(win: &Window<u16>, w: &[i16], tile: &mut Acc) {
    let (ip, pixels) = (win.input().as_ptr(), win.pixels());
    for p0 in (0..NR).step_by(PP) {
        for c0 in (0..MB).step_by(8 * GP) {
            let mut acc = [[_mm256_setzero_si256(); GP]; PP];
            let mut wk = w.as_ptr().wrapping_add(c0 * 2);
            for &t in win.taps() {
                // SAFETY (whole block): each pixel's tap run lies in the input (a `Window`
                // is made only from checked `Patches`); the block holds MB·2 i16 per pair
                // of `k` (`Window::check`; c0 + 8·GP ≤ MB).
                unsafe {
                    let px: [*const u16; PP] = std::array::from_fn(|j| ip.add(pixels[p0 + j] + t));
                    for c in (0..win.run()).step_by(2) {
                        let mut wv = [_mm256_setzero_si256(); GP];
                        for (g, v) in wv.iter_mut().enumerate() {
                            *v = _mm256_loadu_si256(wk.add(g * 16) as *const _);
                        }
                        wk = wk.add(MB * 2);
                        for (a, p) in acc.iter_mut().zip(&px) {
                            let x2 = (p.add(c) as *const i32).read_unaligned();
                            let x = _mm256_set1_epi32(x2);
                            for (ag, wg) in a.iter_mut().zip(&wv) {
                                *ag = _mm256_add_epi32(*ag, _mm256_madd_epi16(x, *wg));
                            }
                        }
                    }
                }
            }
            for (j, a) in acc.iter().enumerate() {
                for (g, ag) in a.iter().enumerate() {
                    let out = &mut tile[p0 + j][c0 + g * 8..c0 + g * 8 + 8];
                    // SAFETY: 8 i32 = one 32-byte store into the tile row.
                    unsafe { _mm256_storeu_si256(out.as_mut_ptr() as *mut _, *ag) };
                }
            }
        }
    }
}
