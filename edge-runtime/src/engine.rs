//! The tract engine: ONNX file → contract + optimised plan → typed predictions.
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use image::DynamicImage;
use models::{decode::decode, preprocess::preprocess_into, Contract, Prediction};
use prost::Message;
use tract_onnx::{pb, prelude::*};

use crate::{Error, Result};

/// How an int8 file's convolutions run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Int8Kernel {
    /// The edge runtime's integer convolution ([`crate::qconv`]): each quantize →
    /// dequantize → convolution chain runs on int8 codes with int32 sums.
    #[default]
    Edge,
    /// tract's own handling of the same graph (float convolutions between
    /// quantize/dequantize pairs); kept for side-by-side measurements.
    Tract,
}

/// Choices made when loading a model; the file alone decides everything else.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    pub int8_kernel: Int8Kernel,
}

/// A loaded HydraNet: its contract and a tract plan for a fixed batch size, plus plans for
/// other batch sizes when it runs a variable number of faces per frame.
pub struct Engine {
    contract: Contract,
    plan: Arc<TypedRunnableModel>,
    batch: usize,
    /// More plans, by batch size, ascending ([`Engine::load_for_faces`]).
    more: Vec<(usize, Arc<TypedRunnableModel>)>,
    path: PathBuf,
    /// `order[h]`: position of head `h`'s output among the plan's outputs.
    order: Vec<usize>,
    fused: crate::qconv::Fused,
}

/// The graph's inputs that are not initialisers: what a caller feeds.
pub(crate) fn data_inputs(graph: &pb::GraphProto) -> Vec<&pb::ValueInfoProto> {
    let initialisers: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    graph
        .input
        .iter()
        .filter(|i| !initialisers.contains(i.name.as_str()))
        .collect()
}

/// A tensor's dimensions (`None` for a symbolic one).
pub(crate) fn dims_of(v: &pb::ValueInfoProto) -> Option<Vec<Option<i64>>> {
    use pb::{tensor_shape_proto::dimension::Value, type_proto::Value as T};
    let T::TensorType(t) = v.r#type.as_ref()?.value.as_ref()?;
    Some(
        t.shape
            .as_ref()?
            .dim
            .iter()
            .map(|d| match d.value {
                Some(Value::DimValue(n)) => Some(n),
                _ => None,
            })
            .collect(),
    )
}

/// What the engine does to a decoded file before tract parses it, and the tract ONNX
/// front end that parses the result: int8 convolutions fused into the edge runtime's own
/// op ([`crate::qconv`], unless `options` says otherwise), then constant
/// `DequantizeLinear`s folded into float initialisers. Public for diagnostics (the `plan`
/// example).
pub fn prepare(
    proto: &mut pb::ModelProto,
    options: LoadOptions,
) -> (tract_onnx::Onnx, crate::qconv::Fused) {
    let mut fused = crate::qconv::Fused::default();
    if let Some(g) = proto.graph.as_mut() {
        // Before the constant folding below: the fused op wants the int8 weights.
        if options.int8_kernel == Int8Kernel::Edge {
            fused = crate::qconv::fuse_qdq(g);
            fused.max_pools = crate::maxpool::replace_max_pools(g);
            fused.depthwise = crate::depthwise::replace_depthwise(g);
            fused.pointwise = crate::pointwise::replace_pointwise(g);
        }
        crate::dequant::fold_constant_dequantization(g);
    }
    let mut onnx = tract_onnx::onnx();
    crate::qconv::register(&mut onnx.op_register);
    crate::maxpool::register(&mut onnx.op_register);
    crate::depthwise::register(&mut onnx.op_register);
    crate::pointwise::register(&mut onnx.op_register);
    (onnx, fused)
}

/// Reads and decodes `path`. The file's bytes are dropped as soon as they are decoded, and
/// the decoded protobuf as soon as tract has its own copy: at most two copies of the
/// weights are alive at once, which keeps peak RSS near twice the file size.
fn read_proto(path: &Path) -> Result<pb::ModelProto> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })?;
    decode_proto(&bytes, path)
}

fn decode_proto(bytes: &[u8], path: &Path) -> Result<pb::ModelProto> {
    pb::ModelProto::decode(bytes).map_err(|e| Error::NotOnnx {
        path: path.into(),
        reason: e.to_string(),
    })
}

impl Engine {
    /// Loads `path`, checks it is a HydraNet with a contract this build reads, and plans it
    /// for batches of `batch` images.
    pub fn load(path: &Path, batch: usize) -> Result<Self> {
        Self::load_with(path, batch, LoadOptions::default())
    }

