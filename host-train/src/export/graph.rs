//! A small ONNX graph builder over the prost types `tract_onnx::pb` exposes (no protoc at
//! build time). Only what the HydraNet needs: f32 initialisers, nodes with int/float
//! attributes, typed inputs and outputs with symbolic dimensions.
use tract_onnx::pb::{
    attribute_proto::AttributeType,
    tensor_proto::DataType,
    tensor_shape_proto::{dimension::Value as DimValue, Dimension},
    type_proto::{Tensor as TensorType, Value as TypeValue},
    AttributeProto, GraphProto, NodeProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};

/// A dimension of a graph input or output.
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A named symbolic size (e.g. `batch`).
    Symbolic(&'static str),
}

/// An attribute value.
pub enum Attr {
    /// One integer.
    Int(i64),
    /// Integers.
    Ints(Vec<i64>),
    /// One float.
    Float(f32),
}

/// Accumulates nodes and initialisers.
#[derive(Default)]
pub struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
}

fn value_info(name: &str, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            denotation: String::new(),
            value: Some(match d {
                Dim::Fixed(n) => DimValue::DimValue(*n),
                Dim::Symbolic(s) => DimValue::DimParam(s.to_string()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            denotation: String::new(),
            value: Some(TypeValue::TensorType(TensorType {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
        }),
        doc_string: String::new(),
    }
}

impl GraphBuilder {
    /// Declares a float graph input.
    pub fn input(&mut self, name: &str, dims: &[Dim]) {
        self.inputs.push(value_info(name, dims));
    }

    /// Declares a float graph output.
    pub fn output(&mut self, name: &str, dims: &[Dim]) {
        self.outputs.push(value_info(name, dims));
    }

    /// Adds an f32 initialiser; returns its name.
    pub fn init_f32(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.init_raw(name, dims, DataType::Float, raw)
    }

    /// Adds an int8 initialiser; returns its name.
    pub fn init_i8(&mut self, name: &str, dims: &[usize], data: &[i8]) -> String {
        let raw = data.iter().map(|v| *v as u8).collect();
        self.init_raw(name, dims, DataType::Int8, raw)
    }

    /// Adds a uint8 initialiser; returns its name.
    pub fn init_u8(&mut self, name: &str, dims: &[usize], data: &[u8]) -> String {
        self.init_raw(name, dims, DataType::Uint8, data.to_vec())
    }

    /// Adds an int32 initialiser; returns its name.
    pub fn init_i32(&mut self, name: &str, dims: &[usize], data: &[i32]) -> String {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.init_raw(name, dims, DataType::Int32, raw)
    }

    /// Adds an initialiser from little-endian bytes; `dims` empty for a scalar.
    fn init_raw(&mut self, name: &str, dims: &[usize], ty: DataType, raw_data: Vec<u8>) -> String {
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|d| *d as i64).collect(),
            data_type: ty as i32,
            name: name.into(),
            raw_data,
            ..Default::default()
        });
        name.into()
    }

    /// Adds a node; returns the name of its (single) output.
    pub fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        attrs: Vec<(&str, Attr)>,
    ) -> String {
        let out = format!("{name}.out");
        self.node_to(op, name, inputs, &out, attrs);
        out
    }

    /// Adds a node writing to a chosen output name.
    pub fn node_to(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        output: &str,
        attrs: Vec<(&str, Attr)>,
    ) {
        let attribute = attrs
            .into_iter()
            .map(|(n, a)| {
                let mut p = AttributeProto {
                    name: n.into(),
                    ..Default::default()
                };
                match a {
                    Attr::Int(i) => {
                        p.i = i;
                        p.r#type = AttributeType::Int as i32;
                    }
                    Attr::Ints(v) => {
                        p.ints = v;
                        p.r#type = AttributeType::Ints as i32;
                    }
                    Attr::Float(f) => {
                        p.f = f;
                        p.r#type = AttributeType::Float as i32;
                    }
                }
                p
            })
            .collect();
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            name: name.into(),
            op_type: op.into(),
            domain: String::new(),
            attribute,
            doc_string: String::new(),
        });
    }

    /// The finished graph.
    pub fn finish(self, name: &str) -> GraphProto {
        GraphProto {
            node: self.nodes,
            name: name.into(),
            initializer: self.initializers,
            input: self.inputs,
            output: self.outputs,
            ..Default::default()
        }
    }
}
