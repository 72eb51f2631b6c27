//! ResNet body: He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", 2016.
//!
//! Weight paths follow torchvision (`conv1`, `layer1.0.bn1`, `layer2.0.downsample.0`), so a
//! torchvision state dict converted to safetensors loads without a renaming table.
//!
//! One deliberate difference from torchvision: the stem pools with a 2x2/2 max-pool, not
//! 3x3/2, because Candle 0.11 has no backward for a max-pool whose kernel differs from its
//! stride. The output size is the same.
use std::{fmt, str::FromStr};

use candle_core::{Module, ModuleT, Result, Tensor, Var};
use candle_nn::{batch_norm, BatchNorm, BatchNormConfig, VarBuilder};
use serde::{Deserialize, Serialize};

use super::tap::Tap;
use crate::kernels::{self, Kernels};

/// Depth and width of the body.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BackboneConfig {
    /// BasicBlocks per stage (`[2, 2, 2, 2]` is ResNet18, `[1, 1, 1, 1]` ResNet10).
    pub blocks: [usize; 4],
    /// Width multiplier on the 64-128-256-512 channels.
    pub width: f32,
}

impl BackboneConfig {
    /// ResNet18.
    pub const RESNET18: Self = Self {
        blocks: [2, 2, 2, 2],
        width: 1.0,
    };
    /// ResNet10.
    pub const RESNET10: Self = Self {
        blocks: [1, 1, 1, 1],
        width: 1.0,
    };

    /// Channels of each stage (the stem has the first stage's width).
    pub fn channels(&self) -> [usize; 4] {
        [64, 128, 256, 512].map(|c| ((c as f32 * self.width).round() as usize).max(4))
    }

    /// Width of the pooled feature vector the heads read.
    pub fn feature_dim(&self) -> usize {
        self.channels()[3]
    }
}

impl fmt::Display for BackboneConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let depth = match self.blocks {
            [2, 2, 2, 2] => "resnet18".to_string(),
            [1, 1, 1, 1] => "resnet10".to_string(),
            [3, 4, 6, 3] => "resnet34".to_string(),
            b => format!("resnet-{}-{}-{}-{}", b[0], b[1], b[2], b[3]),
        };
        if self.width == 1.0 {
            write!(f, "{depth}")
        } else {
            write!(f, "{depth}-w{}", self.width)
        }
    }
}

impl FromStr for BackboneConfig {
    type Err = String;

    /// `resnet18`, `resnet10`, `resnet34`, optionally with `-w<multiplier>` (`resnet10-w0.5`).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (depth, width) = match s.split_once("-w") {
            Some((d, w)) => (
                d,
                w.parse::<f32>()
                    .map_err(|_| format!("bad width in `{s}`"))?,
            ),
            None => (s, 1.0),
        };
        if !(width > 0.0 && width <= 4.0) {
            return Err(format!("width multiplier in `{s}` must be in (0, 4]"));
        }
        let blocks = match depth {
            "resnet18" => [2, 2, 2, 2],
            "resnet10" => [1, 1, 1, 1],
            "resnet34" => [3, 4, 6, 3],
            _ => {
                return Err(format!(
                "unknown backbone `{s}` (resnet10, resnet18, resnet34, with optional -w<width>)"
            ))
            }
        };
        Ok(Self { blocks, width })
    }
}

/// A bias-free convolution, padded to keep `size / stride`; the implementation is chosen
/// per run (see [`crate::kernels`]). Same variable (`weight`) as `candle_nn::Conv`.
struct Conv {
    weight: Tensor,
    stride: usize,
    padding: usize,
    kernels: Kernels,
}

impl Conv {
    fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        kernels: Kernels,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = vb.get_with_hints(
            (c_out, c_in, k, k),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
        )?;
        Ok(Self {
            weight,
            stride,
            padding: k / 2,
            kernels,
        })
    }
}

impl Module for Conv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.kernels == Kernels::Fast && x.device().is_cpu() {
            kernels::conv::conv2d(x, &self.weight, self.stride, self.padding)
        } else {
            x.conv2d(&self.weight, self.padding, self.stride, 1, 1)
        }
    }
}

