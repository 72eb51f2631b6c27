//! Reads an ONNX file this exporter wrote back into Candle: the weights (dequantized from
//! int8 where they are int8) under the network's own names, the activation grids, the
//! contract. `host-train eval --model` scores the file with it, so a quantized model is
//! judged by what it holds, not by the checkpoint it came from.
//!
//! Folded BatchNorm comes back as an identity norm around the conv bias (mean 0, variance
//! `1 - eps`, scale 1, shift = bias), so the ordinary [`HydraNet`] runs the folded graph.
use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::Arc,
};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use models::{tensor::TensorData, Contract};
use prost::Message;
use tract_onnx::pb::{tensor_proto::DataType, ModelProto, TensorProto};

use crate::{
    kernels::Kernels,
    net::{BackboneConfig, HydraNet, BN_EPS},
    quant::{fake::FakeQuant, ActQuant},
    Error, Result,
};

/// A HydraNet rebuilt from an ONNX file.
pub struct Imported {
    /// The contract from the file's metadata.
    pub contract: Contract,
    /// The network, with simulated int8 activations when the file has them.
    pub net: HydraNet,
    /// The activation grids found (empty for float activations).
    pub grids: BTreeMap<String, ActQuant>,
    /// The weights under the network's names (a folded norm as its identity norm), as a
    /// checkpoint holds them: `finetune` starts from an exported file with these.
    pub tensors: HashMap<String, Tensor>,
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.into(),
        reason: reason.into(),
    }
}

/// An initialiser's values as f32 (float, int8, uint8 and int32 data).
fn values(t: &TensorProto) -> std::result::Result<Vec<f32>, String> {
    tensor_data(t)
        .values_f32()
        .ok_or_else(|| match DataType::try_from(t.data_type) {
            Ok(other) => format!("`{}`: unsupported type {other:?}", t.name),
            Err(_) => format!("`{}`: unknown type", t.name),
        })
}

fn tensor_data(t: &TensorProto) -> TensorData<'_> {
    TensorData::new(t.data_type, &t.raw_data, &t.float_data, &t.int32_data)
}

/// The BatchNorm that follows conv `name` in the network.
fn norm_of(conv: &str) -> String {
    match conv.strip_suffix("downsample.0") {
        Some(p) => format!("{p}downsample.1"),
        None => match conv.rsplit_once("conv") {
            Some((p, i)) => format!("{p}bn{i}"),
            None => format!("{conv}.bn"),
        },
    }
}

