//! Metrics both sides report: MAE for regression heads, accuracy, macro-F1 and confusion
//! matrices for class heads, and the same broken down by ethnicity, gender and age band.
//! A head's metrics are over the samples labelled for it ([`HeadMetrics::n`]); an
//! unlabelled target ([`crate::dataset::UNLABELLED`]) counts nowhere for that head.
use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};

use crate::{dataset::is_labelled, heads::HeadKind, HeadSpec, Prediction};

/// Age bands of the fairness breakdown: `(label, first year, last year)`.
pub const AGE_BANDS: [(&str, f32, f32); 5] = [
    ("0-12", 0.0, 12.0),
    ("13-19", 13.0, 19.0),
    ("20-39", 20.0, 39.0),
    ("40-59", 40.0, 59.0),
    ("60+", 60.0, f32::MAX),
];

/// The age band of an age in years.
pub fn age_band(age: f32) -> &'static str {
    AGE_BANDS
        .iter()
        .find(|(_, lo, hi)| age >= *lo && age < *hi + 1.0)
        .map(|b| b.0)
        .unwrap_or("60+")
}

#[derive(Debug, Clone)]
enum HeadAccum {
    Reg { abs: f64, sq: f64, n: u64 },
    Class { confusion: Vec<Vec<u64>> },
}

#[derive(Debug, Clone)]
struct Accum {
    n: u64,
    heads: Vec<HeadAccum>,
}

impl Accum {
    fn new(heads: &[HeadSpec]) -> Self {
        let heads = heads
            .iter()
            .map(|h| match h.num_classes() {
                None => HeadAccum::Reg {
                    abs: 0.0,
                    sq: 0.0,
                    n: 0,
                },
                Some(k) => HeadAccum::Class {
                    confusion: vec![vec![0; k]; k],
                },
            })
            .collect();
        Self { n: 0, heads }
    }

    fn add(&mut self, targets: &[f32], pred: &Prediction) {
        self.n += 1;
        for ((acc, t), (_, out)) in self.heads.iter_mut().zip(targets).zip(&pred.heads) {
            if !is_labelled(*t) {
                continue;
            }
            match acc {
                HeadAccum::Reg { abs, sq, n } => {
                    let e = (out.value().unwrap_or(f32::NAN) - t) as f64;
                    *abs += e.abs();
                    *sq += e * e;
                    *n += 1;
                }
                HeadAccum::Class { confusion } => {
                    let (truth, guess) = (*t as usize, out.class().unwrap_or(usize::MAX));
                    if truth < confusion.len() && guess < confusion.len() {
                        confusion[truth][guess] += 1;
                    }
                }
            }
        }
    }
}

/// Metrics of one head.
#[derive(Debug, Clone, Serialize)]
pub struct HeadMetrics {
    /// Head name.
    pub name: String,
    /// Samples labelled for this head (the metrics are over these).
    pub n: u64,
    /// Mean absolute error in the head's unit (regression).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mae: Option<f64>,
    /// Root mean squared error (regression).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rmse: Option<f64>,
    /// Accuracy in `[0, 1]` (class heads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acc: Option<f64>,
    /// Macro-averaged F1 over classes present in truth or prediction (class heads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub macro_f1: Option<f64>,
    /// Rows: true class; columns: predicted class (class heads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confusion: Option<Vec<Vec<u64>>>,
}

impl HeadMetrics {
    /// One line: `age MAE 6.21` or `gender acc 88.1% (F1 0.88)`.
    pub fn one_line(&self) -> String {
        head_text(self)
    }
}

