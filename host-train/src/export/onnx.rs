//! HydraNet → ONNX (IR 8, opset 13). The graph mirrors `net::resnet` and `net::hydra`
//! layer for layer, reading the same torchvision-style weight names.
use std::{collections::HashMap, path::Path};

use candle_core::{DType, Device, Tensor};
use models::Contract;
use prost::Message;
use tract_onnx::pb::{ModelProto, OperatorSetIdProto, StringStringEntryProto};

use super::graph::{Attr, Dim, GraphBuilder};
use crate::{
    net::BackboneConfig,
    train::checkpoint::{self, write_atomic},
    Error, Result,
};

/// ONNX IR version written.
pub const IR_VERSION: i64 = 8;
/// Default-domain opset written.
pub const OPSET: i64 = 13;
const BN_EPS: f32 = 1e-5;

/// How to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportOptions {
    /// Fold BatchNorm into the preceding convolution (weights and a bias) instead of
    /// emitting `BatchNormalization` nodes.
    pub fold_batchnorm: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            fold_batchnorm: true,
        }
    }
}

struct Weights<'a> {
    map: &'a HashMap<String, Tensor>,
}

impl Weights<'_> {
    fn get(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let t = self
            .map
            .get(name)
            .ok_or_else(|| Error::Config(format!("export: the weights have no `{name}`")))?;
        let dims = t.dims().to_vec();
        let v = t
            .to_dtype(DType::F32)?
            .to_device(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok((v, dims))
    }
}

struct Exporter<'a> {
    g: GraphBuilder,
    w: Weights<'a>,
    opts: ExportOptions,
}

impl Exporter<'_> {
    /// Conv (no bias in the network) followed by BatchNorm, optionally ReLU.
    fn conv_bn(
        &mut self,
        x: &str,
        conv: &str,
        bn: &str,
        stride: usize,
        relu: bool,
    ) -> Result<String> {
        let (mut w, wd) = self.w.get(&format!("{conv}.weight"))?;
        let (o, k) = (wd[0], wd[2]);
        let pad = (k / 2) as i64;
        let attrs = || {
            vec![
                ("kernel_shape", Attr::Ints(vec![k as i64, k as i64])),
                ("strides", Attr::Ints(vec![stride as i64, stride as i64])),
                ("pads", Attr::Ints(vec![pad, pad, pad, pad])),
                ("dilations", Attr::Ints(vec![1, 1])),
                ("group", Attr::Int(1)),
            ]
        };
        let (gamma, _) = self.w.get(&format!("{bn}.weight"))?;
        let (beta, _) = self.w.get(&format!("{bn}.bias"))?;
        let (mean, _) = self.w.get(&format!("{bn}.running_mean"))?;
        let (var, _) = self.w.get(&format!("{bn}.running_var"))?;
        let y = if self.opts.fold_batchnorm {
            // y = gamma * (conv(x) - mean) / sqrt(var + eps) + beta
            //   = conv_{w * s}(x) + (beta - mean * s),  s = gamma / sqrt(var + eps)
            let per = w.len() / o;
            let mut bias = vec![0f32; o];
            for c in 0..o {
                let s = gamma[c] / (var[c] + BN_EPS).sqrt();
                w[c * per..(c + 1) * per].iter_mut().for_each(|v| *v *= s);
                bias[c] = beta[c] - mean[c] * s;
            }
            let wn = self.g.init_f32(&format!("{conv}.weight"), &wd, &w);
            let bn_ = self.g.init_f32(&format!("{conv}.bias"), &[o], &bias);
            self.g.node("Conv", conv, &[x, &wn, &bn_], attrs())
        } else {
            let wn = self.g.init_f32(&format!("{conv}.weight"), &wd, &w);
            let c = self.g.node("Conv", conv, &[x, &wn], attrs());
            let names: Vec<String> = [
                ("weight", &gamma),
                ("bias", &beta),
                ("running_mean", &mean),
                ("running_var", &var),
            ]
            .iter()
            .map(|(n, v)| self.g.init_f32(&format!("{bn}.{n}"), &[o], v))
            .collect();
            self.g.node(
                "BatchNormalization",
                bn,
                &[&c, &names[0], &names[1], &names[2], &names[3]],
                vec![
                    ("epsilon", Attr::Float(BN_EPS)),
                    ("momentum", Attr::Float(0.9)),
                ],
            )
        };
        Ok(if relu {
            self.g.node("Relu", &format!("{bn}.relu"), &[&y], vec![])
        } else {
            y
        })
    }

    fn linear(&mut self, x: &str, name: &str, output: Option<&str>) -> Result<String> {
        let (w, wd) = self.w.get(&format!("{name}.weight"))?;
        let (b, bd) = self.w.get(&format!("{name}.bias"))?;
        let wn = self.g.init_f32(&format!("{name}.weight"), &wd, &w);
        let bn = self.g.init_f32(&format!("{name}.bias"), &bd, &b);
        let attrs = vec![("transB", Attr::Int(1))];
        Ok(match output {
            Some(out) => {
                self.g.node_to("Gemm", name, &[x, &wn, &bn], out, attrs);
                out.to_string()
            }
            None => self.g.node("Gemm", name, &[x, &wn, &bn], attrs),
        })
    }
}

