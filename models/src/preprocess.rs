//! The one preprocessing path: image → resized RGB8 → normalised CHW `f32`.
//!
//! Training caches the resized RGB8 pixels ([`resize_rgb`]) and normalises augmented copies
//! with [`normalize_hwc_into`]; the edge and the export fixtures call [`preprocess`], which is
//! the same two steps. Nothing else in the project turns pixels into network input.
#[cfg(feature = "std")]
use image::{imageops::FilterType, DynamicImage, RgbImage};
use serde::{Deserialize, Serialize};

use crate::{prelude::*, Error, Result};

/// ImageNet channel means, the seed's normalisation.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Resampling filter used to bring an image to the input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeFilter {
    /// Nearest neighbour.
    Nearest,
    /// Bilinear (the `image` crate's triangle filter).
    Bilinear,
    /// Catmull-Rom bicubic.
    Bicubic,
    /// Lanczos with window 3.
    Lanczos3,
}

#[cfg(feature = "std")]
impl ResizeFilter {
    fn filter_type(self) -> FilterType {
        match self {
            Self::Nearest => FilterType::Nearest,
            Self::Bilinear => FilterType::Triangle,
            Self::Bicubic => FilterType::CatmullRom,
            Self::Lanczos3 => FilterType::Lanczos3,
        }
    }
}

/// How the network input is made from an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessSpec {
    /// Input width in pixels.
    pub width: u32,
    /// Input height in pixels.
    pub height: u32,
    /// Channel order of the input tensor; always `RGB` in this version.
    pub channel_order: String,
    /// Tensor layout: `NCHW` (planar, a HydraNet's contract) or `NHWC` (interleaved, the
    /// face detector's input).
    pub layout: String,
    /// Per-channel mean subtracted after scaling pixels to `[0, 1]`.
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by after the mean.
    pub std: [f32; 3],
    /// Filter used when the image is not already at the input size (the whole image is
    /// stretched to the input size, as the aligned UTKFace crops expect).
    pub resize: ResizeFilter,
}

impl PreprocessSpec {
    /// The default: square input of `size` pixels, ImageNet normalisation, bilinear resize.
    pub fn new(size: u32) -> Self {
        Self {
            width: size,
            height: size,
            channel_order: "RGB".into(),
            layout: "NCHW".into(),
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            resize: ResizeFilter::Bilinear,
        }
    }

    /// The face detector's input (MediaPipe BlazeFace): square `size`, NHWC, RGB scaled
    /// to [-1, 1], bilinear resize.
    pub fn blazeface(size: u32) -> Self {
        Self {
            layout: "NHWC".into(),
            mean: [0.5; 3],
            std: [0.5; 3],
            ..Self::new(size)
        }
    }

    /// Number of `f32` values one image becomes.
    pub fn input_len(&self) -> usize {
        3 * self.width as usize * self.height as usize
    }

    /// Input shape for a batch of `n`: `[n, 3, height, width]`.
    pub fn input_shape(&self, n: usize) -> [usize; 4] {
        [n, 3, self.height as usize, self.width as usize]
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.width == 0 || self.height == 0 {
            return Err(Error::InvalidContract("input size must be non-zero".into()));
        }
        if self.channel_order != "RGB" || self.layout != "NCHW" {
            return Err(Error::InvalidContract(format!(
                "unsupported channel order {} / layout {} (RGB / NCHW only)",
                self.channel_order, self.layout
            )));
        }
        if self.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(Error::InvalidContract("std must be positive".into()));
        }
        Ok(())
    }
}

#[cfg(feature = "std")]
/// Converts any image to RGB8 at the spec's input size (grayscale is replicated, alpha
/// dropped). An image already at the size is only converted, never resampled.
pub fn resize_rgb(img: &DynamicImage, spec: &PreprocessSpec) -> RgbImage {
    let rgb = match img {
        DynamicImage::ImageRgb8(rgb) => std::borrow::Cow::Borrowed(rgb),
        other => std::borrow::Cow::Owned(other.to_rgb8()),
    };
    if rgb.width() == spec.width && rgb.height() == spec.height {
        rgb.into_owned()
    } else {
        image::imageops::resize(
            rgb.as_ref(),
            spec.width,
            spec.height,
            spec.resize.filter_type(),
        )
    }
}

