//! The x86 tile for CPUs without VNNI (AVX2 only: Zen 1-3 EPYC, Haswell to Skylake client).
//!
//! AVX2's only u8·i8 product, `vpmaddubsw`, sums pairs into a *saturating* int16, which is
//! not exact for 8-bit codes (255·127 + 255·127 overflows; onnxruntime's u8s8 path on these
//! CPUs differs from the exact sums for this reason, docs/measurements.md). This tile widens
//! both operands to int16 and uses `vpmaddwd`, whose pair sums land in int32 exactly: half
//! the products per instruction of `vpmaddubsw`, but the same answers as every other tile.
//!
//! The packed block's 4 consecutive `k` per channel widen to `[c0k0..c0k3, c1k0.., c3k3]`
//! (16 × i16, 4 channels); `vpmaddwd` against the broadcast `[x0, x1, x2, x3]` leaves each
//! channel's sum in two adjacent int32 lanes (k0+k1, k2+k3), which are added once at the end.
use super::tile::{MB, NR};
use std::arch::x86_64::*;

pub fn available() -> bool {
    std::is_x86_feature_detected!("avx2")
}

/// Safe entry for [`super::tile::Tile`]: only listed when [`available`] says so.
pub fn dot_tile(rows: &[u8], w: &[i8], k: usize, tile: &mut [[i32; MB]; NR]) {
    assert!(available());
    // SAFETY: the CPU has the features `dot` is compiled for (checked above).
    unsafe { dot(rows, w, k, tile) }
}

/// Pixels per pass and 4-channel groups per pass: 2 × 4 accumulators, 4 weight vectors and
/// 2 inputs fit AVX2's 16 registers with room for the address arithmetic.
const PP: usize = 2;
const GP: usize = 4;

#[target_feature(enable = "avx2")]
unsafe fn dot(rows: &[u8], w: &[i8], k: usize, tile: &mut [[i32; MB]; NR]) {
    assert!(rows.len() >= NR * k && w.len() >= MB * k && k.is_multiple_of(4));
    let rp = rows.as_ptr();
    let wp = w.as_ptr();
    for p0 in (0..NR).step_by(PP) {
        for c0 in (0..MB).step_by(4 * GP) {
            let mut acc = [[_mm256_setzero_si256(); GP]; PP];
            for k4 in 0..k / 4 {
                // SAFETY: the block holds MB·4 bytes per k4 (c0 + 4·GP ≤ MB); each row
                // read stays below NR·k (p0 + PP ≤ NR, k4·4 + 4 ≤ k).
                unsafe {
                    let wk = wp.add(k4 * MB * 4 + c0 * 4);
                    let mut wv = [_mm256_setzero_si256(); GP];
                    for (g, v) in wv.iter_mut().enumerate() {
                        *v = _mm256_cvtepi8_epi16(_mm_loadu_si128(wk.add(g * 16) as *const _));
                    }
                    for (j, a) in acc.iter_mut().enumerate() {
                        let x4 = (rp.add((p0 + j) * k + k4 * 4) as *const i32).read_unaligned();
                        let x = _mm256_broadcastq_epi64(_mm_cvtepu8_epi16(_mm_cvtsi32_si128(x4)));
                        for (ag, wg) in a.iter_mut().zip(&wv) {
                            *ag = _mm256_add_epi32(*ag, _mm256_madd_epi16(x, *wg));
                        }
                    }
                }
            }
            for (j, a) in acc.iter().enumerate() {
                for (g, ag) in a.iter().enumerate() {
                    let mut lanes = [0i32; 8];
                    // SAFETY: 8 i32 = one 32-byte store.
                    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut _, *ag) };
                    let out = &mut tile[p0 + j][c0 + g * 4..c0 + g * 4 + 4];
                    for (o, pair) in out.iter_mut().zip(lanes.chunks_exact(2)) {
                        *o = pair[0] + pair[1];
                    }
                }
            }
        }
    }
}