/// Weight of each batch in a BatchNorm running statistic (candle's and PyTorch's
/// default); [`crate::train::average`] reads batch statistics back through it.
pub const BN_MOMENTUM: f64 = 0.1;
/// BatchNorm epsilon (PyTorch's): the network, its ONNX export (BatchNormalization's
/// `epsilon`, folding) and the import of a folded file must all use this one value.
pub const BN_EPS: f64 = 1e-5;

/// BatchNorm with running statistics (`candle_nn::BatchNorm`'s variables and eval path);
/// training mode runs the fused kernel on CPU when the run asks for fast kernels.
struct Norm {
    bn: BatchNorm,
    running: Option<(Var, Var)>,
    /// The activation point of this norm's output ([`Tap`]).
    point: String,
}

fn bn(c: usize, kernels: Kernels, relu: bool, vb: VarBuilder) -> Result<Norm> {
    let point = match relu {
        true => format!("{}.relu", vb.prefix()),
        false => vb.prefix(),
    };
    let bn = batch_norm(
        c,
        BatchNormConfig {
            eps: BN_EPS,
            remove_mean: true,
            affine: true,
            momentum: BN_MOMENTUM,
        },
        vb,
    )?;
    let running = match kernels {
        Kernels::Fast => Some((
            Var::from_tensor(bn.running_mean())?,
            Var::from_tensor(bn.running_var())?,
        )),
        Kernels::Candle => None,
    };
    Ok(Norm { bn, running, point })
}

impl Norm {
    /// BatchNorm, then ReLU when `relu` (fused on the fast path), then the tap.
    fn forward_t(&self, x: &Tensor, train: bool, relu: bool, tap: &dyn Tap) -> Result<Tensor> {
        tap.at(&self.point, self.norm(x, train, relu)?)
    }

    fn norm(&self, x: &Tensor, train: bool, relu: bool) -> Result<Tensor> {
        match (&self.running, self.bn.weight_and_bias()) {
            (Some((rm, rv)), Some((g, b))) if train && x.device().is_cpu() => {
                let (y, mean, var) =
                    kernels::batchnorm::batch_norm_train(x, g, b, self.bn.eps(), relu)?;
                // Same update as candle_nn::BatchNorm (unbiased variance, momentum 0.1).
                let m = self.bn.momentum();
                let count = (x.elem_count() / x.dim(1)?) as f64;
                rm.set(&((rm.as_tensor() * (1.0 - m))? + (mean * m)?)?)?;
                let unbiased = m * count / (count - 1.0).max(1.0);
                rv.set(&((rv.as_tensor() * (1.0 - m))? + (var * unbiased)?)?)?;
                Ok(y)
            }
            _ => {
                let y = self.bn.forward_t(x, train)?;
                if relu {
                    y.relu()
                } else {
                    Ok(y)
                }
            }
        }
    }

    /// `max(y + skip, 0)`, fused on the fast path.
    fn join(&self, y: &Tensor, skip: &Tensor) -> Result<Tensor> {
        if self.running.is_some() && y.device().is_cpu() {
            kernels::batchnorm::add_relu(y, skip)
        } else {
            (y + skip)?.relu()
        }
    }
}

struct BasicBlock {
    conv1: Conv,
    bn1: Norm,
    conv2: Conv,
    bn2: Norm,
    downsample: Option<(Conv, Norm)>,
    /// The block output's activation point.
    point: String,
}

