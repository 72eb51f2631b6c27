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
    test_time_flip: bool,
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
        let hv = vb.pp(crate::names::HEADS);
        let built = heads
            .iter()
            .map(|h| Head::new(f, h.output_width(), hv.pp(&h.name)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            body,
            heads: built,
            names: heads.iter().map(|h| h.name.clone()).collect(),
            tap: None,
            test_time_flip: false,
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

    /// The same network averaging, in inference, each head's output on the image and on its
    /// mirror image — what an export with [`models::Contract::test_time_flip`] does in the
    /// graph, so Candle scores the same function the edge runs.
    pub fn with_test_time_flip(mut self, on: bool) -> Self {
        self.test_time_flip = on;
        self
    }

    /// Whether inference averages over the mirror image.
    pub fn test_time_flip(&self) -> bool {
        self.test_time_flip
    }

    /// Body once, then every head.
    ///
    /// # Shapes
    /// `x`: `[N, 3, H, W]` → one `[N, width_h]` per head, in contract order.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        if self.test_time_flip && !train {
            return self.forward_flip_averaged(x);
        }
        let f = self.features(x, train)?;
        self.heads_forward(&f)
    }

    /// Image and mirror image as one batch of `2N`, then the mean of the two halves of every
    /// head's output: the function of the exported graph's two copies (export/flip.rs).
    fn forward_flip_averaged(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let (n, _, _, w) = x.dims4()?;
        let rev: Vec<u32> = (0..w as u32).rev().collect();
        let rev = Tensor::new(rev.as_slice(), x.device())?;
        let both = Tensor::cat(&[x, &x.index_select(&rev, 3)?], 0)?;
        let f = self.features(&both, false)?;
        self.heads_forward(&f)?
            .into_iter()
            .map(|o| (o.narrow(0, 0, n)? + o.narrow(0, n, n)?)? * 0.5)
            .collect()
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

    #[test]
    fn test_time_flip_averages_image_and_mirror() {
        let cfg: BackboneConfig = "resnet10-w0.25".parse().unwrap();
        let (net, _) =
            HydraNet::fresh(&cfg, &utkface_heads(), Kernels::Fast, 3, &Device::Cpu).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 3, 32, 32), &Device::Cpu).unwrap();
        let rev = Tensor::new(
            (0..32u32).rev().collect::<Vec<_>>().as_slice(),
            &Device::Cpu,
        )
        .unwrap();
        let mirror = x.index_select(&rev, 3).unwrap();
        let plain = net.forward_t(&x, false).unwrap();
        let plain_m = net.forward_t(&mirror, false).unwrap();
        let net = net.with_test_time_flip(true);
        let tta = net.forward_t(&x, false).unwrap();
        let tta_m = net.forward_t(&mirror, false).unwrap();
        for h in 0..3 {
            let a = tta[h].flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let b = tta_m[h].flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let p = plain[h].flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let q = plain_m[h].flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for i in 0..a.len() {
                // The mean of both views, and so the same for an image and its mirror.
                assert!((a[i] - (p[i] + q[i]) / 2.0).abs() < 1e-4, "head {h}");
                assert!((a[i] - b[i]).abs() < 1e-4, "head {h}");
            }
            assert_ne!(
                a, p,
                "head {h}: the mirror changes the answer of a random net"
            );
        }
    }
}
