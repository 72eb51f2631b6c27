//! A synthetic test scene: colour bars, a moving marker and a drawn face in the middle whose
//! skin, hair and size change every few seconds (so the answers visibly change).
//!
//! The scenes are made in YUYV, the format most USB cameras send, and every frame goes
//! through the same YUYV → RGB conversion as a camera frame: the pattern exercises (and
//! benchmarks) the whole capture path without a device.
use std::time::{Duration, Instant};

use super::{convert, Frame, FrameSource, SourceError, SourceOptions};

/// How long each scene is shown.
const SCENE_PERIOD: Duration = Duration::from_secs(4);

/// The pattern source.
pub struct Pattern {
    width: u32,
    height: u32,
    fps: f32,
    scenes: Vec<Vec<u8>>,
    scratch: Vec<u8>,
    start: Instant,
    next: Option<Instant>,
    count: u64,
}

struct Look {
    skin: [u8; 3],
    hair: [u8; 3],
    face_scale: f32,
}

const LOOKS: [Look; 3] = [
    Look {
        skin: [224, 182, 150],
        hair: [60, 40, 25],
        face_scale: 0.32,
    },
    Look {
        skin: [120, 80, 55],
        hair: [20, 15, 10],
        face_scale: 0.28,
    },
    Look {
        skin: [205, 165, 120],
        hair: [200, 200, 205],
        face_scale: 0.35,
    },
];

fn scene(width: u32, height: u32, look: &Look) -> Vec<u8> {
    const BARS: [[u8; 3]; 7] = [
        [192, 192, 192],
        [192, 192, 0],
        [0, 192, 192],
        [0, 192, 0],
        [192, 0, 192],
        [192, 0, 0],
        [0, 0, 192],
    ];
    let (w, h) = (width as f32, height as f32);
    let (cx, cy) = (w / 2.0, h / 2.0);
    let r = look.face_scale * h;
    let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height {
        for x in 0..width {
            let (fx, fy) = (x as f32, y as f32);
            let bar = BARS[(x as usize * BARS.len()) / width as usize];
            // Face: an ellipse; hair: the ellipse's top third, a bit wider; eyes and mouth.
            let (dx, dy) = ((fx - cx) / (0.78 * r), (fy - cy) / r);
            let d = dx * dx + dy * dy;
            let eye = [(-0.35f32, -0.15f32), (0.35, -0.15)]
                .iter()
                .any(|(ex, ey)| (dx - ex).powi(2) + (dy - ey).powi(2) < 0.012);
            let mouth = dy > 0.35 && dy < 0.45 && dx.abs() < 0.3;
            let c = if d < 1.0 && eye {
                [30, 30, 30]
            } else if d < 1.0 && mouth {
                [150, 60, 60]
            } else if d < 1.0 && dy < -0.55 || (d < 1.25 && dy < -0.35 && d >= 1.0) {
                look.hair
            } else if d < 1.0 {
                look.skin
            } else if fy < h / 8.0 || fy > h * 7.0 / 8.0 {
                bar
            } else {
                [90, 100, 110]
            };
            rgb.extend_from_slice(&c);
        }
    }
    convert::rgb_to_yuyv(&rgb, width, height)
}

impl Pattern {
    /// A pattern of the requested size, paced at `fps` (0 = as fast as asked).
    pub fn new(opts: &SourceOptions) -> Self {
        // YUYV pairs pixels: keep the width even.
        let width = (opts.width.max(2) + 1) & !1;
        let height = opts.height.max(2);
        Self {
            width,
            height,
            fps: opts.fps,
            scenes: LOOKS.iter().map(|l| scene(width, height, l)).collect(),
            scratch: Vec::new(),
            start: Instant::now(),
            next: None,
            count: 0,
        }
    }
}

impl FrameSource for Pattern {
    fn describe(&self) -> String {
        format!(
            "pattern (YUYV {}x{}{})",
            self.width,
            self.height,
            if self.fps > 0.0 {
                format!(" @{}", self.fps)
            } else {
                " unpaced".into()
            }
        )
    }

    fn is_live(&self) -> bool {
        self.fps > 0.0
    }

    fn next_frame(&mut self, frame: &mut Frame) -> Result<(), SourceError> {
        super::pace(&mut self.next, self.fps);
        let t0 = Instant::now();
        let elapsed = self.start.elapsed().as_secs_f64();
        let index = (elapsed / SCENE_PERIOD.as_secs_f64()) as usize % self.scenes.len();
        self.scratch.clear();
        self.scratch.extend_from_slice(&self.scenes[index]);
        // A marker that moves along the top bars, one step per frame: a frozen picture
        // is visible at a glance.
        let stride = self.width as usize * 2;
        let side = (self.height / 16).max(2) as usize & !1;
        let x0 = ((self.count as usize * 8) % stride.saturating_sub(side * 2).max(1)) & !3;
        for line in self
            .scratch
            .chunks_exact_mut(stride)
            .skip(side / 2)
            .take(side)
        {
            for px in line[x0..(x0 + side * 2).min(stride)].chunks_exact_mut(2) {
                px[0] = 235;
                px[1] = 128;
            }
        }
        self.count += 1;
        let (w, h) = (self.width, self.height);
        let rgb = frame.resize(w, h);
        convert::yuyv_to_rgb(&self.scratch, w, h, stride, rgb).map_err(|e| SourceError::Fatal {
            source_name: "pattern".into(),
            reason: e.to_string(),
        })?;
        frame.captured = Instant::now();
        frame.capture_time = t0.elapsed();
        frame.label = Some(format!("scene {index}"));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_size_asked_and_move() {
        let opts = SourceOptions {
            width: 63,
            height: 40,
            fps: 0.0,
            ..SourceOptions::default()
        };
        let mut p = Pattern::new(&opts);
        let mut a = Frame::default();
        let mut b = Frame::default();
        p.next_frame(&mut a).unwrap();
        p.next_frame(&mut b).unwrap();
        assert_eq!((a.width, a.height), (64, 40));
        assert_eq!(a.rgb.len(), 64 * 40 * 3);
        assert_ne!(a.rgb, b.rgb, "the marker moves between frames");
        assert!(p.describe().contains("64x40"));
    }
}
