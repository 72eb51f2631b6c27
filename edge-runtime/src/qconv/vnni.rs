//! The x86 tile: AVX-512 VNNI (`vpdpbusd`, 64 u8·i8 products per instruction).
use super::tile::{Acc, Window, MB, NR};
use std::arch::x86_64::*;

pub fn available() -> bool {
    std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vnni")
}

/// Safe entry for [`super::tile::Tile`]: only listed when [`available`] says so.
pub fn dot_tile(win: &Window<u8>, w: &[i8], tile: &mut Acc) {
    win.check(w);
    assert!(available());
    // SAFETY: the window's reads are in bounds (its `Patches` and the check above) and the
    // CPU has the features `dot` is compiled for.
    unsafe { dot(win, w, tile) }
}

/// 24 accumulators (12 pixels × 2 vectors of 16 channels) stay in registers over the
/// whole patch; each step of 4 `k` loads two weight vectors and broadcasts 4 input bytes
/// per pixel, read where the pixel's tap lies in the NHWC input.
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn dot(win: &Window<u8>, w: &[i8], tile: &mut Acc) {
    let mut acc = [[_mm512_setzero_si512(); 2]; NR];
    let (ip, pixels) = (win.input().as_ptr(), win.pixels());
    let mut wp = w.as_ptr();
    for &t in win.taps() {
        // SAFETY (whole block): every pixel's tap run lies in the input (a `Window` is
        // made only from checked `Patches`), and the taps' `k / 4` steps of MB·4 weight
        // bytes lie in `w` (`Window::check`).
        unsafe {
            let px: [*const u8; NR] = std::array::from_fn(|j| ip.add(pixels[j] + t));
            for c in (0..win.run()).step_by(4) {
                let w0 = _mm512_loadu_si512(wp as *const _);
                let w1 = _mm512_loadu_si512(wp.add(64) as *const _);
                wp = wp.add(MB * 4);
                for (a, p) in acc.iter_mut().zip(&px) {
                    let x = _mm512_set1_epi32((p.add(c) as *const i32).read_unaligned());
                    a[0] = _mm512_dpbusd_epi32(a[0], x, w0);
                    a[1] = _mm512_dpbusd_epi32(a[1], x, w1);
                }
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