/// Loads `path` and rebuilds its network on `device`.
pub fn load_onnx(path: &Path, device: &Device) -> Result<Imported> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.into(),
        source: e,
    })?;
    let model = ModelProto::decode(bytes.as_slice())
        .map_err(|e| bad(path, format!("not an ONNX model: {e}")))?;
    let contract = Contract::from_metadata(
        model
            .metadata_props
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str())),
    )
    .map_err(|e| bad(path, format!("no usable HydraNet contract: {e}")))?;
    let backbone: BackboneConfig = contract
        .architecture
        .parse()
        .map_err(|e: String| bad(path, e))?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| bad(path, "the model has no graph"))?;
    let inits: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let get = |name: &str| -> Result<Option<(Vec<f32>, Vec<usize>)>> {
        match inits.get(name) {
            None => Ok(None),
            Some(t) => {
                let v = values(t).map_err(|e| bad(path, e))?;
                let dims: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
                if dims.iter().product::<usize>() != v.len() {
                    return Err(bad(
                        path,
                        format!("`{name}`: {} values for {dims:?}", v.len()),
                    ));
                }
                Ok(Some((v, dims)))
            }
        }
    };
    // A float tensor, or int8/int32 codes times their per-channel scale.
    let param = |name: &str| -> Result<Option<(Vec<f32>, Vec<usize>)>> {
        if let Some(t) = get(name)? {
            return Ok(Some(t));
        }
        let (Some((codes, dims)), Some((scales, _))) = (
            get(&format!("{name}_quantized"))?,
            get(&format!("{name}_scale"))?,
        ) else {
            return Ok(None);
        };
        let per = codes.len() / scales.len().max(1);
        let v = codes
            .chunks(per.max(1))
            .zip(&scales)
            .flat_map(|(row, s)| row.iter().map(move |q| q * s))
            .collect();
        Ok(Some((v, dims)))
    };
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut put = |name: String, v: Vec<f32>, dims: &[usize]| -> Result<()> {
        tensors.insert(name, Tensor::from_vec(v, dims, device)?);
        Ok(())
    };
    for node in &graph.node {
        let name = node.name.as_str();
        // The test-time flip's mirror copy shares the first copy's weights.
        if name.starts_with(super::flip::MIRROR) {
            continue;
        }
        match node.op_type.as_str() {
            op @ ("Conv" | "QLinearConv") => {
                let (w, wd) = param(&format!("{name}.weight"))?
                    .ok_or_else(|| bad(path, format!("conv `{name}` has no weight")))?;
                let o = wd.first().copied().unwrap_or(0);
                put(format!("{name}.weight"), w, &wd)?;
                let bn = norm_of(name);
                let bias = if op == "QLinearConv" {
                    // Inputs: x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, bias;
                    // the int32 bias's scale is x_scale * w_scale.
                    let input = |i: usize| node.input.get(i).map(String::as_str).unwrap_or("");
                    match (get(input(8))?, get(input(1))?, get(input(4))?) {
                        (Some((b, _)), Some((xs, _)), Some((ws, _))) => Some((
                            b.iter()
                                .zip(&ws)
                                .map(|(q, s)| q * s * xs.first().copied().unwrap_or(0.0))
                                .collect(),
                            vec![o],
                        )),
                        _ => None,
                    }
                } else {
                    param(&format!("{name}.bias"))?
                };
                match bias {
                    // Folded: an identity norm carrying the bias.
                    Some((b, _)) => {
                        put(format!("{bn}.weight"), vec![1.0; o], &[o])?;
                        put(format!("{bn}.bias"), b, &[o])?;
                        put(format!("{bn}.running_mean"), vec![0.0; o], &[o])?;
                        put(
                            format!("{bn}.running_var"),
                            vec![1.0 - BN_EPS as f32; o],
                            &[o],
                        )?;
                    }
                    None => {
                        for p in ["weight", "bias", "running_mean", "running_var"] {
                            let (v, d) = get(&format!("{bn}.{p}"))?
                                .ok_or_else(|| bad(path, format!("`{bn}.{p}` missing")))?;
                            put(format!("{bn}.{p}"), v, &d)?;
                        }
                    }
                }
            }
            "Gemm" => {
                for p in ["weight", "bias"] {
                    let (v, d) = param(&format!("{name}.{p}"))?
                        .ok_or_else(|| bad(path, format!("`{name}.{p}` missing")))?;
                    put(format!("{name}.{p}"), v, &d)?;
                }
            }
            _ => {}
        }
    }
    // Activation grids: `<point>.scale` with a uint8 `<point>.zero_point`.
    let mut grids = BTreeMap::new();
    for (&n, t) in &inits {
        let Some(point) = n.strip_suffix(".zero_point") else {
            continue;
        };
        if t.data_type != DataType::Uint8 as i32 || point == "maxpool" {
            continue;
        }
        let (Some((z, _)), Some((s, _))) = (get(n)?, get(&format!("{point}.scale"))?) else {
            continue;
        };
        if let (Some(&z), Some(&s)) = (z.first(), s.first()) {
            grids.insert(
                point.to_string(),
                ActQuant {
                    scale: s,
                    zero_point: z as u8,
                },
            );
        }
    }
    let vb = VarBuilder::from_tensors(tensors.clone(), DType::F32, device);
    let mut net = HydraNet::new(&backbone, &contract.heads, Kernels::Fast, vb).map_err(|e| {
        bad(
            path,
            format!("weights do not fit {}: {e}", contract.architecture),
        )
    })?;
    net = net.with_test_time_flip(contract.test_time_flip);
    if !grids.is_empty() {
        net = net.with_tap(Arc::new(FakeQuant {
            points: grids.clone(),
        }));
    }
    Ok(Imported {
        contract,
        net,
        grids,
        tensors,
    })
}

#[cfg(test)]
mod tests {
    use super::norm_of;

    #[test]
    fn finds_the_norm_after_each_conv() {
        assert_eq!(norm_of("conv1"), "bn1");
        assert_eq!(norm_of("layer2.0.conv2"), "layer2.0.bn2");
        assert_eq!(norm_of("layer2.0.downsample.0"), "layer2.0.downsample.1");
    }
}
