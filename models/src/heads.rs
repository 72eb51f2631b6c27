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
    /// One real value read out as an expectation (DEX, Rothe et al. 2018; the label
    /// distribution of DLDL-v2, Gao et al. 2018): the network emits one logit per bin, the
    /// bins' centres run from `min` to `max` in `bins` equal steps (`min`, …, `max`
    /// included), and the value is `Σ softmax(logits)_k · centre_k`, always inside
    /// `[min, max]`. Trained on the "two-hot" distribution that puts a target between its
    /// two nearest centres (its expectation is the target exactly) plus L1 on the readout.
    Distribution {
        /// Unit of the value (e.g. `years`).
        unit: String,
        /// Centre of the first bin.
        min: f32,
        /// Centre of the last bin.
        max: f32,
        /// Number of bins (at least 2).
        bins: u32,
    },
}

impl HeadKind {
    /// Unit and range of a head that predicts a value (regression or distribution).
    pub fn value_range(&self) -> Option<(&str, f32, f32)> {
        match self {
            Self::Regression { unit, min, max, .. } | Self::Distribution { unit, min, max, .. } => {
                Some((unit, *min, *max))
            }
            _ => None,
        }
    }

    /// The centres of a distribution head's bins (empty for other kinds).
    pub fn centres(&self) -> Vec<f32> {
        match self {
            Self::Distribution { min, max, bins, .. } => {
                let step = (max - min) / (*bins as f32 - 1.0);
                (0..*bins).map(|k| min + k as f32 * step).collect()
            }
            _ => Vec::new(),
        }
    }
}

/// How training data labels a head. Training reads it; the edge ignores it. It travels in
/// the contract with the head, so `eval` and `finetune` read a manifest the way training did
/// without the heads file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Labeling {
    /// Manifest column of the head's labels (default: the head's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// Weight of the head's loss in the sum of losses.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub weight: f32,
    /// The column holds ages in years and the class is the age band holding it (the heads
    /// file's `age_bands` kind).
    #[serde(default, skip_serializing_if = "is_false")]
    pub from_ages: bool,
}

fn one() -> f32 {
    1.0
}

