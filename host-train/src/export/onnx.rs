//! HydraNet → ONNX (IR 8, opset 13). The graph mirrors `net::resnet` and `net::hydra`
//! layer for layer, reading the same torchvision-style weight names.
use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
};

use candle_core::{DType, Device, Tensor};
use models::Contract;
use prost::Message;
use tract_onnx::pb::{ModelProto, OperatorSetIdProto, StringStringEntryProto};

use super::graph::{Attr, Dim, GraphBuilder};
use crate::{
    files::write_atomic,
    net::{BackboneConfig, BN_EPS},
    quant::{quantize_bias, ActQuant, ChannelQuant},
    train::checkpoint,
    Error, Result,
};

/// ONNX IR version written.
pub const IR_VERSION: i64 = 8;
/// Default-domain opset written.
pub const OPSET: i64 = 13;

/// How to export.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportOptions {
    /// Fold BatchNorm into the preceding convolution (weights and a bias) instead of
    /// emitting `BatchNormalization` nodes.
    pub fold_batchnorm: bool,
    /// Write int8 weights (and activations, for [`QuantForm::Qdq`]); needs folding.
    pub quant: Option<QuantExport>,
    /// Test-time flip inside the graph: a second copy of the network (same weights) runs
    /// the mirror image and each head's output is the mean of the two (recorded as
    /// [`models::Contract::test_time_flip`]). Twice the body's compute for one model file
    /// that any runtime runs unchanged.
    pub test_time_flip: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            fold_batchnorm: true,
            quant: None,
            test_time_flip: false,
        }
    }
}

/// The ONNX form of a quantized model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QuantForm {
    /// Static int8: `QuantizeLinear`/`DequantizeLinear` at every activation point and on
    /// the weights (the form onnxruntime fuses into integer kernels).
    Qdq,
    /// Static int8 with integer convolutions: `QLinearConv` on uint8 codes, residual
    /// joins and heads through `DequantizeLinear` in float.
    Qlinear,
    /// Int8 weights dequantized by the runtime at load; activations stay float.
    Weights,
}

impl QuantForm {
    /// The name written in the contract.
    pub fn as_str(&self) -> &'static str {
        match self {
            QuantForm::Qdq => "qdq",
            QuantForm::Qlinear => "qlinear",
            QuantForm::Weights => "weights",
        }
    }
}

/// What an int8 export needs besides the weights.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantExport {
    /// The ONNX form.
    pub form: QuantForm,
    /// The calibrated grid of every activation point (used by [`QuantForm::Qdq`]).
    pub acts: BTreeMap<String, ActQuant>,
    /// What the contract says about it.
    pub info: models::Quantization,
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

/// A tensor of the graph being built: float, or uint8 codes on a grid (QLinear form).
#[derive(Clone)]
enum V {
    F(String),
    Q {
        codes: String,
        grid: ActQuant,
        scale: String,
        zero_point: String,
    },
}

struct Exporter<'a> {
    g: GraphBuilder,
    w: Weights<'a>,
    opts: &'a ExportOptions,
    /// The grid of each dequantized tensor, for the int32 biases of its consumers.
    grids: HashMap<String, ActQuant>,
}

