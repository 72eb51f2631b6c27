//! The versioned contract between training and the edge, and its string-map form
//! (which becomes an ONNX file's `metadata_props`).
use alloc::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{heads::utkface_heads, prelude::*, Error, HeadSpec, PreprocessSpec, Result};

/// Version of the contract format written by this build. A reader refuses other versions:
/// a silently misread contract would mislabel every prediction.
pub const CONTRACT_VERSION: u32 = 1;

/// Prefix of every metadata key the contract writes.
pub const KEY_PREFIX: &str = "hydranet.";
/// The key of the contract's version: a runtime refuses a file without it, so tools that
/// check a file before shipping it look for this key.
pub const VERSION_KEY: &str = "hydranet.contract_version";
const K_NAME: &str = "hydranet.model_name";
const K_MODEL_VERSION: &str = "hydranet.model_version";
const K_ARCH: &str = "hydranet.architecture";
const K_HEADS: &str = "hydranet.heads";
const K_PRE: &str = "hydranet.preprocess";
const K_TRAINING: &str = "hydranet.training";
const K_QUANT: &str = "hydranet.quantization";
const K_TTA: &str = "hydranet.test_time";

/// Names in the exported ONNX graph (the input, value and node names) that have no `.` in
/// them: the exporter's every other name has one, and a head name cannot, so a head may
/// take none of these. `tests/parity/tests/heads.rs` checks the list against every form
/// the exporter writes.
pub const RESERVED_NAMES: [&str; 6] = ["image", "conv1", "bn1", "maxpool", "avgpool", "features"];

/// What `hydranet.test_time` holds: a JSON object, so later test-time options can join
/// without a new key (readers ignore fields they do not know).
#[derive(Serialize, Deserialize)]
struct TestTime {
    #[serde(default)]
    flip: bool,
}

/// Everything a runtime must know to use a HydraNet: its heads, its input, and where it
/// came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contract {
    /// Model name (e.g. `hydranet-utkface`).
    pub model_name: String,
    /// Model version (free text, e.g. a semantic version or run id).
    pub model_version: String,
    /// Body architecture (e.g. `resnet18`, `resnet10-w0.5`).
    pub architecture: String,
    /// Heads, in output order.
    pub heads: Vec<HeadSpec>,
    /// How images become input.
    pub preprocess: PreprocessSpec,
    /// Free-form facts about the training run (data set, sample counts, epochs, metrics).
    #[serde(default)]
    pub training: BTreeMap<String, String>,
    /// How the weights and activations are quantized; `None` for a float model.
    #[serde(default)]
    pub quantization: Option<Quantization>,
    /// Each head's output is the mean of its outputs on the image and on its mirror image
    /// (test-time flip). The exported graph does the averaging itself, so a runtime needs
    /// nothing; the flag tells readers (reports, Candle's ONNX import) what the graph does.
    #[serde(default)]
    pub test_time_flip: bool,
}

/// How a quantized model was made (travels as `hydranet.quantization`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quantization {
    /// Number format, `int8`.
    pub scheme: String,
    /// The ONNX form (e.g. `qdq`: QuantizeLinear/DequantizeLinear pairs around float ops;
    /// `weights`: int8 weights dequantized at load, float activations).
    pub form: String,
    /// How the weights are quantized (e.g. `int8 symmetric per output channel`).
    pub weights: String,
    /// How the activations are quantized, if they are (e.g. `uint8 asymmetric per tensor`).
    pub activations: Option<String>,
    /// How the activation ranges were calibrated, if they were.
    pub calibration: Option<Calibration>,
}

/// The calibration run behind a quantized model's activation ranges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// `minmax`, `percentile` or `entropy`.
    pub method: String,
    /// Images actually used.
    pub images: usize,
    /// Where they came from (a folder name, not a path on the exporting machine).
    pub source: String,
}

