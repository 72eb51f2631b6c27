//! Camera pixel formats → interleaved RGB8, into a reused buffer.
//!
//! YUYV is a few integer operations per pixel: a hand-written loop beats pulling in a
//! colour-conversion crate for one format, and it lets the output buffer be the frame's own.
//! MJPEG goes through the `image` crate's JPEG decoder (zune-jpeg), which also fills in
//! the Huffman tables many UVC cameras leave out of their frames.
use std::io::Cursor;

use image::{codecs::jpeg::JpegDecoder, ColorType, ImageDecoder};

/// Why a buffer could not be converted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConvertError {
    /// The device gave fewer bytes than its format says.
    #[error("frame has {got} bytes; {width}x{height} with stride {stride} needs {need}")]
    Short {
        /// Bytes received.
        got: usize,
        /// Bytes needed.
        need: usize,
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
        /// Bytes per line.
        stride: usize,
    },
    /// A JPEG frame did not decode.
    #[error("MJPEG frame does not decode: {0}")]
    Jpeg(String),
}

fn need(width: u32, height: u32, stride: usize, bpp: usize) -> usize {
    if height == 0 {
        0
    } else {
        stride * (height as usize - 1) + width as usize * bpp
    }
}

#[inline]
fn clip(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// YUYV 4:2:2 (BT.601, limited range, as UVC cameras send it) to RGB8. `stride` is the
/// device's bytes per line (at least `2 * width`).
pub fn yuyv_to_rgb(
    src: &[u8],
    width: u32,
    height: u32,
    stride: usize,
    dst: &mut [u8],
) -> Result<(), ConvertError> {
    let stride = stride.max(width as usize * 2);
    let need = need(width, height, stride, 2);
    if src.len() < need || dst.len() != width as usize * height as usize * 3 {
        return Err(ConvertError::Short {
            got: src.len(),
            need,
            width,
            height,
            stride,
        });
    }
    let w = width as usize;
    for (y, out) in dst.chunks_exact_mut(w * 3).enumerate() {
        let line = &src[y * stride..y * stride + w * 2];
        for (px, o) in line.chunks_exact(4).zip(out.chunks_mut(6)) {
            let d = px[1] as i32 - 128;
            let e = px[3] as i32 - 128;
            let (r, g, b) = (409 * e + 128, -100 * d - 208 * e + 128, 516 * d + 128);
            for (k, luma) in [px[0], px[2]].into_iter().enumerate() {
                if let Some(o) = o.get_mut(k * 3..k * 3 + 3) {
                    let c = 298 * (luma as i32 - 16);
                    o[0] = clip((c + r) >> 8);
                    o[1] = clip((c + g) >> 8);
                    o[2] = clip((c + b) >> 8);
                }
            }
        }
    }
    Ok(())
}

/// RGB8 to YUYV with the inverse BT.601 limited-range matrix (the test pattern is made in
/// YUYV, so it goes through the same conversion as a camera frame).
pub fn rgb_to_yuyv(src: &[u8], width: u32, height: u32) -> Vec<u8> {
    let w = width as usize;
    let mut out = Vec::with_capacity(w * height as usize * 2);
    for line in src.chunks_exact(w * 3).take(height as usize) {
        for pair in line.chunks(6) {
            let p0 = &pair[0..3];
            let p1 = pair.get(3..6).unwrap_or(p0);
            let yuv = |p: &[u8]| {
                let (r, g, b) = (p[0] as i32, p[1] as i32, p[2] as i32);
                (
                    ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16,
                    ((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128,
                    ((112 * r - 94 * g - 18 * b + 128) >> 8) + 128,
                )
            };
            let (y0, u0, v0) = yuv(p0);
            let (y1, u1, v1) = yuv(p1);
            out.extend_from_slice(&[clip(y0), clip((u0 + u1) / 2), clip(y1), clip((v0 + v1) / 2)]);
        }
    }
    out
}

/// Packed RGB24 with a line stride to tight RGB8.
pub fn rgb24_copy(
    src: &[u8],
    width: u32,
    height: u32,
    stride: usize,
    dst: &mut [u8],
) -> Result<(), ConvertError> {
    let row = width as usize * 3;
    let stride = stride.max(row);
    let need = need(width, height, stride, 3);
    if src.len() < need || dst.len() != row * height as usize {
        return Err(ConvertError::Short {
            got: src.len(),
            need,
            width,
            height,
            stride,
        });
    }
    for (y, out) in dst.chunks_exact_mut(row).enumerate() {
        out.copy_from_slice(&src[y * stride..y * stride + row]);
    }
    Ok(())
}

/// Decodes one MJPEG frame into `dst`, resized to the JPEG's own size; returns
/// `(width, height)`. Greyscale JPEGs are expanded to RGB.
pub fn mjpeg_to_rgb(src: &[u8], dst: &mut Vec<u8>) -> Result<(u32, u32), ConvertError> {
    let jpeg = |e: image::ImageError| ConvertError::Jpeg(e.to_string());
    let decoder = JpegDecoder::new(Cursor::new(src)).map_err(jpeg)?;
    let (w, h) = decoder.dimensions();
    let colour = decoder.color_type();
    let pixels = w as usize * h as usize;
    match colour {
        ColorType::Rgb8 => {
            dst.resize(pixels * 3, 0);
            decoder.read_image(dst).map_err(jpeg)?;
        }
        ColorType::L8 => {
            dst.resize(pixels * 3, 0);
            decoder.read_image(&mut dst[..pixels]).map_err(jpeg)?;
            // Expand in place from the back so no grey value is overwritten before use.
            for i in (0..pixels).rev() {
                let v = dst[i];
                dst[i * 3..i * 3 + 3].fill(v);
            }
        }
        other => {
            return Err(ConvertError::Jpeg(format!(
                "unsupported JPEG colour type {other:?}"
            )))
        }
    }
    Ok((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_round_trips_within_conversion_error() {
        let (w, h) = (6u32, 3u32);
        // Pairs of equal pixels, so 4:2:2 chroma sharing loses nothing.
        let colours = [
            [255u8, 0, 0],
            [0, 255, 0],
            [0, 0, 255],
            [128, 128, 128],
            [20, 200, 90],
        ];
        let mut rgb = Vec::new();
        for i in 0..(w * h / 2) as usize {
            let c = colours[i % colours.len()];
            rgb.extend_from_slice(&c);
            rgb.extend_from_slice(&c);
        }
        let yuyv = rgb_to_yuyv(&rgb, w, h);
        assert_eq!(yuyv.len(), (w * h * 2) as usize);
        let mut back = vec![0u8; rgb.len()];
        yuyv_to_rgb(&yuyv, w, h, 0, &mut back).unwrap();
        for (a, b) in rgb.iter().zip(&back) {
            assert!((*a as i32 - *b as i32).abs() <= 3, "{a} vs {b}");
        }
    }

    #[test]
    fn strides_are_honoured_and_short_buffers_refused() {
        let (w, h) = (2u32, 2u32);
        // Stride 8: each 4-byte YUYV line is followed by 4 bytes of padding (0xFF).
        let line = [235u8, 128, 16, 128, 0xFF, 0xFF, 0xFF, 0xFF];
        let src: Vec<u8> = line.iter().chain(line.iter()).copied().collect();
        let mut out = vec![0u8; 12];
        yuyv_to_rgb(&src, w, h, 8, &mut out).unwrap();
        assert_eq!(&out[..6], &[255, 255, 255, 0, 0, 0]);
        assert_eq!(&out[6..], &[255, 255, 255, 0, 0, 0]);
        assert!(matches!(
            yuyv_to_rgb(&src[..10], w, h, 8, &mut out),
            Err(ConvertError::Short { .. })
        ));
        let rgb24: Vec<u8> = (0..2 * 9).map(|i| i as u8).collect();
        rgb24_copy(&rgb24, 2, 2, 9, &mut out).unwrap();
        assert_eq!(out, [0, 1, 2, 3, 4, 5, 9, 10, 11, 12, 13, 14]);
    }

    #[test]
    fn mjpeg_decodes_and_garbage_is_an_error() {
        let img = image::RgbImage::from_pixel(16, 8, image::Rgb([200, 30, 60]));
        let mut jpeg = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .unwrap();
        let mut out = Vec::new();
        assert_eq!(mjpeg_to_rgb(&jpeg, &mut out).unwrap(), (16, 8));
        assert!((out[0] as i32 - 200).abs() < 8 && (out[1] as i32 - 30).abs() < 8);
        assert!(mjpeg_to_rgb(&jpeg[..jpeg.len() / 3], &mut out).is_err());
        assert!(mjpeg_to_rgb(b"not a jpeg", &mut out).is_err());
    }
}