    /// As [`Engine::load`], with explicit [`LoadOptions`].
    pub fn load_with(path: &Path, batch: usize, options: LoadOptions) -> Result<Self> {
        Self::from_proto(read_proto(path)?, path, &[batch], options)
    }

    /// As [`Engine::load`], from bytes already read; `path` is used in messages.
    pub fn from_bytes(bytes: &[u8], path: &Path, batch: usize) -> Result<Self> {
        Self::from_proto(
            decode_proto(bytes, path)?,
            path,
            &[batch],
            LoadOptions::default(),
        )
    }

    /// Loads `path` for up to `max_faces` crops per run: plans for batches of 1, 2, 4, …
    /// up to the first power of two that holds `max_faces`, so a frame's faces go through
    /// as one batch padded by less than half. [`Engine::batch`] is 1.
    pub fn load_for_faces(path: &Path, max_faces: usize, options: LoadOptions) -> Result<Self> {
        let mut sizes = vec![1];
        while sizes[sizes.len() - 1] < max_faces.max(1) {
            sizes.push(sizes[sizes.len() - 1] * 2);
        }
        Self::from_proto(read_proto(path)?, path, &sizes, options)
    }

    fn from_proto(
        mut proto: pb::ModelProto,
        path: &Path,
        batches: &[usize],
        options: LoadOptions,
    ) -> Result<Self> {
        let batch = batches.first().copied().unwrap_or(1).max(1);
        let (onnx, fused) = prepare(&mut proto, options);
        let graph = proto
            .graph
            .as_ref()
            .filter(|g| !g.node.is_empty())
            .ok_or_else(|| Error::NotOnnx {
                path: path.into(),
                reason: "no graph".into(),
            })?;
        let contract = Contract::from_metadata(
            proto
                .metadata_props
                .iter()
                .map(|e| (e.key.as_str(), e.value.as_str())),
        )
        .map_err(|source| Error::Contract {
            path: path.into(),
            source,
        })?;
        let not = |reason: String| Error::NotHydraNet {
            path: path.into(),
            reason,
        };
        let inputs = data_inputs(graph);
        let [input] = inputs.as_slice() else {
            return Err(not(format!(
                "expected one image input, found {}",
                inputs.len()
            )));
        };
        let pre = &contract.preprocess;
        let want = [
            None,
            Some(3),
            Some(pre.height as i64),
            Some(pre.width as i64),
        ];
        match dims_of(input) {
            Some(d)
                if d.len() == 4
                    && d[1..]
                        .iter()
                        .zip(&want[1..])
                        .all(|(g, w)| g.is_none() || g == w) => {}
            Some(d) => {
                return Err(not(format!(
                    "input `{}` has shape {:?}; the contract says [N, 3, {}, {}]",
                    input.name, d, pre.height, pre.width
                )))
            }
            None => return Err(not(format!("input `{}` has no tensor shape", input.name))),
        }
        let order = contract
            .heads
            .iter()
            .map(|h| {
                graph
                    .output
                    .iter()
                    .position(|o| o.name == h.name)
                    .ok_or_else(|| {
                        not(format!(
                            "no output named `{}` for head `{}`",
                            h.name, h.name
                        ))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let tract_err = |e: TractError| Error::Tract {
            path: path.into(),
            reason: format!("{e:#}"),
        };
        let model = onnx.model_for_proto_model(&proto).map_err(tract_err)?;
        drop(proto);
        let plan_for = |n: usize| {
            model
                .clone()
                .with_input_fact(
                    0,
                    InferenceFact::dt_shape(f32::datum_type(), pre.input_shape(n)),
                )
                .and_then(|m| m.into_optimized())
                .and_then(|m| m.into_runnable())
                .map_err(tract_err)
        };
        let plan = plan_for(batch)?;
        let mut more = Vec::new();
        for &n in batches.iter().skip(1) {
            more.push((n, plan_for(n)?));
        }
        more.sort_by_key(|(n, _)| *n);
        Ok(Self {
            contract,
            plan,
            batch,
            more,
            path: path.into(),
            order,
            fused,
        })
    }

    /// What the edge runtime's int8 kernels took over from tract (all zero for a float
    /// file, or with [`Int8Kernel::Tract`]).
    pub fn fused(&self) -> crate::qconv::Fused {
        self.fused
    }

    /// The model's contract.
    pub fn contract(&self) -> &Contract {
        &self.contract
    }

    /// Images per run.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Runs one batch of preprocessed input (`batch * input_len` values). Returns
    /// `out[h][i]`: head `h`'s raw values for image `i`.
    pub fn run_raw(&self, input: &[f32]) -> Result<Vec<Vec<Vec<f32>>>> {
        self.run_plan(&self.plan, self.batch, input)
    }

    fn run_plan(
        &self,
        plan: &Arc<TypedRunnableModel>,
        batch: usize,
        input: &[f32],
    ) -> Result<Vec<Vec<Vec<f32>>>> {
        let pre = &self.contract.preprocess;
        let expected = batch * pre.input_len();
        if input.len() != expected {
            return Err(Error::InputSize {
                expected,
                got: input.len(),
            });
        }
        let tract_err = |e: TractError| Error::Tract {
            path: self.path.clone(),
            reason: format!("{e:#}"),
        };
        let t = Tensor::from_shape(&pre.input_shape(batch), input).map_err(tract_err)?;
        let outputs = plan.run(tvec!(t.into_tvalue())).map_err(tract_err)?;
        self.contract
            .heads
            .iter()
            .zip(&self.order)
            .map(|(h, &o)| {
                let view = outputs[o].to_plain_array_view::<f32>().map_err(tract_err)?;
                let w = h.output_width();
                let flat: Vec<f32> = view.iter().copied().collect();
                if flat.len() != batch * w {
                    return Err(Error::NotHydraNet {
                        path: self.path.clone(),
                        reason: format!(
                            "output `{}` has {} values, expected {}",
                            h.name,
                            flat.len(),
                            batch * w
                        ),
                    });
                }
                Ok(flat.chunks(w).map(|c| c.to_vec()).collect())
            })
            .collect()
    }

    /// Preprocesses (the contract's one function) and predicts any number of images,
    /// in batches of [`Engine::batch`] (the last one padded).
    pub fn predict(&self, images: &[DynamicImage]) -> Result<Vec<Prediction>> {
        let len = self.contract.preprocess.input_len();
        let mut out = Vec::with_capacity(images.len());
        let mut input = vec![0f32; self.batch * len];
        for chunk in images.chunks(self.batch) {
            input.iter_mut().for_each(|v| *v = 0.0);
            for (img, slot) in chunk.iter().zip(input.chunks_mut(len)) {
                preprocess_into(img, &self.contract.preprocess, slot)?;
            }
            let raw = self.run_raw(&input)?;
            for i in 0..chunk.len() {
                let per: Vec<&[f32]> = raw.iter().map(|h| h[i].as_slice()).collect();
                out.push(decode(&self.contract.heads, &per)?);
            }
        }
        Ok(out)
    }

    /// The largest batch one run takes.
    pub fn max_batch(&self) -> usize {
        self.more.last().map_or(self.batch, |(n, _)| *n)
    }

    /// Decodes `n` preprocessed inputs laid end to end in `input` (`n * input_len`
    /// values): as one run of the smallest plan that holds them (zero-padded), or in runs
    /// of the largest. `padded` is reused between calls.
    pub fn predict_inputs(
        &self,
        input: &[f32],
        n: usize,
        padded: &mut Vec<f32>,
    ) -> Result<Vec<Prediction>> {
        let len = self.contract.preprocess.input_len();
        if input.len() != n * len {
            return Err(Error::InputSize {
                expected: n * len,
                got: input.len(),
            });
        }
        let mut out = Vec::with_capacity(n);
        let plans = std::iter::once((self.batch, &self.plan))
            .chain(self.more.iter().map(|(b, p)| (*b, p)))
            .collect::<Vec<_>>();
        for chunk in input.chunks(self.max_batch() * len) {
            let k = chunk.len() / len;
            let (b, plan) = plans
                .iter()
                .find(|(b, _)| *b >= k)
                .copied()
                .unwrap_or((self.batch, &self.plan));
            let raw = if b == k {
                self.run_plan(plan, b, chunk)?
            } else {
                padded.clear();
                padded.extend_from_slice(chunk);
                padded.resize(b * len, 0.0);
                self.run_plan(plan, b, padded)?
            };
            for i in 0..k {
                let per: Vec<&[f32]> = raw.iter().map(|h| h[i].as_slice()).collect();
                out.push(decode(&self.contract.heads, &per)?);
            }
        }
        Ok(out)
    }
}