/// Normalises interleaved RGB8 pixels (`height * width * 3`, row-major) into `f32`
/// `(p / 255 - mean[c]) / std[c]`: planar CHW, or interleaved HWC for an `NHWC` spec.
pub fn normalize_hwc_into(pixels: &[u8], spec: &PreprocessSpec, out: &mut [f32]) -> Result<()> {
    let plane = spec.width as usize * spec.height as usize;
    if pixels.len() != plane * 3 {
        return Err(Error::BufferSize {
            expected: plane * 3,
            got: pixels.len(),
        });
    }
    if out.len() != plane * 3 {
        return Err(Error::BufferSize {
            expected: plane * 3,
            got: out.len(),
        });
    }
    let scale = spec.std.map(|s| 1.0 / (255.0 * s));
    let shift = [0, 1, 2].map(|c| spec.mean[c] / spec.std[c]);
    if spec.layout == "NHWC" {
        for (i, (v, &p)) in out.iter_mut().zip(pixels).enumerate() {
            let c = i % 3;
            *v = p as f32 * scale[c] - shift[c];
        }
        return Ok(());
    }
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (i, px) in pixels.chunks_exact(3).enumerate() {
        r[i] = px[0] as f32 * scale[0] - shift[0];
        g[i] = px[1] as f32 * scale[1] - shift[1];
        b[i] = px[2] as f32 * scale[2] - shift[2];
    }
    Ok(())
}

#[cfg(feature = "std")]
/// The preprocessing function: any image → normalised CHW `f32` of the spec's size.
pub fn preprocess(img: &DynamicImage, spec: &PreprocessSpec) -> Vec<f32> {
    let mut out = vec![0.0; spec.input_len()];
    preprocess_into(img, spec, &mut out).expect("buffer sized from the spec");
    out
}

#[cfg(feature = "std")]
/// [`preprocess`] into a caller's buffer of [`PreprocessSpec::input_len`] values.
pub fn preprocess_into(img: &DynamicImage, spec: &PreprocessSpec, out: &mut [f32]) -> Result<()> {
    let rgb = resize_rgb(img, spec);
    normalize_hwc_into(rgb.as_raw(), spec, out)
}

/// A rectangle of a frame, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Region {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width (at least 1).
    pub width: u32,
    /// Height (at least 1).
    pub height: u32,
}

/// Where the face should be in a camera frame: the box drawn on screen ("put your face in
/// the box") and the only part of the frame the network sees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GuideBox {
    /// Centre, as a fraction of the frame width.
    pub center_x: f32,
    /// Centre, as a fraction of the frame height.
    pub center_y: f32,
    /// Box height as a fraction of the frame height; the width follows the network input's
    /// aspect ratio, so a face in the box is never distorted.
    pub height: f32,
}

impl Default for GuideBox {
    fn default() -> Self {
        Self {
            center_x: 0.5,
            center_y: 0.5,
            height: 0.7,
        }
    }
}

impl core::str::FromStr for GuideBox {
    type Err = String;

    /// `cx,cy,h`, each a fraction of the frame, e.g. `0.5,0.5,0.7`.
    fn from_str(s: &str) -> core::result::Result<Self, String> {
        let v: Vec<f32> = s
            .split(',')
            .map(|p| p.trim().parse::<f32>())
            .collect::<core::result::Result<_, _>>()
            .map_err(|e| format!("guide box `{s}`: {e} (expected cx,cy,height fractions)"))?;
        let [center_x, center_y, height] = v[..] else {
            return Err(format!(
                "guide box `{s}` has {} numbers; expected cx,cy,height",
                v.len()
            ));
        };
        let unit = |x: f32| x.is_finite() && (0.0..=1.0).contains(&x);
        if !(unit(center_x) && unit(center_y) && unit(height) && height > 0.0) {
            return Err(format!(
                "guide box `{s}`: every number must be a fraction in 0..=1 and the height > 0"
            ));
        }
        Ok(Self {
            center_x,
            center_y,
            height,
        })
    }
}

