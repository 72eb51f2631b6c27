//! HydraNet: one shared body run once per forward, one small head per contract entry.
//!
//! The heads come from the [`models`] contract, so a new head is a new contract entry, not
//! new training code. Head `h` lives under `heads.<h>.0` and `heads.<h>.2` (Linear, ReLU,
//! Linear, named like the reference's `nn.Sequential`).
use std::sync::Arc;

use candle_core::{DType, Device, ModuleT, Result, Tensor};
use candle_nn::{linear, Linear, Module, VarBuilder, VarMap};
use models::HeadSpec;

use super::{
    init,
    resnet::ResNet,
    tap::{NoTap, Tap},
    BackboneConfig,
};
use crate::kernels::Kernels;

struct Head {
    fc1: Linear,
    fc2: Linear,
    /// The hidden activation's point ([`Tap`]).
    point: String,
}

impl Head {
    fn new(features: usize, out: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            fc1: linear(features, features, vb.pp("0"))?,
            fc2: linear(features, out, vb.pp("2"))?,
            point: format!("{}.relu", vb.prefix()),
        })
    }

    fn forward(&self, f: &Tensor, tap: &dyn Tap) -> Result<Tensor> {
        self.fc2
            .forward(&tap.at(&self.point, self.fc1.forward(f)?.relu()?)?)
    }
}

/// The multi-task network.
pub struct HydraNet {
    body: ResNet,
    heads: Vec<Head>,
    names: Vec<String>,
    tap: Option<Arc<dyn Tap>>,
}

impl HydraNet {
    /// Builds the network under `vb`: the body at the root, heads under `heads.<name>`.
    pub fn new(
        backbone: &BackboneConfig,
        heads: &[HeadSpec],
        kernels: Kernels,
        vb: VarBuilder,
    ) -> Result<Self> {
        let body = ResNet::new(backbone, kernels, vb.clone())?;
        let f = body.feature_dim();
        let hv = vb.pp("heads");
        let built = heads
            .iter()
            .map(|h| Head::new(f, h.output_width(), hv.pp(&h.name)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            body,
            heads: built,
            names: heads.iter().map(|h| h.name.clone()).collect(),
            tap: None,
        })
    }

    /// The same network with every activation point passed through `tap` (calibration,
    /// simulated int8); see [`super::tap`].
    pub fn with_tap(mut self, tap: Arc<dyn Tap>) -> Self {
        self.tap = Some(tap);
        self
    }

    fn tap(&self) -> &dyn Tap {
        self.tap.as_deref().unwrap_or(&NoTap)
    }

    /// A fresh network with seeded initial weights, and the map that owns its variables.
    pub fn fresh(
        backbone: &BackboneConfig,
        heads: &[HeadSpec],
        kernels: Kernels,
        seed: u64,
        device: &Device,
    ) -> Result<(Self, VarMap)> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let net = Self::new(backbone, heads, kernels, vb)?;
        init::reinit(&varmap, seed)?;
        Ok((net, varmap))
    }

    /// Head names in output order.
    pub fn head_names(&self) -> &[String] {
        &self.names
    }

    /// Body features, computed once.
    ///
    /// # Shapes
    /// `x`: `[N, 3, H, W]` → `[N, F]`.
    pub fn features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.body.forward_t(x, train, self.tap())
    }

    /// Every head's raw output from the body features.
    ///
    /// # Shapes
    /// `f`: `[N, F]` → one `[N, width_h]` per head.
    pub fn heads_forward(&self, f: &Tensor) -> Result<Vec<Tensor>> {
        self.heads
            .iter()
            .map(|h| h.forward(f, self.tap()))
            .collect()
    }

    /// One head's raw output (by contract index) from the body features.
    ///
    /// # Shapes
    /// `f`: `[N, F]` → `[N, width_h]`.
    pub fn head_forward(&self, index: usize, f: &Tensor) -> Result<Tensor> {
        let head = self.heads.get(index).ok_or_else(|| {
            candle_core::Error::Msg(format!("no head {index} of {}", self.heads.len()))
        })?;
        head.forward(f, self.tap())
    }

    /// Body once, then every head.
    ///
    /// # Shapes
    /// `x`: `[N, 3, H, W]` → one `[N, width_h]` per head, in contract order.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        let f = self.features(x, train)?;
        self.heads_forward(&f)
    }
}

impl ModuleT for HydraNet {
    /// All heads concatenated along dim 1, for callers that want one tensor.
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Tensor::cat(&HydraNet::forward_t(self, x, train)?, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use models::heads::utkface_heads;

    #[test]
    fn outputs_one_tensor_per_head_and_torchvision_names() {
        let cfg: BackboneConfig = "resnet10-w0.25".parse().unwrap();
        let (net, vm) =
            HydraNet::fresh(&cfg, &utkface_heads(), Kernels::Fast, 1, &Device::Cpu).unwrap();
        let x = Tensor::zeros((2, 3, 32, 32), DType::F32, &Device::Cpu).unwrap();
        let out = net.forward_t(&x, false).unwrap();
        let dims: Vec<_> = out.iter().map(|t| t.dims().to_vec()).collect();
        assert_eq!(dims, vec![vec![2, 1], vec![2, 1], vec![2, 5]]);
        let data = vm.data().lock().unwrap();
        for n in [
            "conv1.weight",
            "bn1.running_var",
            "layer2.0.downsample.0.weight",
            "layer4.0.bn2.bias",
            "heads.ethnicity.2.weight",
        ] {
            assert!(data.contains_key(n), "{n} missing");
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_weights() {
        let cfg: BackboneConfig = "resnet10-w0.25".parse().unwrap();
        let (_, a) =
            HydraNet::fresh(&cfg, &utkface_heads(), Kernels::Fast, 7, &Device::Cpu).unwrap();
        let (_, b) =
            HydraNet::fresh(&cfg, &utkface_heads(), Kernels::Fast, 7, &Device::Cpu).unwrap();
        let (_, c) =
            HydraNet::fresh(&cfg, &utkface_heads(), Kernels::Fast, 8, &Device::Cpu).unwrap();
        let get = |m: &VarMap| {
            m.data().lock().unwrap()["layer1.0.conv1.weight"]
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(get(&a), get(&b));
        assert_ne!(get(&a), get(&c));
    }
}
