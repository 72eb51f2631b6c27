//! The values of an ONNX tensor (`TensorProto`), read the same way on both sides: the
//! exporter reading its own file back (host-train) and the runtime's load-time rewrites
//! (edge-runtime). ONNX stores them either little-endian in `raw_data` or in a typed
//! field (`float_data`, or `int32_data` for every integer type up to 32 bits); both
//! forms are accepted. Plain slices rather than the protobuf type keep this crate free
//! of tract and prost.
use crate::prelude::*;

/// ONNX `TensorProto.DataType` codes this project reads.
pub mod data_type {
    /// `FLOAT`.
    pub const FLOAT: i32 = 1;
    /// `UINT8`.
    pub const UINT8: i32 = 2;
    /// `INT8`.
    pub const INT8: i32 = 3;
    /// `INT32`.
    pub const INT32: i32 = 6;
}

/// A tensor's storage fields.
#[derive(Debug, Clone, Copy)]
pub struct TensorData<'a> {
    /// `data_type`.
    pub data_type: i32,
    /// `raw_data` (may be empty).
    pub raw: &'a [u8],
    /// `float_data`.
    pub float_data: &'a [f32],
    /// `int32_data` (INT8, UINT8 and INT32 values).
    pub int32_data: &'a [i32],
}

impl<'a> TensorData<'a> {
    /// A `TensorProto`'s `data_type`, `raw_data`, `float_data` and `int32_data`.
    pub fn new(
        data_type: i32,
        raw: &'a [u8],
        float_data: &'a [f32],
        int32_data: &'a [i32],
    ) -> Self {
        Self {
            data_type,
            raw,
            float_data,
            int32_data,
        }
    }

    /// The values of a FLOAT tensor; `None` for any other type.
    pub fn floats(&self) -> Option<Vec<f32>> {
        (self.data_type == data_type::FLOAT).then(|| {
            if self.raw.is_empty() {
                self.float_data.to_vec()
            } else {
                self.raw
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            }
        })
    }

    /// The values of an INT8, UINT8 or INT32 tensor; `None` for any other type.
    pub fn integers(&self) -> Option<Vec<i32>> {
        let raw = self.raw;
        match self.data_type {
            data_type::INT8 if !raw.is_empty() => {
                Some(raw.iter().map(|&b| b as i8 as i32).collect())
            }
            data_type::UINT8 if !raw.is_empty() => Some(raw.iter().map(|&b| b as i32).collect()),
            data_type::INT32 if !raw.is_empty() => Some(
                raw.chunks_exact(4)
                    .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            ),
            data_type::INT8 | data_type::UINT8 | data_type::INT32 => Some(self.int32_data.to_vec()),
            _ => None,
        }
    }

    /// Float or integer values, as f32; `None` for other types.
    pub fn values_f32(&self) -> Option<Vec<f32>> {
        self.floats()
            .or_else(|| Some(self.integers()?.into_iter().map(|v| v as f32).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data<'a>(data_type: i32, raw: &'a [u8], f: &'a [f32], i: &'a [i32]) -> TensorData<'a> {
        TensorData::new(data_type, raw, f, i)
    }

    #[test]
    fn raw_and_typed_storage_read_alike() {
        let raw: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(
            data(data_type::FLOAT, &raw, &[], &[]).floats(),
            Some(vec![1.5, -2.0])
        );
        assert_eq!(
            data(data_type::FLOAT, &[], &[1.5, -2.0], &[]).floats(),
            Some(vec![1.5, -2.0])
        );
        assert_eq!(
            data(data_type::INT8, &[0xff, 3], &[], &[]).integers(),
            Some(vec![-1, 3])
        );
        assert_eq!(
            data(data_type::UINT8, &[0xff, 3], &[], &[]).integers(),
            Some(vec![255, 3])
        );
        assert_eq!(
            data(data_type::INT8, &[], &[], &[-1, 3]).integers(),
            Some(vec![-1, 3])
        );
        let raw: Vec<u8> = (-70000i32).to_le_bytes().to_vec();
        assert_eq!(
            data(data_type::INT32, &raw, &[], &[]).values_f32(),
            Some(vec![-70000.0])
        );
        assert_eq!(data(data_type::INT8, &[2], &[], &[]).floats(), None);
        assert_eq!(data(data_type::FLOAT, &[], &[], &[]).integers(), None);
        assert_eq!(
            data(11, &[0; 8], &[], &[]).values_f32(),
            None,
            "DOUBLE is not read"
        );
    }
}
