//! Head specifications: what each head predicts and how its raw output is read.
use serde::{Deserialize, Serialize};

use crate::{prelude::*, Error, Result};

/// What kind of quantity a head predicts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HeadKind {
    /// One real value. The network emits `raw`; the value is `raw * scale + offset`,
    /// clamped to `[min, max]` when decoding. Training targets are normalised the other way,
    /// so the network works near unit scale whatever the unit.
    Regression {
        /// Unit of the decoded value (e.g. `years`).
        unit: String,
        /// Multiplier from raw output to unit.
        scale: f32,
        /// Offset from raw output to unit.
        offset: f32,
        /// Smallest value a decoded prediction may take.
        min: f32,
        /// Largest value a decoded prediction may take.
        max: f32,
    },
    /// Two classes from one logit: `sigmoid(logit)` is the probability of `labels[1]`.
    Binary {
        /// Label of class 0 and class 1.
        labels: [String; 2],
    },
    /// One class of several, from one logit per class (softmax).
    Multiclass {
        /// Class labels, in logit order.
        labels: Vec<String>,
    },
}

/// One head of the HydraNet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadSpec {
    /// Name; also the name of the head's ONNX output and its manifest column.
    pub name: String,
    /// What the head predicts.
    #[serde(flatten)]
    pub kind: HeadKind,
}

impl HeadSpec {
    /// A regression head.
    pub fn regression(name: &str, unit: &str, scale: f32, offset: f32, min: f32, max: f32) -> Self {
        Self {
            name: name.into(),
            kind: HeadKind::Regression {
                unit: unit.into(),
                scale,
                offset,
                min,
                max,
            },
        }
    }

    /// A binary head.
    pub fn binary(name: &str, negative: &str, positive: &str) -> Self {
        Self {
            name: name.into(),
            kind: HeadKind::Binary {
                labels: [negative.into(), positive.into()],
            },
        }
    }

    /// A multi-class head.
    pub fn multiclass(name: &str, labels: &[&str]) -> Self {
        Self {
            name: name.into(),
            kind: HeadKind::Multiclass {
                labels: labels.iter().map(|s| s.to_string()).collect(),
            },
        }
    }

    /// Number of raw values the network emits for this head.
    pub fn output_width(&self) -> usize {
        match &self.kind {
            HeadKind::Regression { .. } | HeadKind::Binary { .. } => 1,
            HeadKind::Multiclass { labels } => labels.len(),
        }
    }

    /// Number of classes, or `None` for a regression head.
    pub fn num_classes(&self) -> Option<usize> {
        match &self.kind {
            HeadKind::Regression { .. } => None,
            HeadKind::Binary { .. } => Some(2),
            HeadKind::Multiclass { labels } => Some(labels.len()),
        }
    }

    /// Class labels, empty for a regression head.
    pub fn labels(&self) -> &[String] {
        match &self.kind {
            HeadKind::Regression { .. } => &[],
            HeadKind::Binary { labels } => labels,
            HeadKind::Multiclass { labels } => labels,
        }
    }

    /// Checks that a target value is valid for this head (a class index in range, a finite
    /// regression value inside `[min, max]`).
    pub fn check_target(&self, value: f32) -> core::result::Result<(), String> {
        match &self.kind {
            HeadKind::Regression { min, max, .. } => {
                if value.is_finite() && value >= *min && value <= *max {
                    Ok(())
                } else {
                    Err(format!("{} {value} outside {min}..={max}", self.name))
                }
            }
            _ => {
                let n = self.num_classes().unwrap_or(0);
                if libm::truncf(value) == value && value >= 0.0 && (value as usize) < n {
                    Ok(())
                } else {
                    Err(format!("{} class {value} not in 0..{n}", self.name))
                }
            }
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(Error::InvalidContract(format!(
                "head name `{}` must be non-empty ASCII letters, digits or `_`",
                self.name
            )));
        }
        match &self.kind {
            HeadKind::Regression {
                scale,
                offset,
                min,
                max,
                ..
            } => {
                if !(scale.is_finite() && *scale != 0.0 && offset.is_finite() && min < max) {
                    return Err(Error::InvalidContract(format!(
                        "regression head `{}` needs a finite non-zero scale and min < max",
                        self.name
                    )));
                }
            }
            HeadKind::Binary { .. } => {}
            HeadKind::Multiclass { labels } => {
                if labels.len() < 2 {
                    return Err(Error::InvalidContract(format!(
                        "multiclass head `{}` needs at least two labels",
                        self.name
                    )));
                }
            }
        }
        Ok(())
    }
}

/// UTKFace's ethnicity labels, in the order of the file names' race field.
pub const UTK_ETHNICITIES: [&str; 5] = ["White", "Black", "Asian", "Indian", "Others"];
/// UTKFace's gender labels, in the order of the file names' gender field.
pub const UTK_GENDERS: [&str; 2] = ["male", "female"];
/// Youngest age UTKFace labels.
pub const UTK_MIN_AGE: f32 = 1.0;
/// Oldest age UTKFace labels.
pub const UTK_MAX_AGE: f32 = 116.0;

/// The default UTKFace head set: `age` (years), `gender`, `ethnicity`.
///
/// The age head works on `(age - 33) / 20`: UTKFace's mean and spread are near those,
/// so the raw output starts near unit scale.
pub fn utkface_heads() -> Vec<HeadSpec> {
    vec![
        HeadSpec::regression("age", "years", 20.0, 33.0, UTK_MIN_AGE, UTK_MAX_AGE),
        HeadSpec::binary("gender", UTK_GENDERS[0], UTK_GENDERS[1]),
        HeadSpec::multiclass("ethnicity", &UTK_ETHNICITIES),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_heads_have_the_utkface_widths() {
        let h = utkface_heads();
        let w: Vec<_> = h.iter().map(|h| h.output_width()).collect();
        assert_eq!(w, vec![1, 1, 5]);
        assert_eq!(h[2].labels()[3], "Indian");
        for head in &h {
            head.validate().unwrap();
        }
    }

    #[test]
    fn targets_are_checked_against_the_head() {
        let h = utkface_heads();
        assert!(h[0].check_target(30.0).is_ok());
        assert!(h[0].check_target(0.0).is_err());
        assert!(h[0].check_target(117.0).is_err());
        assert!(h[1].check_target(1.0).is_ok());
        assert!(h[1].check_target(2.0).is_err());
        assert!(h[2].check_target(4.0).is_ok());
        assert!(h[2].check_target(1.5).is_err());
    }
}
