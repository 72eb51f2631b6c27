//! The face detector in front of the HydraNet: MediaPipe BlazeFace (ONNX, fetched by
//! `scripts/fetch-detector.sh`) run by tract, its outputs decoded by [`models::detect`].
//!
//! The whole frame is letterboxed into the detector's square input (the contract's one
//! preprocessing path, NHWC, RGB in [-1, 1]); faces come back in frame pixels.
//!
//! The files as shipped do not load in tract 0.23: their `ConstantOfShape` nodes have no
//! `value` attribute, ONNX's default is a float32 zero, tract assumes an f64 one and its
//! analysis then fails ("Impossible to unify F32 with F64"). [`fill_constant_of_shape`]
//! writes the default in before tract parses the graph; the file is left as it is.
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use models::{
    detect::{decode_faces, AnchorSpec, DetectConfig, Face, REGRESSION_WIDTH},
    preprocess::{letterbox, preprocess_region_into, Letterbox, PreprocessSpec},
    Region,
};
use prost::Message;
use tract_onnx::{
    pb::{self, attribute_proto::AttributeType, tensor_proto::DataType},
    prelude::*,
};

use crate::{
    engine::{data_inputs, dims_of},
    Error, Result,
};

/// Gives every `ConstantOfShape` without a `value` the one ONNX defines (a float32 zero
/// of one element). Returns how many nodes it changed.
pub fn fill_constant_of_shape(graph: &mut pb::GraphProto) -> usize {
    let mut filled = 0;
    for node in graph.node.iter_mut() {
        if node.op_type == "ConstantOfShape" && !node.attribute.iter().any(|a| a.name == "value") {
            node.attribute.push(pb::AttributeProto {
                name: "value".into(),
                r#type: AttributeType::Tensor as i32,
                t: Some(pb::TensorProto {
                    dims: vec![1],
                    data_type: DataType::Float as i32,
                    raw_data: 0f32.to_le_bytes().to_vec(),
                    ..Default::default()
                }),
                ..Default::default()
            });
            filled += 1;
        }
    }
    filled
}

/// A loaded BlazeFace detector.
pub struct Detector {
    plan: Arc<TypedRunnableModel>,
    anchors: Vec<[f32; 2]>,
    spec: AnchorSpec,
    pre: PreprocessSpec,
    config: DetectConfig,
    /// Output positions: scores of the fine and coarse layers, then their boxes.
    outputs: [usize; 4],
    path: PathBuf,
}

/// Reused buffers of [`Detector::detect`].
#[derive(Default)]
pub struct DetectBuffers {
    canvas: Vec<u8>,
    input: Vec<f32>,
}

/// A tensor's dimensions when every one is fixed.
fn shape_of(v: &pb::ValueInfoProto) -> Option<Vec<i64>> {
    dims_of(v)?.into_iter().collect()
}

