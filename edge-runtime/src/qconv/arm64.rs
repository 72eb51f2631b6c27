//! The arm64 tiles: `sdot` where the CPU has the dot-product extension (Cortex-A76, A78AE:
//! Raspberry Pi 5, Jetson Orin), `smull` + `sadalp` on plain NEON (Cortex-A72: Pi 4).
//!
//! Both multiply i8 by i8, so the input arrives as `q - 128` (see [`super::tile`]).
//!
//! Register budget (32 × 128-bit): the `sdot` micro-tile is 16 channels × 4 pixels, 16
//! accumulators + 4 weight vectors + 4 pixel vectors (each pixel vector holds 16
//! consecutive `k` of one row, so it feeds four steps through the lane index); the `smull`
//! micro-tile is 16 channels × 2 pixels, 16 accumulators (each holds 2 channels as pairwise
//! partial sums) + 4 weight vectors + 2 broadcast pixel words + the products in flight.
//! A 32 × 12 tile is 2 × 3 of the former and 2 × 6 of the latter.
use std::arch::aarch64::*;
use std::arch::asm;
use std::ptr::read_unaligned;

use super::tile::{Acc, Window, MB, NR};

pub fn dotprod_available() -> bool {
    std::arch::is_aarch64_feature_detected!("dotprod")
}

/// Safe entry: NEON is part of the aarch64 baseline.
pub fn smull_tile(win: &Window<u8>, w: &[i8], tile: &mut Acc) {
    win.check(w);
    // SAFETY: the window's reads are in bounds (its `Patches` and the check above); NEON is always present.
    unsafe { smull(win, w.as_ptr(), tile) }
}

/// Safe entry: only listed by [`super::tile::Tile::available`] when [`dotprod_available`].
pub fn sdot_tile(win: &Window<u8>, w: &[i8], tile: &mut Acc) {
    win.check(w);
    assert!(dotprod_available());
    // SAFETY: the window's reads are in bounds (its `Patches` and the check above), the CPU has the
    // dot-product extension.
    unsafe { sdot(win, w.as_ptr(), tile) }
}

/// One step of 4 `k` for 16 channels × 2 pixels. A 16-byte weight vector holds 4 channels
/// × 4 `k`; the pixel's 4 bytes are broadcast to all four words, so `smull` (low half,
/// channels 0-1) and `smull2` (high half, channels 2-3) give 8 exact i16 products each
/// (|i8 · i8| ≤ 2^14, no `smlal` folding: two products of -128 · -128 would overflow i16),
/// and `sadalp` adds neighbouring pairs into int32 lanes `(c k01, c k23, c+1 k01, c+1 k23)`.
#[target_feature(enable = "neon")]
unsafe fn smull(win: &Window<u8>, wp: *const i8, tile: &mut Acc) {
    let (ip, pixels) = (win.input().as_ptr(), win.pixels());
    for half in 0..2 {
        for j0 in (0..NR).step_by(2) {
            let mut acc = [[vdupq_n_s32(0); 8]; 2];
            // SAFETY (whole block): `Patches::new` and `Window::check`: every pixel's tap run lies in the
            // input, and the taps' `k / 4` steps of MB·4 weight bytes lie in the block.
            unsafe {
                let mut w = wp.add(half * 64);
                for &t in win.taps() {
                    let r0 = ip.add(pixels[j0] + t);
                    let r1 = ip.add(pixels[j0 + 1] + t);
                    for c in (0..win.run()).step_by(4) {
                        let wv = [
                            vld1q_s8(w),
                            vld1q_s8(w.add(16)),
                            vld1q_s8(w.add(32)),
                            vld1q_s8(w.add(48)),
                        ];
                        w = w.add(MB * 4);
                        let x = [
                            read_unaligned(r0.add(c) as *const i32),
                            read_unaligned(r1.add(c) as *const i32),
                        ];
                        for (a, &x) in acc.iter_mut().zip(&x) {
                            let x = vreinterpretq_s8_s32(vdupq_n_s32(x));
                            let xl = vget_low_s8(x);
                            for (v, &wv) in wv.iter().enumerate() {
                                a[2 * v] = vpadalq_s16(a[2 * v], vmull_s8(vget_low_s8(wv), xl));
                                a[2 * v + 1] = vpadalq_s16(a[2 * v + 1], smull2(wv, x));
                            }
                        }
                    }
                }
                for (p, a) in acc.iter().enumerate() {
                    let t = &mut tile[j0 + p][half * 16..half * 16 + 16];
                    for v in 0..4 {
                        vst1q_s32(
                            t.as_mut_ptr().add(4 * v),
                            vpaddq_s32(a[2 * v], a[2 * v + 1]),
                        );
                    }
                }
            }
        }
    }
}

