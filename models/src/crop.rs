//! From a detected face to the crop the HydraNet was trained on.
//!
//! UTKFace's aligned crops put the eyes level and the eyes, nose and mouth at nearly fixed
//! places. BlazeFace gives an axis-aligned box and six keypoints. [`CropRule`] carries a
//! template of where those keypoints sit in an aligned crop onto the detected ones, which
//! fixes the crop's centre, size and turn together. The template of [`CropRule::UTKFACE`]
//! was measured by the `detect_eval` example (`--fit`) on the UTKFace training split: the
//! detector run on aligned crops pasted in scenes, each crop itself the target. Fitting
//! the crop to the box and the eye line instead was measured worse (docs/measurements.md).
use serde::{Deserialize, Serialize};

use crate::detect::Face;

/// A rectangle of the frame turned by `angle` around its centre: the part of a frame one
/// face's network input is cut from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Crop {
    /// Centre, frame pixels.
    pub cx: f32,
    /// Centre, frame pixels.
    pub cy: f32,
    /// Width, frame pixels (along the face's own x axis).
    pub width: f32,
    /// Height, frame pixels.
    pub height: f32,
    /// Radians: the face's x axis is the frame's x axis turned by this much (positive:
    /// clockwise on screen, y pointing down).
    pub angle: f32,
}

impl Crop {
    /// The frame point at crop fractions `(u, v)` (0..1 across and down the crop).
    pub fn point(&self, u: f32, v: f32) -> (f32, f32) {
        let (s, c) = libm::sincosf(self.angle);
        let (lx, ly) = ((u - 0.5) * self.width, (v - 0.5) * self.height);
        (self.cx + c * lx - s * ly, self.cy + s * lx + c * ly)
    }
}

/// How a detected face's keypoints become its [`Crop`]: where the right eye, left eye, nose
/// tip and mouth centre sit in an aligned crop (fractions of its width and height). The
/// crop is the similarity transform (scale, turn, shift; least squares) that carries these
/// template points onto the detected ones, the way face pipelines align to a five-point
/// template. The ears are left out: BlazeFace places them poorly on a turned head.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CropRule {
    /// Right eye, left eye, nose tip, mouth centre, in crop fractions.
    pub template: [[f32; 2]; TEMPLATE_POINTS],
}

/// Keypoints the template uses (BlazeFace's first four).
pub const TEMPLATE_POINTS: usize = 4;

impl CropRule {
    /// UTKFace's aligned framing: the medians of BlazeFace back-256's keypoints on 300
    /// aligned crops of the UTKFace training split (`detect_eval --fit`,
    /// docs/measurements.md "Face crops").
    pub const UTKFACE: CropRule = CropRule {
        template: [
            [0.2979, 0.3018],
            [0.6900, 0.3062],
            [0.4928, 0.5215],
            [0.4933, 0.7119],
        ],
    };

    /// The face's eye line angle: from its right eye (on the image's left) to its left eye.
    pub fn eye_angle(face: &Face) -> f32 {
        let [r, l] = [face.keypoints[0], face.keypoints[1]];
        libm::atan2f(l[1] - r[1], l[0] - r[0])
    }

    /// The crop for `face`, with the input's `aspect` (width / height): the template's
    /// unit square carried onto the face. The template is fitted on square crops, so a
    /// non-square input keeps the height and widens (or narrows) around the same centre.
    pub fn crop(&self, face: &Face, aspect: f32) -> Crop {
        let n = TEMPLATE_POINTS as f32;
        let src = &self.template;
        let dst = &face.keypoints[..TEMPLATE_POINTS];
        let mean = |p: &[[f32; 2]]| {
            let (mut x, mut y) = (0.0, 0.0);
            for q in p {
                x += q[0];
                y += q[1];
            }
            [x / n, y / n]
        };
        let (ms, md) = (mean(src), mean(dst));
        // Least squares for q = s R p + t (Umeyama in 2-D): a = s cos, b = s sin.
        let (mut a, mut b, mut norm) = (0.0, 0.0, 0.0);
        for (p, q) in src.iter().zip(dst) {
            let (px, py) = (p[0] - ms[0], p[1] - ms[1]);
            let (qx, qy) = (q[0] - md[0], q[1] - md[1]);
            a += px * qx + py * qy;
            b += px * qy - py * qx;
            norm += px * px + py * py;
        }
        let (a, b) = if norm > 0.0 {
            (a / norm, b / norm)
        } else {
            (0.0, 0.0)
        };
        let scale = libm::sqrtf(a * a + b * b);
        // The template's centre (0.5, 0.5), carried over.
        let (dx, dy) = (0.5 - ms[0], 0.5 - ms[1]);
        Crop {
            cx: md[0] + a * dx - b * dy,
            cy: md[1] + b * dx + a * dy,
            width: scale * aspect,
            height: scale,
            angle: libm::atan2f(b, a),
        }
    }
}

impl Default for CropRule {
    fn default() -> Self {
        Self::UTKFACE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{BoxF, KEYPOINTS};

    const RULE: CropRule = CropRule {
        template: [[0.35, 0.4], [0.65, 0.4], [0.5, 0.55], [0.5, 0.7]],
    };

    /// A face whose keypoints sit exactly where the template puts them in `crop`.
    fn face_in(crop: &Crop) -> Face {
        let mut keypoints = [[0.0; 2]; KEYPOINTS];
        for (k, t) in keypoints.iter_mut().zip(&RULE.template) {
            let (x, y) = crop.point(t[0], t[1]);
            *k = [x, y];
        }
        Face {
            bbox: BoxF::default(),
            score: 0.9,
            keypoints,
        }
    }

    #[test]
    fn the_crop_whose_template_points_are_the_keypoints_comes_back() {
        for angle in [0.0, 0.3, -0.7, 3.0] {
            let want = Crop {
                cx: 120.0,
                cy: 80.0,
                width: 90.0,
                height: 90.0,
                angle,
            };
            let got = RULE.crop(&face_in(&want), 1.0);
            for (g, w) in [
                (got.cx, want.cx),
                (got.cy, want.cy),
                (got.width, want.width),
                (got.height, want.height),
                (got.angle, want.angle),
            ] {
                assert!((g - w).abs() < 1e-3, "{got:?} vs {want:?}");
            }
            assert!((CropRule::eye_angle(&face_in(&want)) - angle).abs() < 1e-4);
        }
    }

    #[test]
    fn the_input_aspect_sets_the_width_and_a_point_face_has_no_area() {
        let want = Crop {
            cx: 10.0,
            cy: 10.0,
            width: 40.0,
            height: 40.0,
            angle: 0.0,
        };
        let c = RULE.crop(&face_in(&want), 0.5);
        assert!((c.width * 2.0 - c.height).abs() < 1e-4);
        let mut dot = face_in(&want);
        dot.keypoints = [[5.0, 5.0]; KEYPOINTS];
        let c = RULE.crop(&dot, 1.0);
        assert_eq!(c.height, 0.0);
        assert!(c.cx.is_finite() && c.cy.is_finite());
    }
}