impl Detector {
    /// Loads a BlazeFace ONNX file (front 128 or back 256, told apart by its input size).
    pub fn load(path: &Path, config: DetectConfig) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.into(),
            source,
        })?;
        Self::from_bytes(&bytes, path, config)
    }

    /// As [`Detector::load`], from bytes already read; `path` is used in messages.
    pub fn from_bytes(bytes: &[u8], path: &Path, config: DetectConfig) -> Result<Self> {
        let not = |reason: String| Error::NotDetector {
            path: path.into(),
            reason,
        };
        let mut proto = pb::ModelProto::decode(bytes).map_err(|e| Error::NotOnnx {
            path: path.into(),
            reason: e.to_string(),
        })?;
        let graph = proto
            .graph
            .as_mut()
            .filter(|g| !g.node.is_empty())
            .ok_or_else(|| not("no graph".into()))?;
        fill_constant_of_shape(graph);
        let inputs = data_inputs(graph);
        let [input] = inputs.as_slice() else {
            return Err(not(format!(
                "expected one image input, found {}",
                inputs.len()
            )));
        };
        let spec = match shape_of(input).as_deref() {
            Some([1, 128, 128, 3]) => AnchorSpec::front_128(),
            Some([1, 256, 256, 3]) => AnchorSpec::back_256(),
            other => {
                return Err(not(format!(
                    "input `{}` has shape {other:?}; BlazeFace takes [1, 128, 128, 3] or [1, 256, 256, 3]",
                    input.name
                )))
            }
        };
        let anchors = spec.anchors();
        // Per layer: its anchor count, and which outputs are its scores and boxes.
        let counts: Vec<usize> = {
            let mut c = Vec::new();
            for &(stride, per) in &spec.layers {
                let cells = spec.input_size.div_ceil(stride) as usize;
                c.push(cells * cells * per as usize);
            }
            c
        };
        let find = |n: usize, width: usize| {
            graph
                .output
                .iter()
                .position(|o| shape_of(o).as_deref() == Some(&[1, n as i64, width as i64]))
        };
        let outputs = match (
            find(counts[0], 1),
            find(counts[1], 1),
            find(counts[0], REGRESSION_WIDTH),
            find(counts[1], REGRESSION_WIDTH),
        ) {
            (Some(a), Some(b), Some(c), Some(d)) if counts.len() == 2 => [a, b, c, d],
            _ => {
                return Err(not(format!(
                    "outputs {:?} are not BlazeFace's scores [1, {}, 1] + [1, {}, 1] and boxes [1, {}, 16] + [1, {}, 16]",
                    graph.output.iter().map(|o| (o.name.clone(), shape_of(o))).collect::<Vec<_>>(),
                    counts[0], counts[1], counts[0], counts[1]
                )))
            }
        };
        let tract_err = |e: TractError| Error::Tract {
            path: path.into(),
            reason: format!("{e:#}"),
        };
        let size = spec.input_size as usize;
        // The edge runtime's own max pools, depthwise and pointwise convolutions (tract's
        // were most of BlazeFace's time), as for a HydraNet file.
        let (onnx, _) = crate::engine::prepare(&mut proto, Default::default());
        let plan = onnx
            .model_for_proto_model(&proto)
            .map_err(tract_err)?
            .with_input_fact(
                0,
                InferenceFact::dt_shape(f32::datum_type(), [1, size, size, 3]),
            )
            .map_err(tract_err)?
            .into_optimized()
            .map_err(tract_err)?
            .into_runnable()
            .map_err(tract_err)?;
        Ok(Self {
            plan,
            anchors,
            pre: PreprocessSpec::blazeface(spec.input_size),
            spec,
            config,
            outputs,
            path: path.into(),
        })
    }

    /// The detector's square input size in pixels.
    pub fn input_size(&self) -> u32 {
        self.spec.input_size
    }

    /// The raw outputs for one preprocessed input: scores then boxes, in anchor order.
    pub fn run_raw(&self, input: &[f32]) -> Result<(Vec<f32>, Vec<f32>)> {
        let size = self.spec.input_size as usize;
        let expected = size * size * 3;
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
        let t = Tensor::from_shape(&[1, size, size, 3], input).map_err(tract_err)?;
        let out = self.plan.run(tvec!(t.into_tvalue())).map_err(tract_err)?;
        let flat = |i: usize| -> Result<Vec<f32>> {
            Ok(out[self.outputs[i]]
                .to_plain_array_view::<f32>()
                .map_err(tract_err)?
                .iter()
                .copied()
                .collect())
        };
        let mut scores = flat(0)?;
        scores.extend(flat(1)?);
        let mut boxes = flat(2)?;
        boxes.extend(flat(3)?);
        Ok((scores, boxes))
    }

    /// Letterboxes the whole RGB8 frame into the detector's input (`buf`), returning where
    /// the frame landed, for [`Detector::decode`].
    pub fn prepare(
        &self,
        rgb: &[u8],
        width: u32,
        height: u32,
        buf: &mut DetectBuffers,
    ) -> Result<Letterbox> {
        let whole = Region {
            x: 0,
            y: 0,
            width,
            height,
        };
        buf.input.resize(self.pre.input_len(), 0.0);
        preprocess_region_into(
            rgb,
            width,
            height,
            whole,
            &self.pre,
            &mut buf.canvas,
            &mut buf.input,
        )?;
        Ok(letterbox(whole, &self.pre))
    }

    /// Raw outputs to faces in frame pixels, best first.
    pub fn decode(&self, scores: &[f32], boxes: &[f32], fit: &Letterbox) -> Result<Vec<Face>> {
        let faces = decode_faces(
            &self.anchors,
            self.spec.input_size,
            scores,
            boxes,
            &self.config,
        )?;
        Ok(faces
            .iter()
            .map(|f| {
                f.map(
                    |x, y| fit.to_frame(x, y),
                    1.0 / fit.scale_x,
                    1.0 / fit.scale_y,
                )
            })
            .collect())
    }

    /// Finds the faces in an RGB8 frame, in frame pixels, best first.
    pub fn detect(
        &self,
        rgb: &[u8],
        width: u32,
        height: u32,
        buf: &mut DetectBuffers,
    ) -> Result<Vec<Face>> {
        let fit = self.prepare(rgb, width, height, buf)?;
        let (scores, boxes) = self.run_raw(&buf.input)?;
        self.decode(&scores, &boxes, &fit)
    }
}

impl DetectBuffers {
    /// The last prepared input (NHWC).
    pub fn input(&self) -> &[f32] {
        &self.input
    }
}
