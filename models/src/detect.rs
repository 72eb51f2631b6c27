//! Face detection outputs, decoded the way MediaPipe decodes BlazeFace: fixed SSD anchors,
//! a sigmoid score per anchor, box and six keypoints regressed from the anchor centre, a
//! threshold, then weighted non-maximum suppression (overlapping boxes are averaged by
//! score rather than dropped, which steadies the box from frame to frame).
//!
//! Pure arithmetic on the network's raw outputs, so the runtime that runs the network
//! (tract on the board) and any judge (onnxruntime in the tests) decode alike.
use serde::{Deserialize, Serialize};

use crate::prelude::*;

/// Values each anchor regresses: box centre x, y, width, height, then six (x, y) keypoints.
pub const REGRESSION_WIDTH: usize = 16;
/// Keypoints per face: right eye, left eye, nose tip, mouth centre, right ear, left ear.
pub const KEYPOINTS: usize = 6;

/// One BlazeFace variant: its square input size and its anchor layers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnchorSpec {
    /// Input width and height in pixels.
    pub input_size: u32,
    /// Per layer: the stride in input pixels and the anchors per cell.
    pub layers: Vec<(u32, u32)>,
}

impl AnchorSpec {
    /// Short range (selfie distance): 128 px input, 16x16 cells x 2 then 8x8 x 6.
    pub fn front_128() -> Self {
        Self {
            input_size: 128,
            layers: vec![(8, 2), (16, 6)],
        }
    }

    /// Longer range (smaller, farther faces): 256 px input, 16x16 x 2 then 8x8 x 6.
    pub fn back_256() -> Self {
        Self {
            input_size: 256,
            layers: vec![(16, 2), (32, 6)],
        }
    }

    /// The anchor centres, as fractions of the input, in the network's output order
    /// (layer by layer; in a layer row by row, then cell by cell, then anchor by anchor).
    pub fn anchors(&self) -> Vec<[f32; 2]> {
        let mut out = Vec::new();
        for &(stride, per_cell) in &self.layers {
            let cells = self.input_size.div_ceil(stride.max(1));
            for y in 0..cells {
                for x in 0..cells {
                    let c = [
                        (x as f32 + 0.5) / cells as f32,
                        (y as f32 + 0.5) / cells as f32,
                    ];
                    for _ in 0..per_cell {
                        out.push(c);
                    }
                }
            }
        }
        out
    }
}

/// How raw scores become faces.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DetectConfig {
    /// Minimum sigmoid score of a face. 0.5: on generated scenes of UTKFace training
    /// faces (`detect_eval --train`), back-256 found 98.8 % of faces of 64 px and up at
    /// 0.5 against 94.7 % at MediaPipe's 0.75, with no false face on empty scenes at either.
    pub min_score: f32,
    /// Boxes overlapping more than this (intersection over union) are one face.
    pub nms_iou: f32,
}

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            min_score: 0.5,
            nms_iou: 0.3,
        }
    }
}

/// An axis-aligned box: top-left corner and size.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct BoxF {
    /// Left edge.
    pub x: f32,
    /// Top edge.
    pub y: f32,
    /// Width.
    pub w: f32,
    /// Height.
    pub h: f32,
}

impl BoxF {
    /// Intersection over union; 0 for boxes without area.
    pub fn iou(&self, o: &BoxF) -> f32 {
        let ix = (self.x + self.w).min(o.x + o.w) - self.x.max(o.x);
        let iy = (self.y + self.h).min(o.y + o.h) - self.y.max(o.y);
        if ix <= 0.0 || iy <= 0.0 {
            return 0.0;
        }
        let inter = ix * iy;
        let union = self.w * self.h + o.w * o.h - inter;
        if union > 0.0 {
            inter / union
        } else {
            0.0
        }
    }

    /// The box's centre.
    pub fn center(&self) -> [f32; 2] {
        [self.x + self.w / 2.0, self.y + self.h / 2.0]
    }
}

/// One face: its box, score and keypoints, in whatever pixels the caller maps them to.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Face {
    /// The face's box.
    pub bbox: BoxF,
    /// Sigmoid score in `0..=1`.
    pub score: f32,
    /// Right eye, left eye, nose tip, mouth centre, right ear, left ear.
    pub keypoints: [[f32; 2]; KEYPOINTS],
}

