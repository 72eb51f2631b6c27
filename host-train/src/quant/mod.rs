//! Post-training int8 quantization: the number formats, the calibration of activation
//! ranges on real images run through the Candle model ([`calibrate`]), and the simulated
//! int8 network that scores an int8 file in Candle ([`fake`]). Writing an int8 ONNX file
//! is export's job ([`crate::export::int8`]): this module knows numbers, not files.
//!
//! Formats (what `export` writes and both runtimes read):
//! - weights: int8, symmetric, one scale per output channel, BatchNorm folded first
//!   (folding scales whole output channels, so quantizing folded or unfolded weights per
//!   channel gives the same grid);
//! - activations: uint8, asymmetric, one scale and zero point per tensor, at the points
//!   of [`crate::net::tap`];
//! - biases: int32 with scale `input scale * weight scale`, zero point 0 (what
//!   onnxruntime's QDQ fusion expects).
pub mod calibrate;
pub mod fake;

use serde::{Deserialize, Serialize};

/// Asymmetric uint8 parameters of one activation tensor: `real = (q - zero_point) * scale`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ActQuant {
    /// Step between two codes.
    pub scale: f32,
    /// The code of 0.0.
    pub zero_point: u8,
}

impl ActQuant {
    /// The grid that covers `[lo, hi]` (widened to contain 0, so ReLU zeros and padding
    /// are exact).
    pub fn from_range(lo: f32, hi: f32) -> Self {
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let span = hi - lo;
        if !span.is_finite() || span <= f32::MIN_POSITIVE {
            // An all-zero activation: any scale represents it exactly.
            return Self {
                scale: 1.0,
                zero_point: 0,
            };
        }
        let scale = span / 255.0;
        let zero_point = (-lo / scale).round_ties_even().clamp(0.0, 255.0) as u8;
        Self { scale, zero_point }
    }

    /// ONNX `QuantizeLinear`: round half to even, saturate.
    pub fn quantize(&self, v: f32) -> u8 {
        ((v / self.scale).round_ties_even() + self.zero_point as f32).clamp(0.0, 255.0) as u8
    }

    /// ONNX `DequantizeLinear`.
    pub fn dequantize(&self, q: u8) -> f32 {
        (q as f32 - self.zero_point as f32) * self.scale
    }

    /// The value `v` becomes after a quantize / dequantize round trip.
    pub fn fake(&self, v: f32) -> f32 {
        self.dequantize(self.quantize(v))
    }
}

/// Int8 weights with one symmetric scale per output channel (the first dimension).
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelQuant {
    /// Codes in `-127..=127`, same layout as the float weights.
    pub codes: Vec<i8>,
    /// One scale per output channel.
    pub scales: Vec<f32>,
}

impl ChannelQuant {
    /// Quantizes `w` (`channels` equal rows) per row: `scale = max|w| / 127`.
    pub fn new(w: &[f32], channels: usize) -> Self {
        let per = w.len() / channels.max(1);
        let mut codes = Vec::with_capacity(w.len());
        let mut scales = Vec::with_capacity(channels);
        for row in w.chunks(per.max(1)).take(channels) {
            let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = if max > 0.0 && max.is_finite() {
                max / 127.0
            } else {
                1.0
            };
            codes.extend(
                row.iter()
                    .map(|v| (v / scale).round_ties_even().clamp(-127.0, 127.0) as i8),
            );
            scales.push(scale);
        }
        Self { codes, scales }
    }

    /// The float weights the codes stand for.
    pub fn dequantize(&self) -> Vec<f32> {
        let per = self.codes.len() / self.scales.len().max(1);
        self.codes
            .chunks(per.max(1))
            .zip(&self.scales)
            .flat_map(|(row, s)| row.iter().map(move |&q| q as f32 * s))
            .collect()
    }
}

/// Int32 bias codes for an input scale and per-channel weight scales.
pub fn quantize_bias(
    bias: &[f32],
    input_scale: f32,
    weight_scales: &[f32],
) -> (Vec<i32>, Vec<f32>) {
    bias.iter()
        .zip(weight_scales)
        .map(|(&b, &sw)| {
            let s = input_scale * sw;
            let q = (b / s)
                .round_ties_even()
                .clamp(i32::MIN as f32, i32::MAX as f32) as i32;
            (q, s)
        })
        .unzip()
}

/// How activation ranges are chosen from the calibration images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// The observed minimum and maximum.
    Minmax,
    /// The 99.99th percentile of |x| (outliers clipped).
    Percentile,
    /// The clipping threshold that minimises the KL divergence between the observed
    /// distribution and its quantized copy (TensorRT's calibrator).
    Entropy,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Minmax => "minmax",
            Method::Percentile => "percentile",
            Method::Entropy => "entropy",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_grid_contains_zero_and_follows_onnx_rounding() {
        let q = ActQuant::from_range(0.0, 2.55);
        assert_eq!(q.zero_point, 0);
        assert!((q.scale - 0.01).abs() < 1e-7);
        assert_eq!(q.quantize(0.0), 0);
        assert_eq!(q.quantize(-1.0), 0, "saturates below");
        assert_eq!(q.quantize(100.0), 255, "saturates above");
        // 0.025 / 0.01 = 2.5 → 2 (half to even), 0.035 → 4.
        assert_eq!(q.quantize(0.025), 2);
        assert_eq!(q.quantize(0.035), 4);
        let s = ActQuant::from_range(-1.0, 3.0);
        assert_eq!(s.fake(0.0), 0.0, "zero is exact");
        assert!((s.fake(1.3) - 1.3).abs() <= s.scale / 2.0 + 1e-6);
        assert_eq!(ActQuant::from_range(0.0, 0.0).fake(0.0), 0.0);
        // A range that excludes 0 is widened to include it.
        assert_eq!(ActQuant::from_range(2.0, 5.0).zero_point, 0);
    }

    #[test]
    fn channel_quantization_is_within_half_a_step() {
        let w: Vec<f32> = (0..60)
            .map(|i| ((i as f32) * 0.37).sin() * (1 + i / 20) as f32)
            .collect();
        let q = ChannelQuant::new(&w, 3);
        assert_eq!(q.scales.len(), 3);
        assert!(q.codes.iter().all(|&c| c >= -127));
        let back = q.dequantize();
        for (c, (row, brow)) in w.chunks(20).zip(back.chunks(20)).enumerate() {
            let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!((q.scales[c] - max / 127.0).abs() < 1e-7);
            for (a, b) in row.iter().zip(brow) {
                assert!((a - b).abs() <= q.scales[c] / 2.0 + 1e-6);
            }
        }
        // An all-zero channel stays zero.
        let z = ChannelQuant::new(&[0.0; 4], 2);
        assert_eq!(z.dequantize(), vec![0.0; 4]);
    }

    #[test]
    fn bias_codes_use_the_product_scale() {
        let (q, s) = quantize_bias(&[1.0, -0.5], 0.1, &[0.01, 0.02]);
        assert_eq!(q, vec![1000, -250]);
        assert!((s[0] - 0.001).abs() < 1e-9 && (s[1] - 0.002).abs() < 1e-9);
    }
}