impl Exporter<'_> {
    fn form(&self) -> Option<QuantForm> {
        self.opts.quant.as_ref().map(|q| q.form)
    }

    /// The calibrated grid of `point`.
    fn grid(&self, point: &str) -> Result<ActQuant> {
        self.opts
            .quant
            .as_ref()
            .and_then(|q| q.acts.get(point).copied())
            .ok_or_else(|| {
                Error::Config(format!(
                    "export: the calibration has no range for `{point}`"
                ))
            })
    }

    /// Scale and zero-point initialisers of `point`'s grid.
    fn grid_inits(&mut self, point: &str, grid: ActQuant) -> (String, String) {
        let s = self
            .g
            .init_f32(&format!("{point}.scale"), &[], &[grid.scale]);
        let z = self
            .g
            .init_u8(&format!("{point}.zero_point"), &[], &[grid.zero_point]);
        (s, z)
    }

    /// Activation `x` at `point`: quantized and dequantized (QDQ), quantized (QLinear),
    /// or left alone (float and weight-only exports).
    fn act(&mut self, x: &str, point: &str) -> Result<V> {
        match self.form() {
            Some(QuantForm::Qdq) => {
                let grid = self.grid(point)?;
                Ok(V::F(self.qdq(x, point, grid)))
            }
            Some(QuantForm::Qlinear) => {
                let grid = self.grid(point)?;
                let (s, z) = self.grid_inits(point, grid);
                let q = format!("{point}.quantized");
                self.g.node_to(
                    "QuantizeLinear",
                    &format!("{point}.quantize"),
                    &[x, &s, &z],
                    &q,
                    vec![],
                );
                Ok(V::Q {
                    codes: q,
                    grid,
                    scale: s,
                    zero_point: z,
                })
            }
            _ => Ok(V::F(x.into())),
        }
    }

    /// `x → QuantizeLinear → DequantizeLinear` on `grid`, named after `name`.
    fn qdq(&mut self, x: &str, name: &str, grid: ActQuant) -> String {
        let (s, z) = self.grid_inits(name, grid);
        let q = format!("{name}.quantized");
        self.g.node_to(
            "QuantizeLinear",
            &format!("{name}.quantize"),
            &[x, &s, &z],
            &q,
            vec![],
        );
        let out = format!("{name}.dq");
        self.g.node_to(
            "DequantizeLinear",
            &format!("{name}.dequantize"),
            &[&q, &s, &z],
            &out,
            vec![],
        );
        self.grids.insert(out.clone(), grid);
        out
    }

    /// The float tensor of `v` (dequantized once, when it is codes).
    fn float(&mut self, v: &V) -> String {
        match v {
            V::F(n) => n.clone(),
            V::Q {
                codes,
                grid,
                scale,
                zero_point,
            } => {
                let out = format!("{codes}.dq");
                if !self.grids.contains_key(&out) {
                    self.g.node_to(
                        "DequantizeLinear",
                        &format!("{codes}.dequantize"),
                        &[codes, scale, zero_point],
                        &out,
                        vec![],
                    );
                    self.grids.insert(out.clone(), *grid);
                }
                out
            }
        }
    }

    /// Int8 codes per output channel, their scales and (zero) zero points.
    fn int8_weight(&mut self, name: &str, w: &[f32], wd: &[usize]) -> (ChannelQuant, [String; 3]) {
        let o = wd[0];
        let cq = ChannelQuant::new(w, o);
        let codes = self
            .g
            .init_i8(&format!("{name}.weight_quantized"), wd, &cq.codes);
        let scale = self
            .g
            .init_f32(&format!("{name}.weight_scale"), &[o], &cq.scales);
        let zp = self
            .g
            .init_i8(&format!("{name}.weight_zero_point"), &[o], &vec![0; o]);
        (cq, [codes, scale, zp])
    }

    /// Weight (and bias) tensors of layer `name` reading `input`: float initialisers, or
    /// int8 codes per output channel behind `DequantizeLinear` (an int32 bias too when
    /// `input` is quantized). Returns the weight and bias tensor names.
    fn params(
        &mut self,
        name: &str,
        w: &[f32],
        wd: &[usize],
        bias: Option<&[f32]>,
        input: &str,
    ) -> (String, Option<String>) {
        if self.opts.quant.is_none() {
            let wn = self.g.init_f32(&format!("{name}.weight"), wd, w);
            let bn = bias.map(|b| self.g.init_f32(&format!("{name}.bias"), &[b.len()], b));
            return (wn, bn);
        }
        let o = wd[0];
        let (cq, [codes, scale, zp]) = self.int8_weight(name, w, wd);
        let wn = format!("{name}.weight");
        self.g.node_to(
            "DequantizeLinear",
            &format!("{name}.weight_dequantize"),
            &[&codes, &scale, &zp],
            &wn,
            vec![("axis", Attr::Int(0))],
        );
        let bn = bias.map(|b| match self.grids.get(input).copied() {
            Some(grid) => {
                let (q, s) = quantize_bias(b, grid.scale, &cq.scales);
                let codes = self.g.init_i32(&format!("{name}.bias_quantized"), &[o], &q);
                let scale = self.g.init_f32(&format!("{name}.bias_scale"), &[o], &s);
                let zp = self
                    .g
                    .init_i32(&format!("{name}.bias_zero_point"), &[o], &vec![0; o]);
                let out = format!("{name}.bias");
                self.g.node_to(
                    "DequantizeLinear",
                    &format!("{name}.bias_dequantize"),
                    &[&codes, &scale, &zp],
                    &out,
                    vec![("axis", Attr::Int(0))],
                );
                out
            }
            None => self.g.init_f32(&format!("{name}.bias"), &[o], b),
        });
        (wn, bn)
    }

    /// Conv (no bias in the network) followed by BatchNorm, optionally ReLU, then the
    /// activation point `point`.
    fn conv_bn(
        &mut self,
        x: &V,
        conv: &str,
        bn: &str,
        stride: usize,
        relu: bool,
        point: &str,
    ) -> Result<V> {
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
        if !self.opts.fold_batchnorm {
            let x = self.float(x);
            let (wn, _) = self.params(conv, &w, &wd, None, &x);
            let c = self.g.node("Conv", conv, &[&x, &wn], attrs());
            let names: Vec<String> = [
                ("weight", &gamma),
                ("bias", &beta),
                ("running_mean", &mean),
                ("running_var", &var),
            ]
            .iter()
            .map(|(n, v)| self.g.init_f32(&format!("{bn}.{n}"), &[o], v))
            .collect();
            let y = self.g.node(
                "BatchNormalization",
                bn,
                &[&c, &names[0], &names[1], &names[2], &names[3]],
                vec![
                    ("epsilon", Attr::Float(BN_EPS as f32)),
                    ("momentum", Attr::Float(0.9)),
                ],
            );
            let y = match relu {
                true => self.g.node("Relu", &format!("{bn}.relu"), &[&y], vec![]),
                false => y,
            };
            return self.act(&y, point);
        }
        // y = gamma * (conv(x) - mean) / sqrt(var + eps) + beta
        //   = conv_{w * s}(x) + (beta - mean * s),  s = gamma / sqrt(var + eps)
        let per = w.len() / o;
        let mut bias = vec![0f32; o];
        for c in 0..o {
            let s = gamma[c] / (var[c] + BN_EPS as f32).sqrt();
            w[c * per..(c + 1) * per].iter_mut().for_each(|v| *v *= s);
            bias[c] = beta[c] - mean[c] * s;
        }
        if let (
            Some(QuantForm::Qlinear),
            V::Q {
                codes,
                grid,
                scale,
                zero_point,
            },
        ) = (self.form(), x)
        {
            // Integer convolution; the output grid's saturation at code 0 (zero point 0
            // on a ReLU's non-negative range) is the ReLU.
            let out_grid = self.grid(point)?;
            if relu && out_grid.zero_point != 0 {
                return Err(Error::Config(format!(
                    "export: `{point}` follows a ReLU but its grid has zero point {}",
                    out_grid.zero_point
                )));
            }
            let (cq, [wq, ws, wz]) = self.int8_weight(conv, &w, &wd);
            let (q, _) = quantize_bias(&bias, grid.scale, &cq.scales);
            let b = self.g.init_i32(&format!("{conv}.bias_quantized"), &[o], &q);
            let (ys, yz) = self.grid_inits(point, out_grid);
            let y = format!("{point}.quantized");
            self.g.node_to(
                "QLinearConv",
                conv,
                &[codes, scale, zero_point, &wq, &ws, &wz, &ys, &yz, &b],
                &y,
                attrs(),
            );
            return Ok(V::Q {
                codes: y,
                grid: out_grid,
                scale: ys,
                zero_point: yz,
            });
        }
        let x = self.float(x);
        let (wn, bn_) = self.params(conv, &w, &wd, Some(&bias), &x);
        let bn_ = bn_.unwrap_or_default();
        let y = self.g.node("Conv", conv, &[&x, &wn, &bn_], attrs());
        let y = match relu {
            true => self.g.node("Relu", &format!("{bn}.relu"), &[&y], vec![]),
            false => y,
        };
        self.act(&y, point)
    }

    fn linear(&mut self, x: &str, name: &str, output: Option<&str>) -> Result<String> {
        let (w, wd) = self.w.get(&format!("{name}.weight"))?;
        let (b, _) = self.w.get(&format!("{name}.bias"))?;
        let (wn, bn) = self.params(name, &w, &wd, Some(&b), x);
        let bn = bn.unwrap_or_default();
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
    opts: &ExportOptions,
) -> Result<ModelProto> {
    contract.validate()?;
    if opts.quant.is_some() && !opts.fold_batchnorm {
        return Err(Error::Config(
            "export: int8 needs BatchNorm folded (drop --keep-batchnorm)".into(),
        ));
    }
    let mut e = Exporter {
        g: GraphBuilder::default(),
        w: Weights { map: weights },
        opts,
        grids: HashMap::new(),
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
    let flip = opts.test_time_flip;
    let image = e.act("image", "image")?;
    let stem = e.conv_bn(&image, "conv1", "bn1", 2, true, "bn1.relu")?;
    let pool = vec![
        ("kernel_shape", Attr::Ints(vec![2, 2])),
        ("strides", Attr::Ints(vec![2, 2])),
    ];
    // Max-pooling keeps the stem's grid: on codes it pools the codes; in QDQ form the
    // pooled floats are quantized again on the same grid so runtimes can pool in int8.
    let mut x = match (&stem, e.form()) {
        (
            V::Q {
                codes,
                grid,
                scale,
                zero_point,
            },
            _,
        ) => V::Q {
            codes: e.g.node("MaxPool", "maxpool", &[codes], pool),
            grid: *grid,
            scale: scale.clone(),
            zero_point: zero_point.clone(),
        },
        (V::F(f), Some(QuantForm::Qdq)) => {
            let p = e.g.node("MaxPool", "maxpool", &[f], pool);
            let grid = e.grid("bn1.relu")?;
            V::F(e.qdq(&p, "maxpool", grid))
        }
        (V::F(f), _) => V::F(e.g.node("MaxPool", "maxpool", &[f], pool)),
    };
    let ch = backbone.channels();
    let mut c_in = ch[0];
    for (i, (&n, &c)) in backbone.blocks.iter().zip(&ch).enumerate() {
        for b in 0..n {
            let p = format!("layer{}.{b}", i + 1);
            let stride = if i > 0 && b == 0 { 2 } else { 1 };
            let (bn1, bn2) = (format!("{p}.bn1"), format!("{p}.bn2"));
            let y = e.conv_bn(
                &x,
                &format!("{p}.conv1"),
                &bn1,
                stride,
                true,
                &format!("{bn1}.relu"),
            )?;
            let y = e.conv_bn(&y, &format!("{p}.conv2"), &bn2, 1, false, &bn2)?;
            let skip = if stride != 1 || c_in != c {
                let ds = format!("{p}.downsample.1");
                e.conv_bn(&x, &format!("{p}.downsample.0"), &ds, stride, false, &ds)?
            } else {
                x.clone()
            };
            let (y, skip) = (e.float(&y), e.float(&skip));
            let sum = e.g.node("Add", &format!("{p}.add"), &[&y, &skip], vec![]);
            let r = e.g.node("Relu", &format!("{p}.relu"), &[&sum], vec![]);
            x = e.act(&r, &format!("{p}.relu"))?;
            c_in = c;
        }
    }
    let x = e.float(&x);
    let pooled = e.g.node("GlobalAveragePool", "avgpool", &[&x], vec![]);
    let features = e.g.node(
        "Flatten",
        "features",
        &[&pooled],
        vec![("axis", Attr::Int(1))],
    );
    let features = e.act(&features, "features")?;
    let features = e.float(&features);
    for head in &contract.heads {
        let p = crate::names::head(&head.name);
        let h = e.linear(&features, &format!("{p}.0"), None)?;
        let h = e.g.node("Relu", &format!("{p}.relu"), &[&h], vec![]);
        let h = e.act(&h, &format!("{p}.relu"))?;
        let h = e.float(&h);
        e.linear(&h, &format!("{p}.2"), Some(&head.name))?;
        e.g.output(
            &head.name,
            &[
                Dim::Symbolic("batch"),
                Dim::Fixed(head.output_width() as i64),
            ],
        );
    }
    let mut graph = e.g.finish("hydranet");
    if flip {
        let heads: Vec<&str> = contract.heads.iter().map(|h| h.name.as_str()).collect();
        super::flip::add_test_time_flip(&mut graph, "image", &heads, pre.width as usize);
    }
    let mut contract = contract.clone();
    contract.quantization = opts.quant.as_ref().map(|q| q.info.clone());
    contract.test_time_flip = flip;
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
        graph: Some(graph),
        metadata_props,
        ..Default::default()
    })
}

/// Exports a checkpoint to an ONNX file (written atomically). Returns the contract.
pub fn export_checkpoint(
    checkpoint_path: &Path,
    out: &Path,
    opts: &ExportOptions,
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
    let mut contract = ck.contract;
    contract.quantization = opts.quant.as_ref().map(|q| q.info.clone());
    contract.test_time_flip = opts.test_time_flip;
    Ok(contract)
}