impl GuideBox {
    /// The box in a `width x height` frame, with the input's aspect ratio, shrunk to fit
    /// inside the frame.
    pub fn region(&self, width: u32, height: u32, spec: &PreprocessSpec) -> Region {
        let aspect = spec.width as f32 / spec.height as f32;
        let mut h = (self.height * height as f32).max(1.0);
        let mut w = h * aspect;
        if w > width as f32 {
            w = width as f32;
            h = w / aspect;
        }
        let (w, h) = (
            (libm::roundf(w) as u32).clamp(1, width.max(1)),
            (libm::roundf(h) as u32).clamp(1, height.max(1)),
        );
        let clamp_start = |centre: f32, size: u32, limit: u32| {
            let start = libm::roundf(centre * limit as f32 - size as f32 / 2.0);
            (start.max(0.0) as u32).min(limit.saturating_sub(size))
        };
        Region {
            x: clamp_start(self.center_x, w, width),
            y: clamp_start(self.center_y, h, height),
            width: w,
            height: h,
        }
    }
}

/// Where a region lands in the network input when letterboxed: scaled by `scale_x` /
/// `scale_y` (equal but for rounding) to `width x height`, at `offset_x, offset_y`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// The region of the frame.
    pub region: Region,
    /// Input pixels per frame pixel, across.
    pub scale_x: f32,
    /// Input pixels per frame pixel, down.
    pub scale_y: f32,
    /// The region's size in the input.
    pub width: u32,
    /// The region's size in the input.
    pub height: u32,
    /// Left margin in the input.
    pub offset_x: u32,
    /// Top margin in the input.
    pub offset_y: u32,
}

impl Letterbox {
    /// A point of the network input, in frame pixels.
    pub fn to_frame(&self, x: f32, y: f32) -> (f32, f32) {
        (
            self.region.x as f32 + (x - self.offset_x as f32) / self.scale_x,
            self.region.y as f32 + (y - self.offset_y as f32) / self.scale_y,
        )
    }
}

/// How [`preprocess_region_into`] places `region` in the spec's input: as large as fits,
/// aspect ratio kept, centred.
pub fn letterbox(region: Region, spec: &PreprocessSpec) -> Letterbox {
    let (tw, th) = (spec.width, spec.height);
    let (rw, rh) = (region.width.max(1), region.height.max(1));
    let fit = (tw as f32 / rw as f32).min(th as f32 / rh as f32);
    let fw = (libm::roundf(rw as f32 * fit) as u32).clamp(1, tw.max(1));
    let fh = (libm::roundf(rh as f32 * fit) as u32).clamp(1, th.max(1));
    Letterbox {
        region,
        scale_x: fw as f32 / rw as f32,
        scale_y: fh as f32 / rh as f32,
        width: fw,
        height: fh,
        offset_x: (tw - fw) / 2,
        offset_y: (th - fh) / 2,
    }
}

#[cfg(feature = "std")]
/// The preprocessing function for a region of an interleaved RGB8 frame (a camera frame):
/// the region is letterboxed into the input size (resized with the spec's filter, keeping
/// its aspect ratio; the margin is the mean colour, which normalises to zero) and
/// normalised like [`preprocess`]. `canvas` is reused between frames.
pub fn preprocess_region_into(
    rgb: &[u8],
    width: u32,
    height: u32,
    region: Region,
    spec: &PreprocessSpec,
    canvas: &mut Vec<u8>,
    out: &mut [f32],
) -> Result<()> {
    let frame_len = width as usize * height as usize * 3;
    if rgb.len() != frame_len {
        return Err(Error::BufferSize {
            expected: frame_len,
            got: rgb.len(),
        });
    }
    let inside = region.width > 0
        && region.height > 0
        && region.x.saturating_add(region.width) <= width
        && region.y.saturating_add(region.height) <= height;
    if !inside {
        return Err(Error::InvalidContract(format!(
            "region {region:?} is not inside the {width}x{height} frame"
        )));
    }
    let (tw, th) = (spec.width, spec.height);
    let fit = letterbox(region, spec);
    let (fw, fh, ox, oy) = (fit.width, fit.height, fit.offset_x, fit.offset_y);
    let pad = [0, 1, 2].map(|c| (spec.mean[c] * 255.0).round() as u8);
    canvas.clear();
    for _ in 0..tw as usize * th as usize {
        canvas.extend_from_slice(&pad);
    }
    let frame = image::ImageBuffer::<image::Rgb<u8>, &[u8]>::from_raw(width, height, rgb).ok_or(
        Error::BufferSize {
            expected: frame_len,
            got: rgb.len(),
        },
    )?;
    let crop = image::imageops::crop_imm(&frame, region.x, region.y, region.width, region.height);
    let row = fw as usize * 3;
    let mut paste = |src: &[u8]| {
        for (y, line) in src.chunks_exact(row).enumerate() {
            let start = ((oy as usize + y) * tw as usize + ox as usize) * 3;
            canvas[start..start + row].copy_from_slice(line);
        }
    };
    if (fw, fh) == (region.width, region.height) {
        // Already the input size: copy the rows straight out of the frame.
        let frame_row = width as usize * 3;
        for y in 0..fh as usize {
            let start = (region.y as usize + y) * frame_row + region.x as usize * 3;
            let dst = ((oy as usize + y) * tw as usize + ox as usize) * 3;
            canvas[dst..dst + row].copy_from_slice(&rgb[start..start + row]);
        }
    } else {
        let resized = image::imageops::resize(&*crop, fw, fh, spec.resize.filter_type());
        paste(resized.as_raw());
    }
    normalize_hwc_into(canvas, spec, out)
}