fn finish(heads: &[HeadSpec], acc: &Accum) -> Vec<HeadMetrics> {
    heads
        .iter()
        .zip(&acc.heads)
        .map(|(h, a)| match a {
            HeadAccum::Reg { abs, sq, n } => HeadMetrics {
                name: h.name.clone(),
                n: *n,
                mae: (*n > 0).then(|| abs / *n as f64),
                rmse: (*n > 0).then(|| (sq / *n as f64).sqrt()),
                acc: None,
                macro_f1: None,
                confusion: None,
            },
            HeadAccum::Class { confusion } => {
                let k = confusion.len();
                let total: u64 = confusion.iter().flatten().sum();
                let correct: u64 = (0..k).map(|i| confusion[i][i]).sum();
                let mut f1s = Vec::new();
                for (c, row) in confusion.iter().enumerate() {
                    let tp = row[c] as f64;
                    let truth: u64 = row.iter().sum();
                    let guessed: u64 = (0..k).map(|r| confusion[r][c]).sum();
                    if truth + guessed == 0 {
                        continue;
                    }
                    f1s.push(2.0 * tp / (truth + guessed) as f64);
                }
                HeadMetrics {
                    name: h.name.clone(),
                    n: total,
                    mae: None,
                    rmse: None,
                    acc: (total > 0).then(|| correct as f64 / total as f64),
                    macro_f1: (total > 0)
                        .then(|| f1s.iter().sum::<f64>() / f1s.len().max(1) as f64),
                    confusion: Some(confusion.clone()),
                }
            }
        })
        .collect()
}

/// Collects predictions against targets and produces a [`Report`].
#[derive(Debug, Clone)]
pub struct Evaluator {
    heads: Vec<HeadSpec>,
    all: Accum,
    groups: BTreeMap<(String, String), Accum>,
}

impl Evaluator {
    /// An evaluator for these heads.
    pub fn new(heads: &[HeadSpec]) -> Self {
        Self {
            heads: heads.to_vec(),
            all: Accum::new(heads),
            groups: BTreeMap::new(),
        }
    }

    /// Adds one sample: its targets (head order) and the model's prediction.
    pub fn add(&mut self, targets: &[f32], pred: &Prediction) {
        self.all.add(targets, pred);
        for (group, value) in self.group_keys(targets) {
            self.groups
                .entry((group, value))
                .or_insert_with(|| Accum::new(&self.heads))
                .add(targets, pred);
        }
    }

    // Breakdowns use the *true* labels of whichever of `ethnicity`, `gender`, `age` exist.
    fn group_keys(&self, targets: &[f32]) -> Vec<(String, String)> {
        let mut keys = Vec::new();
        for (h, t) in self.heads.iter().zip(targets) {
            if !is_labelled(*t) {
                continue;
            }
            match (&h.kind, h.name.as_str()) {
                (HeadKind::Regression { .. } | HeadKind::Distribution { .. }, "age") => {
                    keys.push(("age_band".into(), age_band(*t).into()))
                }
                (HeadKind::Binary { .. } | HeadKind::Multiclass { .. }, "gender" | "ethnicity") => {
                    let label = h
                        .labels()
                        .get(*t as usize)
                        .cloned()
                        .unwrap_or_else(|| t.to_string());
                    keys.push((h.name.clone(), label));
                }
                _ => {}
            }
        }
        keys
    }

    /// The metrics so far.
    pub fn report(&self) -> Report {
        let mut groups: BTreeMap<String, Vec<GroupMetrics>> = BTreeMap::new();
        for ((g, v), acc) in &self.groups {
            groups.entry(g.clone()).or_default().push(GroupMetrics {
                value: v.clone(),
                n: acc.n,
                heads: finish(&self.heads, acc),
            });
        }
        // Age bands in age order, not alphabetical.
        if let Some(bands) = groups.get_mut("age_band") {
            bands.sort_by_key(|b| AGE_BANDS.iter().position(|a| a.0 == b.value));
        }
        Report {
            n: self.all.n,
            heads: finish(&self.heads, &self.all),
            groups,
            labels: self.heads.clone(),
        }
    }
}

/// Metrics within one group (e.g. ethnicity = Asian).
#[derive(Debug, Clone, Serialize)]
pub struct GroupMetrics {
    /// The group's value.
    pub value: String,
    /// Samples in the group.
    pub n: u64,
    /// Head metrics within the group.
    pub heads: Vec<HeadMetrics>,
}

/// All metrics of one evaluation.
#[derive(Debug, Clone)]
pub struct Report {
    /// Samples evaluated.
    pub n: u64,
    /// Overall head metrics.
    pub heads: Vec<HeadMetrics>,
    /// Breakdowns: `ethnicity`, `gender`, `age_band` → per-value metrics.
    pub groups: BTreeMap<String, Vec<GroupMetrics>>,
    labels: Vec<HeadSpec>,
}

