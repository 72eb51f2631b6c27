//! Raw head outputs → typed predictions.
use serde::{Serialize, Serializer};

use crate::{heads::HeadKind, prelude::*, Error, HeadSpec, Result};

/// One head's decoded answer.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum HeadOutput {
    /// A value in the head's unit, clamped to its range.
    Regression(f32),
    /// A class out of two.
    Binary {
        /// Chosen label.
        label: String,
        /// Chosen class index.
        index: usize,
        /// Probability of the chosen label.
        p: f32,
    },
    /// A class out of several.
    Multiclass {
        /// Chosen label.
        label: String,
        /// Chosen class index.
        index: usize,
        /// Probability of the chosen label.
        p: f32,
        /// Probability of every class, in label order.
        probs: Vec<f32>,
    },
}

impl HeadOutput {
    /// The class index, or `None` for a regression.
    pub fn class(&self) -> Option<usize> {
        match self {
            Self::Regression(_) => None,
            Self::Binary { index, .. } | Self::Multiclass { index, .. } => Some(*index),
        }
    }

    /// The regression value, or `None` for a class.
    pub fn value(&self) -> Option<f32> {
        match self {
            Self::Regression(v) => Some(*v),
            _ => None,
        }
    }

    /// Probability of every class (two for a binary head), empty for a regression.
    pub fn class_probs(&self) -> Vec<f32> {
        match self {
            Self::Regression(_) => Vec::new(),
            Self::Binary { index, p, .. } => {
                let p1 = if *index == 1 { *p } else { 1.0 - *p };
                vec![1.0 - p1, p1]
            }
            Self::Multiclass { probs, .. } => probs.clone(),
        }
    }
}

/// All heads' answers for one image, in contract order.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// `(head name, output)` pairs.
    pub heads: Vec<(String, HeadOutput)>,
}

impl Prediction {
    /// The output of the named head.
    pub fn get(&self, name: &str) -> Option<&HeadOutput> {
        self.heads.iter().find(|(n, _)| n == name).map(|(_, o)| o)
    }
}

impl Serialize for Prediction {
    fn serialize<S: Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.heads.len()))?;
        for (k, v) in &self.heads {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// Numerically stable logistic function.
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + libm::expf(-x))
    } else {
        let e = libm::expf(x);
        e / (1.0 + e)
    }
}

/// Numerically stable softmax (max subtracted first).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.iter().map(|l| libm::expf(l - m)).collect();
    let sum: f32 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

/// Index of the largest value (the first on ties).
pub(crate) fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

/// Decodes one head's raw values.
pub fn decode_head(head: &HeadSpec, raw: &[f32]) -> Result<HeadOutput> {
    if raw.len() != head.output_width() {
        return Err(Error::OutputShape {
            head: head.name.clone(),
            expected: head.output_width(),
            got: raw.len(),
        });
    }
    Ok(match &head.kind {
        HeadKind::Regression {
            scale,
            offset,
            min,
            max,
            ..
        } => HeadOutput::Regression((raw[0] * scale + offset).clamp(*min, *max)),
        HeadKind::Distribution { min, max, .. } => {
            let probs = softmax(raw);
            let value: f32 = probs
                .iter()
                .zip(head.kind.centres())
                .map(|(p, c)| p * c)
                .sum();
            HeadOutput::Regression(value.clamp(*min, *max))
        }
        HeadKind::Binary { labels } => {
            let p1 = sigmoid(raw[0]);
            let index = usize::from(p1 >= 0.5);
            let p = if index == 1 { p1 } else { 1.0 - p1 };
            HeadOutput::Binary {
                label: labels[index].clone(),
                index,
                p,
            }
        }
        HeadKind::Multiclass { labels } => {
            let probs = softmax(raw);
            let index = argmax(&probs);
            HeadOutput::Multiclass {
                label: labels[index].clone(),
                index,
                p: probs[index],
                probs,
            }
        }
    })
}

/// Decodes all heads for one image; `raw[i]` holds head `i`'s values.
pub fn decode(heads: &[HeadSpec], raw: &[&[f32]]) -> Result<Prediction> {
    if raw.len() != heads.len() {
        return Err(Error::InvalidContract(format!(
            "{} heads but {} outputs",
            heads.len(),
            raw.len()
        )));
    }
    let heads = heads
        .iter()
        .zip(raw)
        .map(|(h, r)| Ok((h.name.clone(), decode_head(h, r)?)))
        .collect::<Result<_>>()?;
    Ok(Prediction { heads })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heads::utkface_heads;

    #[test]
    fn a_distribution_head_reads_out_the_expected_value() {
        let h = HeadSpec::distribution("age", "years", 1.0, 116.0, 116);
        let mut raw = vec![-30.0f32; 116];
        raw[29] = 30.0;
        let v = decode_head(&h, &raw).unwrap().value().unwrap();
        assert!((v - 30.0).abs() < 1e-3, "{v}");
        // Equal mass on 20 and 40 years: 30, between the peaks.
        raw[29] = -30.0;
        raw[19] = 5.0;
        raw[39] = 5.0;
        let v = decode_head(&h, &raw).unwrap().value().unwrap();
        assert!((v - 30.0).abs() < 1e-3, "{v}");
        // Flat: the middle of the range.
        let v = decode_head(&h, &[0.0; 116]).unwrap().value().unwrap();
        assert!((v - 58.5).abs() < 1e-3, "{v}");
        assert!(decode_head(&h, &[0.0; 115]).is_err());
    }

    #[test]
    fn decodes_the_utkface_heads() {
        let h = utkface_heads();
        let p = decode(&h, &[&[0.5], &[2.0], &[0.0, 3.0, 0.0, 0.0, 1.0]]).unwrap();
        assert_eq!(p.get("age").unwrap().value(), Some(43.0));
        match p.get("gender").unwrap() {
            HeadOutput::Binary { label, p, .. } => {
                assert_eq!(label, "female");
                assert!((p - 0.880797).abs() < 1e-5);
            }
            other => panic!("{other:?}"),
        }
        let eth = p.get("ethnicity").unwrap();
        assert_eq!(eth.class(), Some(1));
        let s: f32 = eth.class_probs().iter().sum();
        assert!((s - 1.0).abs() < 1e-6);
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["gender"]["label"], "female");
        assert_eq!(json["ethnicity"]["label"], "Black");
    }

    #[test]
    fn extreme_logits_stay_finite_and_ages_clamp() {
        let h = utkface_heads();
        let p = decode(&h, &[&[1e9], &[-1e30], &[1e30, -1e30, 0.0, 0.0, 0.0]]).unwrap();
        assert_eq!(p.get("age").unwrap().value(), Some(116.0));
        assert_eq!(p.get("gender").unwrap().class(), Some(0));
        assert!(p
            .get("ethnicity")
            .unwrap()
            .class_probs()
            .iter()
            .all(|v| v.is_finite()));
        assert!(sigmoid(-1000.0).is_finite() && sigmoid(1000.0) == 1.0);
    }

    #[test]
    fn wrong_widths_are_errors() {
        let h = utkface_heads();
        assert!(decode_head(&h[2], &[0.0; 4]).is_err());
        assert!(decode(&h, &[&[0.0]]).is_err());
    }
}
