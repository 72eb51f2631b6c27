//! Named activation points: the tensors an int8 export quantizes. The networks pass each
//! of them through a [`Tap`], which training leaves alone ([`NoTap`]), calibration
//! observes and quantized evaluation rounds to the int8 grid (`crate::quant`).
//!
//! Point names are the ONNX names of the same tensors (see `export::onnx`): `image`,
//! `bn1.relu` (stem), `layerS.B.bn1.relu`, `layerS.B.bn2`, `layerS.B.downsample.1`,
//! `layerS.B.relu` (block output), `features`, `heads.<name>.relu`.
use candle_core::{Result, Tensor};

/// What happens to the activation at a named point.
pub trait Tap: Send + Sync {
    /// Returns the tensor the network continues with.
    fn at(&self, point: &str, x: Tensor) -> Result<Tensor>;
}

/// Passes every activation through untouched.
pub struct NoTap;

impl Tap for NoTap {
    fn at(&self, _point: &str, x: Tensor) -> Result<Tensor> {
        Ok(x)
    }
}
