//! A run's `log.jsonl` ([`crate::train::log`]) as one point per epoch, for the plots.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use super::{ReportError, Result};
use crate::train::log::parse_line;

/// What the trainer logged for one epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochPoint {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch (weighted as trained).
    pub train_loss: Option<f64>,
    /// Validation loss (unweighted sum of the head losses), when there was a split.
    pub val_loss: Option<f64>,
    /// Validation metrics: `age_mae`, `gender_acc`, `ethnicity_acc`, `ethnicity_f1`, …
    pub val: BTreeMap<String, f64>,
    /// Whether this epoch's checkpoint became `best.safetensors`.
    pub best: bool,
}

/// Reads `path` (a run's `log.jsonl`); see [`parse_log`].
pub fn read_log(path: &Path) -> Result<Vec<EpochPoint>> {
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
        path: path.into(),
        source,
    })?;
    parse_log(&text, path)
}

/// Parses the lines of a training log. Event lines (`{"event": "interrupted", …}`) are
/// skipped; an epoch logged twice (a resumed run) keeps its last record; the result is in
/// epoch order. A last line that does not parse (the trainer is writing it) is skipped;
/// any other bad line is an error naming it.
pub fn parse_log(text: &str, path: &Path) -> Result<Vec<EpochPoint>> {
    let lines: Vec<&str> = text.lines().collect();
    let bad = |line: usize, reason: String| ReportError::Log {
        path: PathBuf::from(path),
        line,
        reason,
    };
    let mut by_epoch = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {
                tracing::warn!("{}:{}: incomplete last line skipped", path.display(), i + 1);
                continue;
            }
            Err(e) => return Err(bad(i + 1, format!("not JSON: {e}"))),
        };
        let Some(r) = parse_line(v).map_err(|e| bad(i + 1, e.to_string()))? else {
            continue;
        };
        let val = r
            .val
            .map(|m| {
                m.into_iter()
                    .filter(|(k, _)| k.as_str() != "n")
                    .filter_map(|(k, x)| x.as_f64().map(|x| (k, x)))
                    .collect()
            })
            .unwrap_or_default();
        by_epoch.insert(
            r.epoch,
            EpochPoint {
                epoch: r.epoch,
                train_loss: r.train_loss,
                val_loss: r.val_loss,
                val,
                best: r.best,
            },
        );
    }
    Ok(by_epoch.into_values().collect())
}

/// The epoch with the lowest validation loss (what `best.safetensors` holds).
pub fn best_epoch(points: &[EpochPoint]) -> Option<usize> {
    points
        .iter()
        .filter_map(|p| p.val_loss.map(|l| (p.epoch, l)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(e, _)| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = r#"{"epoch":1,"train_loss":2.5,"val_loss":2.0,"val":{"n":10,"age_mae":9.5,"gender_acc":0.6},"best":true}
{"event":"interrupted","epoch":2,"step":3}
{"epoch":2,"train_loss":1.5,"val_loss":2.2,"val":{"n":10,"age_mae":8.0,"gender_acc":0.7},"best":false}
{"epoch":3,"train_loss":1.0,"val_loss":null,"val":null,"best":true}
"#;

    #[test]
    fn epochs_are_read_and_events_skipped() {
        let p = parse_log(LOG, Path::new("log.jsonl")).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].val["age_mae"], 9.5);
        assert!(!p[0].val.contains_key("n"));
        assert_eq!(p[1].train_loss, Some(1.5));
        assert_eq!(p[2].val_loss, None);
        assert!(p[2].val.is_empty());
        assert_eq!(best_epoch(&p), Some(1));
    }

    #[test]
    fn a_repeated_epoch_keeps_its_last_record_and_order_is_by_epoch() {
        let log = "{\"epoch\":2,\"train_loss\":9}\n{\"epoch\":1,\"train_loss\":1}\n{\"epoch\":2,\"train_loss\":2}\n";
        let p = parse_log(log, Path::new("l")).unwrap();
        assert_eq!(
            p.iter()
                .map(|p| (p.epoch, p.train_loss))
                .collect::<Vec<_>>(),
            [(1, Some(1.0)), (2, Some(2.0))]
        );
    }

    #[test]
    fn a_partial_last_line_is_skipped_a_bad_middle_line_is_an_error() {
        let p = parse_log("{\"epoch\":1}\n{\"epoch\":2,\"tra", Path::new("l")).unwrap();
        assert_eq!(p.len(), 1);
        let e = parse_log(
            "{\"epoch\":1}\nnot json\n{\"epoch\":2}\n",
            Path::new("run/l"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("run/l:2: not JSON"), "{e}");
        let e = parse_log("{\"loss\":1}\n", Path::new("l"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("l:1") && e.contains("epoch"), "{e}");
    }
}