/// `smull2`: the high halves' products. Written out because LLVM sees that `x` is a
/// broadcast, whose high half equals its low half, and rewrites `vmull_high_s8(w, x)` as
/// `smull(ext(w), low(x))`: an `ext` per product that costs a NEON slot (llvm-mca on the
/// A72: 19 cycles per step instead of 17).
#[inline(always)]
unsafe fn smull2(w: int8x16_t, x: int8x16_t) -> int16x8_t {
    let p: int16x8_t;
    // SAFETY: register-only arithmetic; NEON is part of the aarch64 baseline.
    unsafe {
        asm!(
            "smull2 {p:v}.8h, {w:v}.16b, {x:v}.16b",
            p = lateout(vreg) p,
            w = in(vreg) w,
            x = in(vreg) x,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    p
}

/// `acc += w · x.4b[L]`: four int32 lanes, each the dot product of 4 weight bytes with the
/// 4 bytes of `x`'s lane `L`. Inline assembly because the dot-product intrinsics are not
/// stable Rust.
macro_rules! sdot_lane {
    ($acc:expr, $w:expr, $x:expr, $lane:literal) => {
        asm!(
            concat!("sdot {a:v}.4s, {w:v}.16b, {x:v}.4b[", $lane, "]"),
            a = inout(vreg) $acc,
            w = in(vreg) $w,
            x = in(vreg) $x,
            options(pure, nomem, nostack, preserves_flags),
        )
    };
}

/// The four weight vectors (16 channels) of one `k / 4` step, each multiplied into the four
/// pixels' accumulators by `x`'s lane `$lane`.
macro_rules! sdot_step {
    ($acc:ident, $w:expr, $x:ident, $lane:literal) => {{
        let w = $w;
        let wv = [
            vld1q_s8(w),
            vld1q_s8(w.add(16)),
            vld1q_s8(w.add(32)),
            vld1q_s8(w.add(48)),
        ];
        for (a, &x) in $acc.iter_mut().zip(&$x) {
            for (a, &wv) in a.iter_mut().zip(&wv) {
                sdot_lane!(*a, wv, x, $lane);
            }
        }
    }};
}

#[target_feature(enable = "neon,dotprod")]
unsafe fn sdot(win: &Window<u8>, wp: *const i8, tile: &mut Acc) {
    let (ip, pixels) = (win.input().as_ptr(), win.pixels());
    let (k16, rest) = (win.run() / 16, (win.run() % 16) / 4);
    for half in 0..2 {
        for j0 in (0..NR).step_by(4) {
            let mut acc = [[vdupq_n_s32(0); 4]; 4];
            // SAFETY (whole block): `Patches::new` and `Window::check`: every pixel's tap run lies in the
            // input (16-byte reads end at 16·k16 ≤ run, 4-byte ones at run), and the taps'
            // `k / 4` steps of MB·4 weight bytes lie in the block.
            unsafe {
                let mut w0 = wp.add(half * 64);
                for &t in win.taps() {
                    let row = |p: usize| ip.add(pixels[j0 + p] + t) as *const i8;
                    for i in 0..k16 {
                        let x = [0, 1, 2, 3].map(|p| vld1q_s8(row(p).add(16 * i)));
                        sdot_step!(acc, w0, x, 0);
                        sdot_step!(acc, w0.add(MB * 4), x, 1);
                        sdot_step!(acc, w0.add(2 * MB * 4), x, 2);
                        sdot_step!(acc, w0.add(3 * MB * 4), x, 3);
                        w0 = w0.add(4 * MB * 4);
                    }
                    for r in 0..rest {
                        let x = [0, 1, 2, 3].map(|p| {
                            vreinterpretq_s8_s32(vdupq_n_s32(read_unaligned(
                                row(p).add(16 * k16 + 4 * r) as *const i32,
                            )))
                        });
                        sdot_step!(acc, w0, x, 0);
                        w0 = w0.add(MB * 4);
                    }
                }
                for (p, a) in acc.iter().enumerate() {
                    let t = &mut tile[j0 + p][half * 16..half * 16 + 16];
                    for (v, &a) in a.iter().enumerate() {
                        vst1q_s32(t.as_mut_ptr().add(4 * v), a);
                    }
                }
            }
        }
    }
}
