//! The one preprocessing path: image → resized RGB8 → normalised CHW `f32`.
//!
//! Training caches the resized RGB8 pixels ([`resize_rgb`]) and normalises augmented copies
//! with [`normalize_hwc_into`]; the edge and the export fixtures call [`preprocess`], which is
//! the same two steps. Nothing else in the project turns pixels into network input.
use image::{imageops::FilterType, DynamicImage, RgbImage};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

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
    /// Tensor layout; always `NCHW` in this version.
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

/// Normalises interleaved RGB8 pixels (`height * width * 3`, row-major) into planar CHW
/// `f32`: `(p / 255 - mean[c]) / std[c]`.
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
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    let scale = spec.std.map(|s| 1.0 / (255.0 * s));
    let shift = [0, 1, 2].map(|c| spec.mean[c] / spec.std[c]);
    for (i, px) in pixels.chunks_exact(3).enumerate() {
        r[i] = px[0] as f32 * scale[0] - shift[0];
        g[i] = px[1] as f32 * scale[1] - shift[1];
        b[i] = px[2] as f32 * scale[2] - shift[2];
    }
    Ok(())
}

/// The preprocessing function: any image → normalised CHW `f32` of the spec's size.
pub fn preprocess(img: &DynamicImage, spec: &PreprocessSpec) -> Vec<f32> {
    let mut out = vec![0.0; spec.input_len()];
    preprocess_into(img, spec, &mut out).expect("buffer sized from the spec");
    out
}

/// [`preprocess`] into a caller's buffer of [`PreprocessSpec::input_len`] values.
pub fn preprocess_into(img: &DynamicImage, spec: &PreprocessSpec, out: &mut [f32]) -> Result<()> {
    let rgb = resize_rgb(img, spec);
    normalize_hwc_into(rgb.as_raw(), spec, out)
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
}