impl Contract {
    /// The default UTKFace contract for a square input of `size` pixels.
    pub fn utkface(size: u32, architecture: &str) -> Self {
        Self {
            model_name: "hydranet-utkface".into(),
            model_version: "0.1.0".into(),
            architecture: architecture.into(),
            heads: utkface_heads(),
            preprocess: PreprocessSpec::new(size),
            training: BTreeMap::new(),
            quantization: None,
            test_time_flip: false,
        }
    }

    /// Checks the contract is usable: at least one head, unique valid names, sane input.
    pub fn validate(&self) -> Result<()> {
        if self.heads.is_empty() {
            return Err(Error::InvalidContract("no heads".into()));
        }
        for (i, h) in self.heads.iter().enumerate() {
            h.validate()?;
            // Case-insensitive: manifest columns are matched that way.
            if self.heads[..i]
                .iter()
                .any(|o| o.name.eq_ignore_ascii_case(&h.name))
            {
                return Err(Error::InvalidContract(format!(
                    "head `{}` appears twice",
                    h.name
                )));
            }
            if let Some(r) = RESERVED_NAMES
                .iter()
                .find(|r| r.eq_ignore_ascii_case(&h.name))
            {
                return Err(Error::InvalidContract(format!(
                    "head `{}` collides with the ONNX graph's `{r}`",
                    h.name
                )));
            }
        }
        self.preprocess.validate()
    }

    /// Index of the named head.
    pub fn head_index(&self, name: &str) -> Option<usize> {
        self.heads.iter().position(|h| h.name == name)
    }

    /// The head names in output order, comma-separated (for messages).
    pub fn head_list(&self) -> String {
        let names: Vec<&str> = self.heads.iter().map(|h| h.name.as_str()).collect();
        names.join(", ")
    }

    /// Sum of all heads' output widths.
    pub fn total_output_width(&self) -> usize {
        self.heads.iter().map(|h| h.output_width()).sum()
    }

    /// The contract as a string map (every key starts with [`KEY_PREFIX`]).
    pub fn to_metadata(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert(VERSION_KEY.into(), CONTRACT_VERSION.to_string());
        m.insert(K_NAME.into(), self.model_name.clone());
        m.insert(K_MODEL_VERSION.into(), self.model_version.clone());
        m.insert(K_ARCH.into(), self.architecture.clone());
        m.insert(K_HEADS.into(), json(&self.heads));
        m.insert(K_PRE.into(), json(&self.preprocess));
        m.insert(K_TRAINING.into(), json(&self.training));
        if let Some(q) = &self.quantization {
            m.insert(K_QUANT.into(), json(q));
        }
        if self.test_time_flip {
            m.insert(K_TTA.into(), json(&TestTime { flip: true }));
        }
        m
    }

    /// Reads a contract back from a string map; unrelated keys are ignored.
    pub fn from_metadata<'a, I>(entries: I) -> Result<Self>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let m: BTreeMap<&str, &str> = entries.into_iter().collect();
        let get = |k: &str| m.get(k).copied().ok_or_else(|| Error::MissingKey(k.into()));
        let version = get(VERSION_KEY)?;
        match version.trim().parse::<u32>() {
            Ok(CONTRACT_VERSION) => {}
            _ => {
                return Err(Error::UnsupportedVersion {
                    found: version.into(),
                    supported: CONTRACT_VERSION,
                })
            }
        }
        fn parse<T: serde::de::DeserializeOwned>(key: &str, v: &str) -> Result<T> {
            serde_json::from_str(v).map_err(|e| Error::BadMetadata {
                key: key.into(),
                reason: e.to_string(),
            })
        }
        let c = Self {
            model_name: get(K_NAME)?.into(),
            model_version: get(K_MODEL_VERSION)?.into(),
            architecture: get(K_ARCH)?.into(),
            heads: parse(K_HEADS, get(K_HEADS)?)?,
            preprocess: parse(K_PRE, get(K_PRE)?)?,
            training: match m.get(K_TRAINING) {
                Some(v) => parse(K_TRAINING, v)?,
                None => BTreeMap::new(),
            },
            quantization: m.get(K_QUANT).map(|v| parse(K_QUANT, v)).transpose()?,
            test_time_flip: match m.get(K_TTA) {
                Some(v) => parse::<TestTime>(K_TTA, v)?.flip,
                None => false,
            },
        };
        c.validate()?;
        Ok(c)
    }
}

