//! The x86 tile for CPUs without VNNI (AVX2 only: Zen 1-3 EPYC, Haswell to Skylake client).
//!
//! AVX2's only u8·i8 product, `vpmaddubsw`, sums pairs into a *saturating* int16, which is
//! not exact for 8-bit codes (255·127 + 255·127 overflows; onnxruntime's u8s8 path on these
//! CPUs differs from the exact sums for this reason, docs/measurements.md). This tile uses
//! `vpmaddwd` on int16 operands, whose pair sums land in int32 exactly: half the products
//! per instruction of `vpmaddubsw`, but the same answers as every other tile.
//!
//! Both operands arrive already widened ([`super::tile::Dot::Wide`]): the patch rows as
//! u16 codes, built once per layer, and the weights as i16 pairs, `[k / 2][MB][2]`, packed
//! once at load. A first version widened them here, per step (`vpmovsxbw` of the weights
//! for every two pixels, `vpmovzxbw` + a broadcast per pixel); those shuffles, not the
//! multiplies, bounded it at ~15 GMAC/s on a Zen 3, where this loop has no shuffle at all:
//! per step of two `k`, 2 weight loads, 6 broadcast loads, 12 `vpmaddwd` and 12 `vpaddd`.
use super::tile::{MB, NR};
use std::arch::x86_64::*;

pub fn available() -> bool {
    std::is_x86_feature_detected!("avx2")
}

/// Safe entry for [`super::tile::Tile`]: only listed when [`available`] says so.
pub fn dot_tile(rows: &[u16], w: &[i16], k: usize, tile: &mut [[i32; MB]; NR]) {
    assert!(available());
    // SAFETY: the CPU has the features `dot` is compiled for (checked above).
    unsafe { dot(rows, w, k, tile) }
}

/// Pixels per pass and 8-channel vectors per pass: 6 × 2 accumulators, 2 weight vectors
/// and one broadcast input are 15 of AVX2's 16 registers.
const PP: usize = 6;
const GP: usize = 2;

#[target_feature(enable = "avx2")]
unsafe fn dot(rows: &[u16], w: &[i16], k: usize, tile: &mut [[i32; MB]; NR]) {
    assert!(rows.len() >= NR * k && w.len() >= MB * k && k.is_multiple_of(2));
    let rp = rows.as_ptr();
    let wp = w.as_ptr();
    for p0 in (0..NR).step_by(PP) {
        for c0 in (0..MB).step_by(8 * GP) {
            let mut acc = [[_mm256_setzero_si256(); GP]; PP];
            for k2 in 0..k / 2 {
                // SAFETY: the block holds MB·2 i16 per k2 (c0 + 8·GP ≤ MB); each row read
                // stays below NR·k (p0 + PP ≤ NR, 2·k2 + 2 ≤ k).
                unsafe {
                    let wk = wp.add(k2 * MB * 2 + c0 * 2);
                    let mut wv = [_mm256_setzero_si256(); GP];
                    for (g, v) in wv.iter_mut().enumerate() {
                        *v = _mm256_loadu_si256(wk.add(g * 16) as *const _);
                    }
                    for (j, a) in acc.iter_mut().enumerate() {
                        let x2 = (rp.add((p0 + j) * k + k2 * 2) as *const i32).read_unaligned();
                        let x = _mm256_set1_epi32(x2);
                        for (ag, wg) in a.iter_mut().zip(&wv) {
                            *ag = _mm256_add_epi32(*ag, _mm256_madd_epi16(x, *wg));
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
