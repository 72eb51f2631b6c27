//! Simulated int8 in Candle: each activation point rounded to its uint8 grid, exactly as
//! `QuantizeLinear` + `DequantizeLinear` do in the exported file.
use std::collections::BTreeMap;

use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use super::ActQuant;
use crate::net::Tap;

/// Rounds every activation point that has a grid; other points pass through.
pub struct FakeQuant {
    /// The grid of each point.
    pub points: BTreeMap<String, ActQuant>,
}

impl Tap for FakeQuant {
    fn at(&self, point: &str, x: Tensor) -> Result<Tensor> {
        match self.points.get(point) {
            Some(q) => {
                let (dev, x) = (x.device().clone(), x.contiguous()?);
                // The rounding runs on the CPU copy (an evaluation path, not training).
                x.to_device(&candle_core::Device::Cpu)?
                    .apply_op1_no_bwd(&Round(*q))?
                    .to_device(&dev)
            }
            None => Ok(x),
        }
    }
}

struct Round(ActQuant);

impl CustomOp1 for Round {
    fn name(&self) -> &'static str {
        "fake-quant-uint8"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(v) = s else {
            bail!("fake quant: f32 input expected");
        };
        let Some((a, b)) = l.contiguous_offsets() else {
            bail!("fake quant: contiguous input expected");
        };
        let out: Vec<f32> = v[a..b].iter().map(|&x| self.0.fake(x)).collect();
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn rounds_named_points_only() {
        let q = ActQuant::from_range(0.0, 2.55);
        let tap = FakeQuant {
            points: BTreeMap::from([("a".to_string(), q)]),
        };
        let x = Tensor::new(&[0.004f32, 0.016, 1.0, 3.0, -1.0], &Device::Cpu).unwrap();
        let a: Vec<f32> = tap.at("a", x.clone()).unwrap().to_vec1().unwrap();
        let want = [0.0, 0.02, 1.0, 2.55, 0.0];
        for (g, w) in a.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{a:?}");
        }
        let b: Vec<f32> = tap.at("b", x.clone()).unwrap().to_vec1().unwrap();
        assert_eq!(b, x.to_vec1::<f32>().unwrap());
    }
}