impl Face {
    /// The face with every coordinate passed through `f` (x, y) and sizes scaled by
    /// `(sx, sy)`: from network input pixels to frame pixels.
    pub fn map(&self, f: impl Fn(f32, f32) -> (f32, f32), sx: f32, sy: f32) -> Face {
        let (x, y) = f(self.bbox.x, self.bbox.y);
        let mut keypoints = self.keypoints;
        for k in &mut keypoints {
            let (kx, ky) = f(k[0], k[1]);
            *k = [kx, ky];
        }
        Face {
            bbox: BoxF {
                x,
                y,
                w: self.bbox.w * sx,
                h: self.bbox.h * sy,
            },
            score: self.score,
            keypoints,
        }
    }
}

fn sigmoid(x: f32) -> f32 {
    // MediaPipe clips logits to ±100 before the sigmoid.
    1.0 / (1.0 + libm::expf(-x.clamp(-100.0, 100.0)))
}

/// Decodes raw outputs: `scores` one logit per anchor, `boxes` [`REGRESSION_WIDTH`] values
/// per anchor, both in anchor order. Faces come out in input pixels, best first, after
/// weighted non-maximum suppression. Mismatched lengths are an error.
pub fn decode_faces(
    anchors: &[[f32; 2]],
    input_size: u32,
    scores: &[f32],
    boxes: &[f32],
    config: &DetectConfig,
) -> crate::Result<Vec<Face>> {
    if scores.len() != anchors.len() || boxes.len() != anchors.len() * REGRESSION_WIDTH {
        return Err(crate::Error::InvalidContract(format!(
            "detector outputs: {} scores and {} box values for {} anchors (expected {} and {})",
            scores.len(),
            boxes.len(),
            anchors.len(),
            anchors.len(),
            anchors.len() * REGRESSION_WIDTH
        )));
    }
    let s = input_size as f32;
    let mut candidates: Vec<Face> = Vec::new();
    for (i, (&logit, a)) in scores.iter().zip(anchors).enumerate() {
        let score = sigmoid(logit);
        // NaN scores (a broken output) are no face.
        if score.is_nan() || score < config.min_score {
            continue;
        }
        let r = &boxes[i * REGRESSION_WIDTH..(i + 1) * REGRESSION_WIDTH];
        let (ax, ay) = (a[0] * s, a[1] * s);
        let (cx, cy, w, h) = (ax + r[0], ay + r[1], r[2], r[3]);
        if !(w > 0.0 && h > 0.0 && cx.is_finite() && cy.is_finite()) {
            continue;
        }
        let mut keypoints = [[0.0; 2]; KEYPOINTS];
        for (k, kp) in keypoints.iter_mut().enumerate() {
            *kp = [ax + r[4 + 2 * k], ay + r[5 + 2 * k]];
        }
        candidates.push(Face {
            bbox: BoxF {
                x: cx - w / 2.0,
                y: cy - h / 2.0,
                w,
                h,
            },
            score,
            keypoints,
        });
    }
    Ok(weighted_nms(candidates, config.nms_iou))
}

