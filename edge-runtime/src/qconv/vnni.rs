//! The x86 tile: AVX-512 VNNI (`vpdpbusd`, 64 u8·i8 products per instruction).
use super::tile::{MB, NR};
use std::arch::x86_64::*;

pub fn available() -> bool {
    std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vnni")
}

/// Safe entry for [`super::tile::Tile`]: only listed when [`available`] says so.
pub fn dot_tile(rows: &[u8], w: &[i8], k: usize, tile: &mut [[i32; MB]; NR]) {
    assert!(available());
    // SAFETY: the CPU has the features `tile` is compiled for (checked above).
    unsafe { dot(rows, w, k, tile) }
}

/// 24 accumulators (12 pixels × 2 vectors of 16 channels) stay in registers over the
/// whole `k` loop; each step loads two weight vectors and broadcasts 4 input bytes per
/// pixel.
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn dot(rows: &[u8], w: &[i8], k: usize, tile: &mut [[i32; MB]; NR]) {
    assert!(rows.len() >= NR * k && w.len() >= MB * k && k.is_multiple_of(4));
    let mut acc = [[_mm512_setzero_si512(); 2]; NR];
    let rp = rows.as_ptr();
    let wp = w.as_ptr();
    for k4 in 0..k / 4 {
        // SAFETY: k4·MB·4 + 64 + 64 ≤ MB·k = w.len(); rows reads end at NR·k.
        unsafe {
            let w0 = _mm512_loadu_si512(wp.add(k4 * MB * 4) as *const _);
            let w1 = _mm512_loadu_si512(wp.add(k4 * MB * 4 + 64) as *const _);
            for (j, a) in acc.iter_mut().enumerate() {
                let x = (rp.add(j * k + k4 * 4) as *const i32).read_unaligned();
                let x = _mm512_set1_epi32(x);
                a[0] = _mm512_dpbusd_epi32(a[0], x, w0);
                a[1] = _mm512_dpbusd_epi32(a[1], x, w1);
            }
        }
    }
    for (t, a) in tile.iter_mut().zip(&acc) {
        // SAFETY: each tile row holds 32 i32, two 64-byte stores.
        unsafe {
            _mm512_storeu_si512(t.as_mut_ptr() as *mut _, a[0]);
            _mm512_storeu_si512(t.as_mut_ptr().add(16) as *mut _, a[1]);
        }
    }
}