#[cfg(feature = "std")]
/// The preprocessing function for a turned rectangle of an interleaved RGB8 frame (a face
/// the detector found, see [`crate::crop`]): the crop is sampled bilinearly at its own
/// size in frame pixels (so nothing is lost before the resize), resized to the input with
/// the spec's filter, as a training image is, and normalised like [`preprocess`]. Parts of
/// the crop outside the frame (a face cut by the border) are the mean colour, which
/// normalises to zero. `warp` and `canvas` are reused between faces.
pub fn preprocess_crop_into(
    rgb: &[u8],
    width: u32,
    height: u32,
    crop: &crate::crop::Crop,
    spec: &PreprocessSpec,
    warp: &mut Vec<u8>,
    out: &mut [f32],
) -> Result<()> {
    let frame_len = width as usize * height as usize * 3;
    if rgb.len() != frame_len {
        return Err(Error::BufferSize {
            expected: frame_len,
            got: rgb.len(),
        });
    }
    let finite = [crop.cx, crop.cy, crop.width, crop.height, crop.angle]
        .iter()
        .all(|v| v.is_finite());
    if !(finite && crop.width > 0.0 && crop.height > 0.0) {
        return Err(Error::InvalidContract(format!("crop {crop:?} has no area")));
    }
    let (tw, th) = (spec.width, spec.height);
    // Sampled at the crop's own size, but never below the input (no double resize of a
    // small face) nor far above it (a face filling a 4K frame).
    let nh = (libm::roundf(crop.height) as u32).clamp(th, 4 * th);
    let nw = (libm::roundf(nh as f32 * tw as f32 / th as f32) as u32).max(1);
    let pad = [0, 1, 2].map(|c| spec.mean[c] * 255.0);
    warp.clear();
    warp.reserve(nw as usize * nh as usize * 3);
    let (s, c) = libm::sincosf(crop.angle);
    let (sx, sy) = (crop.width / nw as f32, crop.height / nh as f32);
    let (w, h) = (width as i64, height as i64);
    let px = |x: i64, y: i64, ch: usize| -> f32 {
        if x < 0 || y < 0 || x >= w || y >= h {
            pad[ch]
        } else {
            rgb[((y * w + x) * 3) as usize + ch] as f32
        }
    };
    for v in 0..nh {
        let ly = (v as f32 + 0.5) * sy - crop.height / 2.0;
        for u in 0..nw {
            let lx = (u as f32 + 0.5) * sx - crop.width / 2.0;
            // Pixel centres sit at +0.5.
            let fx = crop.cx + c * lx - s * ly - 0.5;
            let fy = crop.cy + s * lx + c * ly - 0.5;
            let (x0, y0) = (libm::floorf(fx), libm::floorf(fy));
            let (ax, ay) = (fx - x0, fy - y0);
            let (x0, y0) = (x0 as i64, y0 as i64);
            for ch in 0..3 {
                let top = px(x0, y0, ch) * (1.0 - ax) + px(x0 + 1, y0, ch) * ax;
                let bottom = px(x0, y0 + 1, ch) * (1.0 - ax) + px(x0 + 1, y0 + 1, ch) * ax;
                let value = top * (1.0 - ay) + bottom * ay;
                warp.push(libm::roundf(value).clamp(0.0, 255.0) as u8);
            }
        }
    }
    if (nw, nh) == (tw, th) {
        return normalize_hwc_into(warp, spec, out);
    }
    let sampled = image::ImageBuffer::<image::Rgb<u8>, &[u8]>::from_raw(nw, nh, warp.as_slice())
        .ok_or(Error::BufferSize {
            expected: nw as usize * nh as usize * 3,
            got: warp.len(),
        })?;
    let resized = image::imageops::resize(&sampled, tw, th, spec.resize.filter_type());
    normalize_hwc_into(resized.as_raw(), spec, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, Rgb};

    #[test]
    fn matches_a_hand_computed_example() {
        // 2x1 image: (255, 0, 128) then (10, 20, 30); mean/std ImageNet.
        let mut img = RgbImage::new(2, 1);
        img.put_pixel(0, 0, Rgb([255, 0, 128]));
        img.put_pixel(1, 0, Rgb([10, 20, 30]));
        let mut spec = PreprocessSpec::new(2);
        spec.height = 1;
        let out = preprocess(&DynamicImage::ImageRgb8(img), &spec);
        // Hand-computed: (p/255 - mean)/std, planar R then G then B.
        let expected = [
            (1.0 - 0.485) / 0.229,           // R(0,0) = 2.2489083
            (10.0 / 255.0 - 0.485) / 0.229,  // R(1,0) = -1.9466564
            (0.0 - 0.456) / 0.224,           // G(0,0) = -2.0357143
            (20.0 / 255.0 - 0.456) / 0.224,  // G(1,0) = -1.6855742
            (128.0 / 255.0 - 0.406) / 0.225, // B(0,0) = 0.4264924
            (30.0 / 255.0 - 0.406) / 0.225,  // B(1,0) = -1.2815686
        ];
        let literal = [
            2.2489083, -1.9466564, -2.0357143, -1.6855742, 0.4264924, -1.2815686,
        ];
        for ((o, e), l) in out.iter().zip(expected).zip(literal) {
            assert!((o - e).abs() < 1e-5, "{o} vs {e}");
            assert!((o - l).abs() < 1e-5, "{o} vs {l}");
        }
    }

    #[test]
    fn grayscale_is_replicated_and_resized() {
        let img = GrayImage::from_pixel(7, 3, Luma([200]));
        let spec = PreprocessSpec::new(4);
        let out = preprocess(&DynamicImage::ImageLuma8(img), &spec);
        assert_eq!(out.len(), 48);
        for c in 0..3 {
            let want = (200.0 / 255.0 - spec.mean[c]) / spec.std[c];
            for v in &out[c * 16..(c + 1) * 16] {
                assert!((v - want).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn wrong_buffer_sizes_are_errors() {
        let spec = PreprocessSpec::new(2);
        let mut out = vec![0.0; 12];
        assert!(normalize_hwc_into(&[0; 11], &spec, &mut out).is_err());
        assert!(normalize_hwc_into(&[0; 12], &spec, &mut out[..5]).is_err());
    }

    #[test]
    fn a_region_the_input_size_is_the_whole_image_path() {
        // A region already at the input's aspect ratio is exactly `preprocess` of the crop.
        let spec = PreprocessSpec::new(8);
        let frame = RgbImage::from_fn(40, 30, |x, y| Rgb([(x * 6) as u8, (y * 8) as u8, 77]));
        let region = Region {
            x: 5,
            y: 3,
            width: 24,
            height: 24,
        };
        let mut canvas = Vec::new();
        let mut got = vec![0.0; spec.input_len()];
        preprocess_region_into(frame.as_raw(), 40, 30, region, &spec, &mut canvas, &mut got)
            .unwrap();
        let crop = image::imageops::crop_imm(&frame, 5, 3, 24, 24).to_image();
        let want = preprocess(&DynamicImage::ImageRgb8(crop), &spec);
        assert_eq!(got, want);
    }

    #[test]
    fn a_wide_region_is_letterboxed_with_zero_margins() {
        let spec = PreprocessSpec::new(4);
        let frame = RgbImage::from_pixel(8, 4, Rgb([255, 255, 255]));
        let region = Region {
            x: 0,
            y: 0,
            width: 8,
            height: 4,
        };
        let mut canvas = Vec::new();
        let mut out = vec![0.0; spec.input_len()];
        preprocess_region_into(frame.as_raw(), 8, 4, region, &spec, &mut canvas, &mut out).unwrap();
        // 8x4 fits as 4x2 in the middle rows; rows 0 and 3 are the margin.
        for c in 0..3 {
            let plane = &out[c * 16..(c + 1) * 16];
            let white = (1.0 - spec.mean[c]) / spec.std[c];
            for (i, v) in plane.iter().enumerate() {
                let margin = !(4..12).contains(&i);
                let want = if margin { 0.0 } else { white };
                assert!(
                    (v - want).abs() < 0.01,
                    "channel {c} pixel {i}: {v} vs {want}"
                );
            }
        }
    }

    #[test]
    fn a_level_crop_of_the_whole_image_is_the_image_preprocessed() {
        let spec = PreprocessSpec::new(8);
        for side in [8u32, 16] {
            let img = RgbImage::from_fn(side, side, |x, y| {
                Rgb([(x * 13) as u8, (y * 7) as u8, ((x ^ y) * 11) as u8])
            });
            let want = preprocess(&DynamicImage::ImageRgb8(img.clone()), &spec);
            let crop = crate::crop::Crop {
                cx: side as f32 / 2.0,
                cy: side as f32 / 2.0,
                width: side as f32,
                height: side as f32,
                angle: 0.0,
            };
            let mut got = vec![0.0; spec.input_len()];
            let mut warp = Vec::new();
            preprocess_crop_into(img.as_raw(), side, side, &crop, &spec, &mut warp, &mut got)
                .unwrap();
            assert_eq!(got, want, "side {side}");
        }
    }

    #[test]
    fn a_crop_off_the_frame_is_mean_colour_and_a_turned_one_turns() {
        let spec = PreprocessSpec::new(4);
        // Left half white, right half black.
        let img = RgbImage::from_fn(4, 4, |x, _| if x < 2 { Rgb([255; 3]) } else { Rgb([0; 3]) });
        let mut out = vec![1.0; spec.input_len()];
        let mut warp = Vec::new();
        let far = crate::crop::Crop {
            cx: 100.0,
            cy: 100.0,
            width: 4.0,
            height: 4.0,
            angle: 0.3,
        };
        preprocess_crop_into(img.as_raw(), 4, 4, &far, &spec, &mut warp, &mut out).unwrap();
        assert!(out.iter().all(|v| v.abs() < 0.02), "{out:?}");
        // A half turn puts the white half on the right.
        let turned = crate::crop::Crop {
            cx: 2.0,
            cy: 2.0,
            width: 4.0,
            height: 4.0,
            angle: core::f32::consts::PI,
        };
        preprocess_crop_into(img.as_raw(), 4, 4, &turned, &spec, &mut warp, &mut out).unwrap();
        assert!(out[0] < -1.0 && out[3] > 1.0, "{out:?}");
        let bad = crate::crop::Crop {
            width: f32::NAN,
            ..turned
        };
        assert!(
            preprocess_crop_into(img.as_raw(), 4, 4, &bad, &spec, &mut warp, &mut out).is_err()
        );
        assert!(preprocess_crop_into(&[0; 5], 4, 4, &turned, &spec, &mut warp, &mut out).is_err());
    }

    #[test]
    fn guide_boxes_parse_fit_and_refuse_nonsense() {
        let spec = PreprocessSpec::new(64);
        let g: GuideBox = "0.5,0.5,0.5".parse().unwrap();
        let r = g.region(640, 480, &spec);
        assert_eq!(
            r,
            Region {
                x: 200,
                y: 120,
                width: 240,
                height: 240
            }
        );
        // A box hanging off the corner is pushed inside; a too-tall one shrinks.
        let r = "1,1,0.5"
            .parse::<GuideBox>()
            .unwrap()
            .region(640, 480, &spec);
        assert_eq!((r.x + r.width, r.y + r.height), (640, 480));
        let r = GuideBox::default().region(100, 400, &spec);
        assert!(r.width <= 100 && r.height <= 400 && r.width == r.height);
        for bad in [
            "",
            "0.5,0.5",
            "0.5,0.5,0",
            "2,0.5,0.5",
            "a,b,c",
            "0.5,0.5,0.5,1",
        ] {
            assert!(bad.parse::<GuideBox>().is_err(), "{bad}");
        }
        let mut out = vec![0.0; spec.input_len()];
        let outside = Region {
            x: 600,
            y: 0,
            width: 64,
            height: 64,
        };
        let frame = vec![0u8; 640 * 480 * 3];
        assert!(preprocess_region_into(
            &frame,
            640,
            480,
            outside,
            &spec,
            &mut Vec::new(),
            &mut out
        )
        .is_err());
        assert!(
            preprocess_region_into(&frame[1..], 640, 480, r, &spec, &mut Vec::new(), &mut out)
                .is_err()
        );
    }
}