// Serialising these small owned structs (strings, numbers, maps with string keys) cannot fail.
fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(m: &BTreeMap<String, String>) -> Vec<(&str, &str)> {
        m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    #[test]
    fn round_trips_through_a_string_map() {
        let mut c = Contract::utkface(64, "resnet18");
        c.training.insert("train_samples".into(), "17000".into());
        let m = c.to_metadata();
        assert!(m.keys().all(|k| k.starts_with(KEY_PREFIX)));
        let mut p = pairs(&m);
        p.push(("producer", "someone else"));
        assert_eq!(Contract::from_metadata(p).unwrap(), c);
        assert!(
            !m.contains_key(K_QUANT),
            "a float model says nothing of quantization"
        );
    }

    #[test]
    fn carries_the_quantization_and_refuses_a_malformed_one() {
        let mut c = Contract::utkface(64, "resnet18");
        c.quantization = Some(Quantization {
            scheme: "int8".into(),
            form: "qdq".into(),
            weights: "int8 symmetric per output channel".into(),
            activations: Some("uint8 asymmetric per tensor".into()),
            calibration: Some(Calibration {
                method: "percentile".into(),
                images: 256,
                source: "UTKFace".into(),
            }),
        });
        let mut m = c.to_metadata();
        assert_eq!(Contract::from_metadata(pairs(&m)).unwrap(), c);
        m.insert(K_QUANT.into(), "{\"scheme\":".into());
        assert!(matches!(
            Contract::from_metadata(pairs(&m)),
            Err(Error::BadMetadata { .. })
        ));
    }

    #[test]
    fn carries_test_time_flip_only_when_set() {
        let mut c = Contract::utkface(64, "resnet18");
        assert!(!c.to_metadata().contains_key(K_TTA));
        c.test_time_flip = true;
        let mut m = c.to_metadata();
        assert_eq!(m[K_TTA], "{\"flip\":true}");
        assert!(Contract::from_metadata(pairs(&m)).unwrap().test_time_flip);
        // A later option this reader does not know is ignored, not refused.
        m.insert(K_TTA.into(), "{\"flip\":true,\"scales\":[1.0,1.1]}".into());
        assert!(Contract::from_metadata(pairs(&m)).unwrap().test_time_flip);
        m.insert(K_TTA.into(), "flip".into());
        assert!(matches!(
            Contract::from_metadata(pairs(&m)),
            Err(Error::BadMetadata { .. })
        ));
    }

    #[test]
    fn refuses_missing_and_unknown_versions() {
        let c = Contract::utkface(64, "resnet18");
        let mut m = c.to_metadata();
        m.remove(VERSION_KEY);
        assert!(matches!(
            Contract::from_metadata(pairs(&m)),
            Err(Error::MissingKey(_))
        ));
        m.insert(VERSION_KEY.into(), "2".into());
        let e = Contract::from_metadata(pairs(&m)).unwrap_err();
        assert!(matches!(e, Error::UnsupportedVersion { .. }), "{e}");
        assert!(Contract::from_metadata(Vec::new()).is_err());
    }

    #[test]
    fn refuses_malformed_heads() {
        let c = Contract::utkface(64, "resnet18");
        let mut m = c.to_metadata();
        m.insert(K_HEADS.into(), "[{\"name\":\"x\"".into());
        assert!(matches!(
            Contract::from_metadata(pairs(&m)),
            Err(Error::BadMetadata { .. })
        ));
        m.insert(K_HEADS.into(), "[]".into());
        assert!(matches!(
            Contract::from_metadata(pairs(&m)),
            Err(Error::InvalidContract(_))
        ));
    }
}