impl BasicBlock {
    fn new(
        c_in: usize,
        c_out: usize,
        stride: usize,
        kernels: Kernels,
        vb: VarBuilder,
    ) -> Result<Self> {
        let downsample = if stride != 1 || c_in != c_out {
            Some((
                Conv::new(c_in, c_out, 1, stride, kernels, vb.pp("downsample.0"))?,
                bn(c_out, kernels, false, vb.pp("downsample.1"))?,
            ))
        } else {
            None
        };
        Ok(Self {
            conv1: Conv::new(c_in, c_out, 3, stride, kernels, vb.pp("conv1"))?,
            bn1: bn(c_out, kernels, true, vb.pp("bn1"))?,
            conv2: Conv::new(c_out, c_out, 3, 1, kernels, vb.pp("conv2"))?,
            bn2: bn(c_out, kernels, false, vb.pp("bn2"))?,
            downsample,
            point: format!("{}.relu", vb.prefix()),
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool, tap: &dyn Tap) -> Result<Tensor> {
        let y = self
            .bn1
            .forward_t(&self.conv1.forward(x)?, train, true, tap)?;
        let y = self
            .bn2
            .forward_t(&self.conv2.forward(&y)?, train, false, tap)?;
        let skip = match &self.downsample {
            Some((c, b)) => b.forward_t(&c.forward(x)?, train, false, tap)?,
            None => x.clone(),
        };
        tap.at(&self.point, self.bn2.join(&y, &skip)?)
    }
}

/// The body: stem, four stages, global average pool.
pub struct ResNet {
    conv1: Conv,
    bn1: Norm,
    stages: Vec<Vec<BasicBlock>>,
    feature_dim: usize,
}

impl ResNet {
    /// Builds the body under `vb` (torchvision names at its root).
    pub fn new(cfg: &BackboneConfig, kernels: Kernels, vb: VarBuilder) -> Result<Self> {
        let ch = cfg.channels();
        let conv1 = Conv::new(3, ch[0], 7, 2, kernels, vb.pp("conv1"))?;
        let bn1 = bn(ch[0], kernels, true, vb.pp("bn1"))?;
        let mut stages = Vec::new();
        let mut c_in = ch[0];
        for (i, (&n, &c)) in cfg.blocks.iter().zip(&ch).enumerate() {
            let vb = vb.pp(format!("layer{}", i + 1));
            let mut blocks = Vec::new();
            for b in 0..n {
                let stride = if i > 0 && b == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(
                    c_in,
                    c,
                    stride,
                    kernels,
                    vb.pp(b.to_string()),
                )?);
                c_in = c;
            }
            stages.push(blocks);
        }
        Ok(Self {
            conv1,
            bn1,
            stages,
            feature_dim: ch[3],
        })
    }

    /// Width of the output features.
    pub fn feature_dim(&self) -> usize {
        self.feature_dim
    }

    /// Runs the body, passing every activation point through `tap`.
    ///
    /// # Shapes
    /// `x`: `[N, 3, H, W]` → `[N, feature_dim]`.
    pub fn forward_t(&self, x: &Tensor, train: bool, tap: &dyn Tap) -> Result<Tensor> {
        let x = tap.at("image", x.clone())?;
        // Max-pooling keeps values on the stem's int8 grid: no point of its own.
        let mut y = self
            .bn1
            .forward_t(&self.conv1.forward(&x)?, train, true, tap)?;
        // Both kernel paths pool with the fused op on CPU: Candle's own max-pool backward
        // returns a quarter of the gradient (kernels::pool), which only a GPU run still uses.
        y = match y.device().is_cpu() {
            true => kernels::pool::max_pool2x2(&y)?,
            false => y.max_pool2d_with_stride(2, 2)?,
        };
        for stage in &self.stages {
            for block in stage {
                y = block.forward_t(&y, train, tap)?;
            }
        }
        tap.at("features", y.mean((2, 3))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backbone_names_round_trip() {
        for s in ["resnet18", "resnet10", "resnet10-w0.5", "resnet34-w0.25"] {
            let c: BackboneConfig = s.parse().unwrap();
            assert_eq!(c.to_string(), s);
        }
        assert!("resnet50".parse::<BackboneConfig>().is_err());
        assert!("resnet18-w0".parse::<BackboneConfig>().is_err());
        assert_eq!(
            "resnet10-w0.5"
                .parse::<BackboneConfig>()
                .unwrap()
                .feature_dim(),
            256
        );
    }
}
