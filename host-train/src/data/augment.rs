//! Augmentation on cached RGB8 pixels: horizontal flip, shift/scale crop, brightness and
//! contrast jitter. Deterministic for a given RNG.
use rand::Rng;
use serde::{Deserialize, Serialize};

/// What augmentation to apply.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AugmentConfig {
    /// Flip left-right with probability 0.5.
    pub flip: bool,
    /// Largest shift as a fraction of the side.
    pub max_shift: f32,
    /// Largest relative zoom in or out (0.1 = 0.9x..1.1x).
    pub max_scale: f32,
    /// Largest brightness change as a fraction of 255.
    pub brightness: f32,
    /// Largest relative contrast change.
    pub contrast: f32,
}

impl AugmentConfig {
    /// The training default.
    pub const DEFAULT: Self = Self {
        flip: true,
        max_shift: 0.06,
        max_scale: 0.08,
        brightness: 0.15,
        contrast: 0.15,
    };
    /// No augmentation.
    pub const NONE: Self = Self {
        flip: false,
        max_shift: 0.0,
        max_scale: 0.0,
        brightness: 0.0,
        contrast: 0.0,
    };

    /// Whether this config changes anything.
    pub fn is_identity(&self) -> bool {
        !self.flip
            && self.max_shift == 0.0
            && self.max_scale == 0.0
            && self.brightness == 0.0
            && self.contrast == 0.0
    }
}

/// Writes an augmented copy of `src` (HWC RGB8, `w` x `h`) into `dst`.
pub fn augment(
    src: &[u8],
    dst: &mut [u8],
    w: usize,
    h: usize,
    cfg: &AugmentConfig,
    rng: &mut impl Rng,
) {
    if cfg.is_identity() {
        dst.copy_from_slice(src);
        return;
    }
    let flip = cfg.flip && rng.random_bool(0.5);
    let sym = |rng: &mut dyn rand::RngCore, m: f32| {
        if m > 0.0 {
            rng.random_range(-m..=m)
        } else {
            0.0
        }
    };
    let scale = 1.0 + sym(rng, cfg.max_scale);
    let dx = sym(rng, cfg.max_shift) * w as f32;
    let dy = sym(rng, cfg.max_shift) * h as f32;
    let contrast = 1.0 + sym(rng, cfg.contrast);
    let bright = sym(rng, cfg.brightness) * 255.0;
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let at = |x: usize, y: usize, c: usize| src[(y * w + x) * 3 + c] as f32;
    for y in 0..h {
        // Inverse map: output pixel centre → source coordinates (bilinear, edges clamped).
        let sy = ((y as f32 + 0.5 - cy - dy) / scale + cy - 0.5).clamp(0.0, (h - 1) as f32);
        let y0 = sy.floor() as usize;
        let y1 = (y0 + 1).min(h - 1);
        let fy = sy - y0 as f32;
        for x in 0..w {
            let xo = if flip { w - 1 - x } else { x };
            let sx = ((xo as f32 + 0.5 - cx - dx) / scale + cx - 0.5).clamp(0.0, (w - 1) as f32);
            let x0 = sx.floor() as usize;
            let x1 = (x0 + 1).min(w - 1);
            let fx = sx - x0 as f32;
            for c in 0..3 {
                let top = at(x0, y0, c) * (1.0 - fx) + at(x1, y0, c) * fx;
                let bot = at(x0, y1, c) * (1.0 - fx) + at(x1, y1, c) * fx;
                let v = top * (1.0 - fy) + bot * fy;
                let v = (v - 128.0) * contrast + 128.0 + bright;
                dst[(y * w + x) * 3 + c] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn ramp(w: usize, h: usize) -> Vec<u8> {
        (0..w * h * 3)
            .map(|i| ((i / 3) % w * 255 / (w - 1)) as u8)
            .collect()
    }

    #[test]
    fn identity_copies() {
        let src = ramp(8, 4);
        let mut dst = vec![0; src.len()];
        augment(
            &src,
            &mut dst,
            8,
            4,
            &AugmentConfig::NONE,
            &mut ChaCha8Rng::seed_from_u64(0),
        );
        assert_eq!(src, dst);
    }

    #[test]
    fn flip_only_mirrors_rows() {
        let src = ramp(8, 4);
        let mut dst = vec![0; src.len()];
        let cfg = AugmentConfig {
            flip: true,
            ..AugmentConfig::NONE
        };
        // Find a seed that flips, then check the mirror exactly.
        let mut flipped = false;
        for seed in 0..8 {
            augment(
                &src,
                &mut dst,
                8,
                4,
                &cfg,
                &mut ChaCha8Rng::seed_from_u64(seed),
            );
            if dst != src {
                flipped = true;
                for y in 0..4 {
                    for x in 0..8 {
                        assert_eq!(dst[(y * 8 + x) * 3], src[(y * 8 + 7 - x) * 3]);
                    }
                }
            }
        }
        assert!(flipped);
    }

    #[test]
    fn same_seed_same_output() {
        let src = ramp(16, 16);
        let (mut a, mut b) = (vec![0; src.len()], vec![0; src.len()]);
        augment(
            &src,
            &mut a,
            16,
            16,
            &AugmentConfig::DEFAULT,
            &mut ChaCha8Rng::seed_from_u64(3),
        );
        augment(
            &src,
            &mut b,
            16,
            16,
            &AugmentConfig::DEFAULT,
            &mut ChaCha8Rng::seed_from_u64(3),
        );
        assert_eq!(a, b);
    }
}