/// MediaPipe's weighted non-maximum suppression: the best remaining face and every face
/// overlapping it by more than `iou` become one face, whose box and keypoints are their
/// score-weighted mean and whose score is the best one's.
pub fn weighted_nms(mut faces: Vec<Face>, iou: f32) -> Vec<Face> {
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut out = Vec::new();
    while let Some(best) = faces.first().copied() {
        let (group, rest): (Vec<Face>, Vec<Face>) = faces
            .into_iter()
            .partition(|f| f.bbox.iou(&best.bbox) > iou);
        faces = rest;
        // The best face overlaps itself fully, so `group` is never empty; a face with no
        // area overlaps nothing and stands alone.
        if group.is_empty() {
            out.push(best);
            faces.retain(|f| *f != best);
            continue;
        }
        let total: f32 = group.iter().map(|f| f.score).sum();
        let mut merged = Face {
            bbox: BoxF::default(),
            score: best.score,
            keypoints: [[0.0; 2]; KEYPOINTS],
        };
        for f in &group {
            let w = f.score / total;
            merged.bbox.x += f.bbox.x * w;
            merged.bbox.y += f.bbox.y * w;
            merged.bbox.w += f.bbox.w * w;
            merged.bbox.h += f.bbox.h * w;
            for (m, k) in merged.keypoints.iter_mut().zip(&f.keypoints) {
                m[0] += k[0] * w;
                m[1] += k[1] * w;
            }
        }
        out.push(merged);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_and_back_have_896_anchors_in_output_order() {
        for spec in [AnchorSpec::front_128(), AnchorSpec::back_256()] {
            let a = spec.anchors();
            assert_eq!(a.len(), 896);
            assert_eq!(a[0], [0.5 / 16.0, 0.5 / 16.0]);
            assert_eq!(a[1], a[0], "two anchors per cell in the first layer");
            assert_eq!(a[2], [1.5 / 16.0, 0.5 / 16.0]);
            assert_eq!(a[512], [0.5 / 8.0, 0.5 / 8.0]);
            assert_eq!(a[517], a[512], "six per cell in the second");
            assert_eq!(a[895], [7.5 / 8.0, 7.5 / 8.0]);
        }
    }

    fn raw(anchors: &[[f32; 2]], faces: &[(usize, f32, [f32; 4])]) -> (Vec<f32>, Vec<f32>) {
        let mut scores = vec![-10.0; anchors.len()];
        let mut boxes = vec![0.0; anchors.len() * REGRESSION_WIDTH];
        for &(i, logit, r) in faces {
            scores[i] = logit;
            boxes[i * REGRESSION_WIDTH..i * REGRESSION_WIDTH + 4].copy_from_slice(&r);
        }
        (scores, boxes)
    }

    #[test]
    fn overlapping_boxes_merge_by_score_and_separate_ones_stay() {
        let spec = AnchorSpec::front_128();
        let a = spec.anchors();
        // Anchor 0 is centred at (4, 4) px; 528 at (8*... ) in the coarse layer.
        let (scores, boxes) = raw(
            &a,
            &[
                (0, 3.0, [20.0, 20.0, 30.0, 30.0]),
                (1, 1.5, [22.0, 20.0, 30.0, 30.0]),
                (600, 4.0, [0.0, 0.0, 20.0, 20.0]),
            ],
        );
        let faces = decode_faces(&a, 128, &scores, &boxes, &DetectConfig::default()).unwrap();
        assert_eq!(faces.len(), 2, "{faces:?}");
        assert!((faces[0].score - sigmoid(4.0)).abs() < 1e-6, "best first");
        let merged = faces[1];
        assert!((merged.score - sigmoid(3.0)).abs() < 1e-6);
        let (w0, w1) = (sigmoid(3.0), sigmoid(1.5));
        let want_cx = 4.0 + (20.0 * w0 + 22.0 * w1) / (w0 + w1);
        assert!((merged.bbox.center()[0] - want_cx).abs() < 1e-4);
        assert!((merged.bbox.w - 30.0).abs() < 1e-4);
    }

    #[test]
    fn low_scores_and_bad_boxes_give_nothing_and_wrong_sizes_are_errors() {
        let a = AnchorSpec::front_128().anchors();
        let (scores, boxes) = raw(
            &a,
            &[
                (3, -0.5, [0.0, 0.0, 10.0, 10.0]),
                (4, 5.0, [0.0, 0.0, -1.0, 9.0]),
            ],
        );
        let cfg = DetectConfig::default();
        assert!(decode_faces(&a, 128, &scores, &boxes, &cfg)
            .unwrap()
            .is_empty());
        let nan = vec![f32::NAN; a.len()];
        assert!(decode_faces(&a, 128, &nan, &boxes, &cfg)
            .unwrap()
            .is_empty());
        assert!(decode_faces(&a, 128, &scores[1..], &boxes, &cfg).is_err());
    }

    #[test]
    fn iou_of_boxes() {
        let a = BoxF {
            x: 0.0,
            y: 0.0,
            w: 10.0,
            h: 10.0,
        };
        let b = BoxF {
            x: 5.0,
            y: 0.0,
            w: 10.0,
            h: 10.0,
        };
        assert!((a.iou(&b) - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(a.iou(&BoxF { x: 20.0, ..a }), 0.0);
        assert_eq!(a.iou(&BoxF { w: 0.0, ..a }), 0.0);
        assert!((a.iou(&a) - 1.0).abs() < 1e-6);
    }
}