/// Builds the ONNX model of a HydraNet from its weights (torchvision-style names).
pub fn hydranet_to_onnx(
    contract: &Contract,
    backbone: &BackboneConfig,
    weights: &HashMap<String, Tensor>,
    opts: ExportOptions,
) -> Result<ModelProto> {
    contract.validate()?;
    let mut e = Exporter {
        g: GraphBuilder::default(),
        w: Weights { map: weights },
        opts,
    };
    let pre = &contract.preprocess;
    e.g.input(
        "image",
        &[
            Dim::Symbolic("batch"),
            Dim::Fixed(3),
            Dim::Fixed(pre.height as i64),
            Dim::Fixed(pre.width as i64),
        ],
    );
    let mut x = e.conv_bn("image", "conv1", "bn1", 2, true)?;
    x = e.g.node(
        "MaxPool",
        "maxpool",
        &[&x],
        vec![
            ("kernel_shape", Attr::Ints(vec![2, 2])),
            ("strides", Attr::Ints(vec![2, 2])),
        ],
    );
    let ch = backbone.channels();
    let mut c_in = ch[0];
    for (i, (&n, &c)) in backbone.blocks.iter().zip(&ch).enumerate() {
        for b in 0..n {
            let p = format!("layer{}.{b}", i + 1);
            let stride = if i > 0 && b == 0 { 2 } else { 1 };
            let y = e.conv_bn(&x, &format!("{p}.conv1"), &format!("{p}.bn1"), stride, true)?;
            let y = e.conv_bn(&y, &format!("{p}.conv2"), &format!("{p}.bn2"), 1, false)?;
            let skip = if stride != 1 || c_in != c {
                e.conv_bn(
                    &x,
                    &format!("{p}.downsample.0"),
                    &format!("{p}.downsample.1"),
                    stride,
                    false,
                )?
            } else {
                x.clone()
            };
            let sum = e.g.node("Add", &format!("{p}.add"), &[&y, &skip], vec![]);
            x = e.g.node("Relu", &format!("{p}.relu"), &[&sum], vec![]);
            c_in = c;
        }
    }
    let pooled = e.g.node("GlobalAveragePool", "avgpool", &[&x], vec![]);
    let features = e.g.node(
        "Flatten",
        "features",
        &[&pooled],
        vec![("axis", Attr::Int(1))],
    );
    for head in &contract.heads {
        let p = format!("heads.{}", head.name);
        let h = e.linear(&features, &format!("{p}.0"), None)?;
        let h = e.g.node("Relu", &format!("{p}.relu"), &[&h], vec![]);
        e.linear(&h, &format!("{p}.2"), Some(&head.name))?;
        e.g.output(
            &head.name,
            &[
                Dim::Symbolic("batch"),
                Dim::Fixed(head.output_width() as i64),
            ],
        );
    }
    let mut metadata_props: Vec<StringStringEntryProto> = contract
        .to_metadata()
        .into_iter()
        .map(|(key, value)| StringStringEntryProto { key, value })
        .collect();
    metadata_props.push(StringStringEntryProto {
        key: "hydranet.export".into(),
        value: serde_json::json!({"fold_batchnorm": opts.fold_batchnorm, "opset": OPSET, "ir_version": IR_VERSION}).to_string(),
    });
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "hydranet host-train".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        domain: "hydranet".into(),
        model_version: 1,
        doc_string: format!(
            "HydraNet {} with heads {:?}",
            contract.architecture,
            contract.heads.iter().map(|h| &h.name).collect::<Vec<_>>()
        ),
        graph: Some(e.g.finish("hydranet")),
        metadata_props,
        ..Default::default()
    })
}

/// Exports a checkpoint to an ONNX file (written atomically). Returns the contract.
pub fn export_checkpoint(
    checkpoint_path: &Path,
    out: &Path,
    opts: ExportOptions,
) -> Result<Contract> {
    let ck = checkpoint::load(checkpoint_path, &Device::Cpu)?;
    let backbone: BackboneConfig =
        ck.contract
            .architecture
            .parse()
            .map_err(|e| Error::Checkpoint {
                path: checkpoint_path.into(),
                reason: e,
            })?;
    let model = hydranet_to_onnx(&ck.contract, &backbone, &ck.tensors, opts)?;
    write_atomic(out, &model.encode_to_vec())?;
    Ok(ck.contract)
}
