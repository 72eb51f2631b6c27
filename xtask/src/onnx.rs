//! A shallow look at an ONNX file: enough to refuse the wrong file before it is shipped to a
//! board, without a protobuf dependency. Only the top level of `ModelProto` is walked.

pub use models::contract::VERSION_KEY as CONTRACT_KEY;

const IR_VERSION: u64 = 1;
const GRAPH: u64 = 7;
const METADATA_PROPS: u64 = 14;

/// Checks that `bytes` parses as a protobuf message with ONNX's `ir_version` (varint) and
/// `graph` (message) fields and a HydraNet contract in its metadata.
pub fn check_model(bytes: &[u8]) -> Result<(), String> {
    if !scan(bytes)? {
        return Err(format!(
            "has no `{CONTRACT_KEY}` in its metadata, so edge-runtime would refuse it \
             (export it with `host-train export`)"
        ));
    }
    Ok(())
}

/// Checks that `bytes` is an ONNX model *without* a HydraNet contract: the face detector
/// (edge-runtime checks it is BlazeFace when it loads it).
pub fn check_onnx(bytes: &[u8]) -> Result<(), String> {
    if scan(bytes)? {
        return Err("is a HydraNet (it has a contract), not the face detector".into());
    }
    Ok(())
}

/// Walks the top level; returns whether the metadata holds a HydraNet contract.
fn scan(bytes: &[u8]) -> Result<bool, String> {
    if bytes.is_empty() {
        return Err("is empty".into());
    }
    let mut ir_version = None;
    let mut graph = false;
    let mut contract = None;
    for field in Fields::new(bytes) {
        let (number, value) = field.map_err(|at| {
            format!("is not an ONNX file (not a protobuf message: bad field at byte {at})")
        })?;
        match (number, value) {
            (IR_VERSION, Value::Varint(v)) => ir_version = Some(v),
            (GRAPH, Value::Bytes(_)) => graph = true,
            (METADATA_PROPS, Value::Bytes(entry)) => {
                if let Some(v) = contract_entry(entry) {
                    contract = Some(v);
                }
            }
            _ => {}
        }
    }
    let Some(ir) = ir_version else {
        return Err("is not an ONNX file (no ir_version)".into());
    };
    if !graph {
        return Err(format!(
            "is not an ONNX model (ir_version {ir} but no graph)"
        ));
    }
    Ok(contract.is_some())
}

/// The value of a `StringStringEntryProto` whose key is [`CONTRACT_KEY`].
fn contract_entry(entry: &[u8]) -> Option<String> {
    let mut key = None;
    let mut value = None;
    for field in Fields::new(entry) {
        match field.ok()? {
            (1, Value::Bytes(k)) => key = Some(k),
            (2, Value::Bytes(v)) => value = Some(v),
            _ => {}
        }
    }
    (key? == CONTRACT_KEY.as_bytes()).then(|| String::from_utf8_lossy(value.unwrap_or(b"")).into())
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Iterates over the top-level fields of a protobuf message; an error carries the offset.
struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Fields {
            buf,
            pos: 0,
            failed: false,
        }
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn take(&mut self, n: u64) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(usize::try_from(n).ok()?)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn field(&mut self) -> Option<(u64, Value<'a>)> {
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 {
            return None;
        }
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => self.take(8).map(|_| Value::Fixed)?,
            2 => {
                let len = self.varint()?;
                Value::Bytes(self.take(len)?)
            }
            5 => self.take(4).map(|_| Value::Fixed)?,
            _ => return None,
        };
        Some((number, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), usize>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let start = self.pos;
        match self.field() {
            Some(f) => Some(Ok(f)),
            None => {
                self.failed = true;
                Some(Err(start))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Vec<u8> {
        let p = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/parity-v1/model.onnx"
        );
        std::fs::read(p).expect("fixture model")
    }

    #[test]
    fn the_fixture_model_passes() {
        check_model(&fixture()).expect("fixture is a HydraNet ONNX file");
    }

    #[test]
    fn wrong_files_are_refused() {
        assert_eq!(check_model(b"").unwrap_err(), "is empty");
        assert!(check_model(b"\x7fELF\x02\x01\x01")
            .unwrap_err()
            .contains("not an ONNX file"));
        assert!(check_model(b"{\"json\": true}\n")
            .unwrap_err()
            .contains("not an ONNX file"));
        // A valid message with ir_version only.
        assert!(check_model(&[0x08, 0x08]).unwrap_err().contains("no graph"));
        let m = fixture();
        assert!(check_model(&m[..m.len() / 2])
            .unwrap_err()
            .contains("not an ONNX file"));
    }

    #[test]
    fn a_model_without_the_contract_is_refused() {
        // ir_version 8 and an empty graph.
        let err = check_model(&[0x08, 0x08, 0x3a, 0x00]).unwrap_err();
        assert!(err.contains(CONTRACT_KEY), "{err}");
    }
}