fn flat(heads: &[HeadMetrics], total: u64, out: &mut serde_json::Map<String, Value>) {
    for h in heads {
        // Only where the head is partly labelled: a fully labelled head's count is `n`.
        if h.n != total {
            out.insert(format!("{}_n", h.name), json!(h.n));
        }
        if let Some(v) = h.mae {
            out.insert(format!("{}_mae", h.name), json!(v));
        }
        if let Some(v) = h.acc {
            out.insert(format!("{}_acc", h.name), json!(v));
        }
        if let Some(v) = h.macro_f1 {
            out.insert(format!("{}_f1", h.name), json!(v));
        }
    }
}

impl Report {
    /// Flat headline metrics: `n`, `<head>_mae`, `<head>_acc`, `<head>_f1`.
    pub fn summary(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("n".into(), json!(self.n));
        flat(&self.heads, self.n, &mut m);
        Value::Object(m)
    }

    /// Headline metrics plus per-head details and the group breakdowns.
    pub fn to_json(&self) -> Value {
        let mut v = self.summary();
        let groups: serde_json::Map<String, Value> = self
            .groups
            .iter()
            .map(|(g, list)| {
                let rows: Vec<Value> = list
                    .iter()
                    .map(|gm| {
                        let mut m = serde_json::Map::new();
                        m.insert("value".into(), json!(gm.value));
                        m.insert("n".into(), json!(gm.n));
                        flat(&gm.heads, gm.n, &mut m);
                        Value::Object(m)
                    })
                    .collect();
                (g.clone(), Value::Array(rows))
            })
            .collect();
        v["heads"] = json!(self.heads);
        v["groups"] = Value::Object(groups);
        v
    }

    /// One line: `n=… age MAE 6.21 | gender acc 88.1% | ethnicity acc 76.0% (F1 0.71)`;
    /// a partly labelled head says over how many samples (`is_adult acc 91.0% (…) n=950`).
    pub fn one_line(&self) -> String {
        let parts: Vec<String> = self
            .heads
            .iter()
            .map(|h| match h.n == self.n {
                true => head_text(h),
                false => format!("{} n={}", head_text(h), h.n),
            })
            .collect();
        format!("n={} {}", self.n, parts.join(" | "))
    }

    /// A human-readable table with confusion matrices and breakdowns.
    pub fn table(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!("samples: {}\n", self.n));
        for h in &self.heads {
            s.push_str(&format!("  {} (n={})\n", head_text(h), h.n));
        }
        for (h, spec) in self.heads.iter().zip(&self.labels) {
            if let Some(c) = &h.confusion {
                s.push_str(&format!(
                    "confusion matrix `{}` (rows: truth, columns: predicted)\n",
                    h.name
                ));
                let labels = spec.labels();
                let w = labels.iter().map(|l| l.len()).max().unwrap_or(4).max(6);
                s.push_str(&format!("  {:>w$}", ""));
                for l in labels {
                    s.push_str(&format!(" {l:>w$}"));
                }
                s.push('\n');
                for (row, l) in c.iter().zip(labels) {
                    s.push_str(&format!("  {l:>w$}"));
                    for v in row {
                        s.push_str(&format!(" {v:>w$}"));
                    }
                    s.push('\n');
                }
            }
        }
        for (g, list) in &self.groups {
            s.push_str(&format!("by {g}\n"));
            for gm in list {
                let parts: Vec<String> = gm.heads.iter().map(head_text).collect();
                s.push_str(&format!(
                    "  {:>8} n={:<6} {}\n",
                    gm.value,
                    gm.n,
                    parts.join(" | ")
                ));
            }
        }
        s
    }
}