fn is_one(w: &f32) -> bool {
    *w == 1.0
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Default for Labeling {
    fn default() -> Self {
        Self {
            column: None,
            weight: 1.0,
            from_ages: false,
        }
    }
}

impl Labeling {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// One head of the HydraNet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadSpec {
    /// Name; also the name of the head's ONNX output and, unless [`Labeling::column`] says
    /// otherwise, its manifest column.
    pub name: String,
    /// What the head predicts.
    #[serde(flatten)]
    pub kind: HeadKind,
    /// How training data labels it (absent from contracts written before heads files).
    #[serde(default, skip_serializing_if = "Labeling::is_default")]
    pub labeling: Labeling,
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
            labeling: Labeling::default(),
        }
    }

    /// A binary head.
    pub fn binary(name: &str, negative: &str, positive: &str) -> Self {
        Self {
            name: name.into(),
            kind: HeadKind::Binary {
                labels: [negative.into(), positive.into()],
            },
            labeling: Labeling::default(),
        }
    }

    /// A multi-class head.
    pub fn multiclass(name: &str, labels: &[&str]) -> Self {
        Self {
            name: name.into(),
            kind: HeadKind::Multiclass {
                labels: labels.iter().map(|s| s.to_string()).collect(),
            },
            labeling: Labeling::default(),
        }
    }

    /// A distribution head (see [`HeadKind::Distribution`]).
    pub fn distribution(name: &str, unit: &str, min: f32, max: f32, bins: u32) -> Self {
        Self {
            name: name.into(),
            kind: HeadKind::Distribution {
                unit: unit.into(),
                min,
                max,
                bins,
            },
            labeling: Labeling::default(),
        }
    }

    /// A multi-class head over age ranges, one class per band starting at each of `edges`
    /// (ascending, in years): `[0, 13, 20]` gives `0-12`, `13-19`, `20+`. Its targets come
    /// from an age in years (the `age` column or UTKFace's age field), so it can be added to
    /// a UTKFace model without new annotations.
    pub fn age_bands(name: &str, edges: &[u32]) -> core::result::Result<Self, String> {
        if edges.len() < 2 || edges.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!(
                "age bands for `{name}` need at least two ascending edges, got {edges:?}"
            ));
        }
        let labels: Vec<String> = edges
            .iter()
            .enumerate()
            .map(|(i, &lo)| match edges.get(i + 1) {
                Some(&next) => format!("{lo}-{}", next - 1),
                None => format!("{lo}+"),
            })
            .collect();
        Ok(Self {
            name: name.into(),
            kind: HeadKind::Multiclass { labels },
            labeling: Labeling {
                column: Some("age".into()),
                from_ages: true,
                ..Labeling::default()
            },
        })
    }

    /// The manifest column of this head's labels.
    pub fn column(&self) -> &str {
        self.labeling.column.as_deref().unwrap_or(&self.name)
    }

    /// Weight of this head's loss.
    pub fn weight(&self) -> f32 {
        self.labeling.weight
    }

    /// For a multi-class head whose labels are all age ranges (`13-19`, `60+`), the class
    /// holding `age`; `None` for any other head or an age outside every range.
    pub fn age_band_class(&self, age: f32) -> Option<usize> {
        let HeadKind::Multiclass { labels } = &self.kind else {
            return None;
        };
        let ranges: Option<Vec<(f32, f32)>> = labels.iter().map(|l| parse_age_range(l)).collect();
        ranges?
            .iter()
            // A band `a-b` of whole years holds every age below b + 1.
            .position(|&(lo, hi)| age >= lo && age < hi + 1.0)
    }

    /// A multi-class head whose every label is an age range (`13-19`, `60+`).
    pub fn is_age_bands(&self) -> bool {
        matches!(&self.kind, HeadKind::Multiclass { labels } if labels.iter().all(|l| parse_age_range(l).is_some()))
    }

    /// Number of raw values the network emits for this head.
    pub fn output_width(&self) -> usize {
        match &self.kind {
            HeadKind::Regression { .. } | HeadKind::Binary { .. } => 1,
            HeadKind::Multiclass { labels } => labels.len(),
            HeadKind::Distribution { bins, .. } => *bins as usize,
        }
    }

    /// Number of classes, or `None` for a regression head.
    pub fn num_classes(&self) -> Option<usize> {
        match &self.kind {
            HeadKind::Regression { .. } | HeadKind::Distribution { .. } => None,
            HeadKind::Binary { .. } => Some(2),
            HeadKind::Multiclass { labels } => Some(labels.len()),
        }
    }

    /// Class labels, empty for a regression head.
    pub fn labels(&self) -> &[String] {
        match &self.kind {
            HeadKind::Regression { .. } | HeadKind::Distribution { .. } => &[],
            HeadKind::Binary { labels } => labels,
            HeadKind::Multiclass { labels } => labels,
        }
    }

    /// Checks that a target value is valid for this head (a class index in range, a finite
    /// regression value inside `[min, max]`).
    pub fn check_target(&self, value: f32) -> core::result::Result<(), String> {
        match &self.kind {
            HeadKind::Regression { min, max, .. } | HeadKind::Distribution { min, max, .. } => {
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
            HeadKind::Distribution { min, max, bins, .. } => {
                if !(min.is_finite() && max.is_finite() && min < max && (2..=4096).contains(bins)) {
                    return Err(Error::InvalidContract(format!(
                        "distribution head `{}` needs finite min < max and 2..=4096 bins",
                        self.name
                    )));
                }
            }
            HeadKind::Multiclass { labels } => {
                if labels.len() < 2 {
                    return Err(Error::InvalidContract(format!(
                        "multiclass head `{}` needs at least two labels",
                        self.name
                    )));
                }
            }
        }
        let w = self.labeling.weight;
        if !(w.is_finite() && w >= 0.0) {
            return Err(Error::InvalidContract(format!(
                "head `{}`: loss weight {w} must be finite and not negative",
                self.name
            )));
        }
        if self.labeling.from_ages && !self.is_age_bands() {
            return Err(Error::InvalidContract(format!(
                "head `{}` is labelled from ages but its labels are not age bands",
                self.name
            )));
        }
        Ok(())
    }
}

fn parse_age_range(label: &str) -> Option<(f32, f32)> {
    let num = |s: &str| s.trim().parse::<u32>().ok().map(|v| v as f32);
    match label.strip_suffix('+') {
        Some(lo) => Some((num(lo)?, f32::INFINITY)),
        None => {
            let (lo, hi) = label.split_once('-')?;
            let (lo, hi) = (num(lo)?, num(hi)?);
            (lo <= hi).then_some((lo, hi))
        }
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
    fn age_bands_label_and_classify_every_age() {
        let h = HeadSpec::age_bands("age_band", &[0, 13, 20, 40, 60]).unwrap();
        assert_eq!(h.labels(), ["0-12", "13-19", "20-39", "40-59", "60+"]);
        let classes: Vec<_> = [1.0, 12.0, 12.5, 13.0, 19.0, 20.0, 59.0, 60.0, 116.0]
            .iter()
            .map(|&a| h.age_band_class(a))
            .collect();
        assert_eq!(
            classes,
            [0, 0, 0, 1, 1, 2, 3, 4, 4].map(Some).to_vec(),
            "bands hold whole years"
        );
        assert!(HeadSpec::age_bands("b", &[10]).is_err());
        assert!(HeadSpec::age_bands("b", &[10, 5]).is_err());
        assert_eq!(utkface_heads()[2].age_band_class(30.0), None);
        assert_eq!(utkface_heads()[0].age_band_class(30.0), None);
        assert_eq!(h.age_band_class(-1.0), None);
    }

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