fn head_text(h: &HeadMetrics) -> String {
    if h.n == 0 {
        return format!("{} (no labelled sample)", h.name);
    }
    match (h.mae, h.acc) {
        (Some(mae), _) => format!("{} MAE {:.2}", h.name, mae),
        (_, Some(acc)) => format!(
            "{} acc {:.1}% (F1 {:.3})",
            h.name,
            acc * 100.0,
            h.macro_f1.unwrap_or(0.0)
        ),
        _ => h.name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode::decode, heads::utkface_heads};

    #[test]
    fn metrics_match_a_hand_count() {
        let heads = utkface_heads();
        let mut ev = Evaluator::new(&heads);
        // Sample 1: true (30, male, White); predicted age 33, male, White.
        let p1 = decode(&heads, &[&[0.0], &[-3.0], &[5.0, 0.0, 0.0, 0.0, 0.0]]).unwrap();
        ev.add(&[30.0, 0.0, 0.0], &p1);
        // Sample 2: true (5, female, Asian); predicted 33 (MAE 28), male, Black.
        let p2 = decode(&heads, &[&[0.0], &[-3.0], &[0.0, 5.0, 0.0, 0.0, 0.0]]).unwrap();
        ev.add(&[5.0, 1.0, 2.0], &p2);
        let r = ev.report();
        let s = r.summary();
        assert_eq!(s["n"], 2);
        assert!((s["age_mae"].as_f64().unwrap() - 15.5).abs() < 1e-9);
        assert!((s["gender_acc"].as_f64().unwrap() - 0.5).abs() < 1e-9);
        assert!((s["ethnicity_acc"].as_f64().unwrap() - 0.5).abs() < 1e-9);
        // Ethnicity F1: White 2*1/(1+1)=1, Black 0, Asian 0 → macro 1/3.
        assert!((s["ethnicity_f1"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
        let bands = &r.groups["age_band"];
        assert_eq!(bands[0].value, "0-12");
        assert_eq!(bands[1].value, "20-39");
        assert_eq!(r.groups["ethnicity"].len(), 2);
        assert!(r.table().contains("confusion matrix `ethnicity`"));
        assert!(r.to_json()["groups"]["gender"].is_array());
    }

    #[test]
    fn unlabelled_targets_count_nowhere() {
        use crate::dataset::UNLABELLED;
        let heads = utkface_heads();
        let mut ev = Evaluator::new(&heads);
        let p = decode(&heads, &[&[0.0], &[-3.0], &[5.0, 0.0, 0.0, 0.0, 0.0]]).unwrap();
        ev.add(&[30.0, 0.0, UNLABELLED], &p);
        ev.add(&[UNLABELLED, 1.0, 0.0], &p);
        ev.add(&[UNLABELLED, UNLABELLED, 1.0], &p);
        let r = ev.report();
        let n: Vec<u64> = r.heads.iter().map(|h| h.n).collect();
        assert_eq!(n, [1, 2, 2]);
        let s = r.summary();
        assert_eq!(s["n"], 3);
        assert!((s["age_mae"].as_f64().unwrap() - 3.0).abs() < 1e-6);
        assert!((s["gender_acc"].as_f64().unwrap() - 0.5).abs() < 1e-9);
        assert!((s["ethnicity_acc"].as_f64().unwrap() - 0.5).abs() < 1e-9);
        assert_eq!(s["gender_n"], 2);
        assert_eq!(
            r.heads[2]
                .confusion
                .as_ref()
                .unwrap()
                .iter()
                .flatten()
                .sum::<u64>(),
            2
        );
        // Groups only from labelled truths.
        assert_eq!(r.groups["age_band"].len(), 1);
        assert!(
            r.one_line().contains("age MAE 3.00 n=1"),
            "{}",
            r.one_line()
        );
        let empty = Evaluator::new(&heads);
        let mut e2 = empty.clone();
        e2.add(&[UNLABELLED, 0.0, 0.0], &p);
        assert!(e2.report().one_line().contains("age (no labelled sample)"));
    }

    #[test]
    fn age_bands_cover_every_age() {
        assert_eq!(age_band(1.0), "0-12");
        assert_eq!(age_band(12.0), "0-12");
        assert_eq!(age_band(13.0), "13-19");
        assert_eq!(age_band(39.0), "20-39");
        assert_eq!(age_band(59.0), "40-59");
        assert_eq!(age_band(116.0), "60+");
    }
}
