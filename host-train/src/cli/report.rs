//! `host-train report`: the plots and tables of a model card.
use std::{fmt::Write as _, path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use clap::ValueEnum;
use host_train::{
    device,
    report::{
        curves::{best_epoch, read_log, EpochPoint},
        fairness::{check_goals, goals_markdown, headline_goal, Fairness},
        plot::{self, MetricPanel},
    },
    score,
    train::evaluate::evaluate_each,
};
use serde_json::json;

use super::{
    eval::{load_split, loading, Split},
    DataArgs,
};

/// Arguments of `report`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run folder: its `log.jsonl` gives the training curves, and without `--checkpoint`
    /// or `--model` its `best.safetensors` is the model reported. Default with
    /// `--checkpoint`: the checkpoint's folder, when it holds a `log.jsonl`.
    #[arg(long, required_unless_present_any = ["checkpoint", "model"])]
    run: Option<PathBuf>,
    /// Checkpoint to score.
    #[arg(long, conflicts_with = "model")]
    checkpoint: Option<PathBuf>,
    /// An exported ONNX file to score instead (fp32 or int8), rebuilt in Candle as `eval
    /// --model` does.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Validation fraction for `--split` with `--model` (default: the one the file's
    /// training run recorded, else 0.1).
    #[arg(long)]
    val_fraction: Option<f64>,
    #[command(flatten)]
    data: DataArgs,
    /// Which images to score (`all` for a held-out folder).
    #[arg(long, value_enum, default_value_t = Split::Val)]
    split: Split,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Score a checkpoint with test-time flip (the mean over the image and its mirror), as
    /// `export --test-time-flip` would run it. An ONNX file follows its own contract.
    #[arg(long, conflicts_with = "model")]
    test_time_flip: bool,
    /// Folder for the PNGs, `report.md` and `report.json` (created).
    #[arg(long)]
    out: PathBuf,
}

/// A head name as part of a file name.
fn file_part(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub fn run(a: Args) -> Result<ExitCode> {
    let checkpoint = match (&a.checkpoint, &a.model, &a.run) {
        (None, None, Some(run)) => Some(run.join("best.safetensors")),
        _ => a.checkpoint.clone(),
    };
    // The training log: the run's, else the checkpoint's folder's if it has one.
    let log = match (&a.run, &checkpoint) {
        (Some(run), _) => Some(run.join("log.jsonl")),
        (None, Some(c)) => c
            .parent()
            .map(|d| d.join("log.jsonl"))
            .filter(|l| l.is_file()),
        (None, None) => None,
    };
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let dev = device::open(&a.device)?;
    let model = a.model.as_deref();
    let m = score::load(
        checkpoint.as_deref(),
        model,
        a.val_fraction,
        a.test_time_flip,
        &dev,
    )
    .with_context(|| loading(checkpoint.as_deref(), model))?;
    let heads = m.contract.heads.clone();
    let d = load_split(&a.data, &m.contract, a.split, m.val_fraction)?;
    let split_name = a
        .split
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default();

    // Score, keeping (truth, prediction) of every regression head for its scatter.
    let regression: Vec<usize> = (0..heads.len())
        .filter(|&i| heads[i].num_classes().is_none())
        .collect();
    let mut pairs: Vec<Vec<(f32, f32)>> = vec![Vec::new(); regression.len()];
    let r = evaluate_each(&m.net, &d.cache, &heads, a.batch, &dev, |t, p| {
        for (k, &h) in regression.iter().enumerate() {
            if let (Some(truth), Some(v)) = (t.get(h), p.heads.get(h).and_then(|o| o.1.value())) {
                if models::dataset::is_labelled(*truth) {
                    pairs[k].push((*truth, v));
                }
            }
        }
    })
    .with_context(|| format!("scoring {}", m.path.display()))?;
    let report = r.report;
    let fairness = Fairness::from_report(&report, &heads);
    // The goals are UTKFace's: a model with none of its heads has none to check.
    let utk = ["age", "gender", "ethnicity"];
    let goals = match heads.iter().any(|h| utk.contains(&h.name.as_str())) {
        true => check_goals(&fairness),
        false => Vec::new(),
    };
    let goals_text = match goals.is_empty() {
        true => "No goals are set for this model's heads (the model card's goals are \
                 UTKFace's: age, gender, ethnicity).\n"
            .to_string(),
        false => goals_markdown(&goals),
    };

    // Plots.
    let mut plots: Vec<(String, String)> = Vec::new(); // (file, caption)
    let out = |name: &str| a.out.join(name);
    let mut curves: Option<(Vec<EpochPoint>, Option<usize>)> = None;
    if let Some(log) = &log {
        let points = read_log(log)?;
        let best = best_epoch(&points);
        if points.is_empty() {
            tracing::warn!("{}: no epoch logged yet, no training curves", log.display());
        } else {
            plot::loss_curves(&points, best, &out("loss.png"))?;
            plots.push((
                "loss.png".into(),
                "Training and validation loss per epoch".into(),
            ));
            let panels: Vec<MetricPanel> = heads
                .iter()
                .map(|h| {
                    let (key, title, percent) = match h.kind.value_range() {
                        Some((unit, _, _)) => (
                            format!("{}_mae", h.name),
                            format!("{} MAE ({unit})", h.name),
                            false,
                        ),
                        None => (
                            format!("{}_acc", h.name),
                            format!("{} accuracy", h.name),
                            true,
                        ),
                    };
                    MetricPanel {
                        goal: headline_goal(&key),
                        key,
                        title,
                        percent,
                    }
                })
                .collect();
            if points.iter().any(|p| !p.val.is_empty()) {
                plot::val_metrics(&points, &panels, best, &out("val_metrics.png"))?;
                plots.push((
                    "val_metrics.png".into(),
                    "Validation metrics per epoch".into(),
                ));
            }
        }
        curves = Some((points, best));
    } else {
        tracing::info!("no training log (give --run RUN_DIR for the training curves)");
    }
    for (h, hm) in heads.iter().zip(&report.heads) {
        if let Some(c) = &hm.confusion {
            let file = format!("confusion_{}.png", file_part(&h.name));
            plot::confusion(&h.name, h.labels(), c, &out(&file))?;
            plots.push((file, format!("{} confusion matrix", h.name)));
        }
    }
    for (k, &i) in regression.iter().enumerate() {
        let Some((unit, _, _)) = heads[i].kind.value_range() else {
            continue;
        };
        let file = format!("{}_scatter.png", file_part(&heads[i].name));
        plot::scatter(&heads[i].name, unit, &pairs[k], &out(&file))?;
        plots.push((file, format!("{}: predicted vs true", heads[i].name)));
    }

    // report.md
    let kind = match (&a.model, &m.contract.quantization) {
        (None, _) => "checkpoint".to_string(),
        (Some(_), None) => "ONNX, float".to_string(),
        (Some(_), Some(q)) => format!("ONNX, {} {}", q.scheme, q.form),
    };
    let mut md = String::new();
    let _ = writeln!(md, "# Report: `{}`\n", m.path.display());
    let _ = writeln!(
        md,
        "- model: `{}` ({kind}), {} {}, architecture {}, input {}x{}{}",
        m.path.display(),
        m.contract.model_name,
        m.contract.model_version,
        m.contract.architecture,
        m.contract.preprocess.width,
        m.contract.preprocess.height,
        if m.contract.test_time_flip {
            ", test-time flip (mean over image and mirror)"
        } else {
            ""
        },
    );
    let split_text = match a.split {
        Split::All => "all images".to_string(),
        _ => format!(
            "{split_name} split (validation fraction {}, by file-name hash)",
            m.val_fraction
        ),
    };
    let _ = writeln!(
        md,
        "- data: `{}`, {split_text}: {} images scored, {} files skipped",
        d.source, report.n, d.skipped
    );
    match (&log, &curves) {
        (Some(l), Some((points, best))) => {
            let _ = writeln!(
                md,
                "- training log: `{}`, {} epochs logged{}",
                l.display(),
                points.len(),
                best.map(|b| format!(", best (lowest validation loss) epoch {b}"))
                    .unwrap_or_default()
            );
        }
        _ => {
            let _ = writeln!(md, "- training log: none given (`--run RUN_DIR`)");
        }
    }
    let _ = writeln!(md, "\n## Goals\n\n{goals_text}");
    let _ = writeln!(md, "## Metrics per head\n");
    let _ = writeln!(
        md,
        "| head | labelled images | MAE | RMSE | accuracy | macro-F1 |"
    );
    let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: | ---: |");
    let num = |v: Option<f64>, pct: bool| match v {
        None => "–".to_string(),
        Some(v) if pct => format!("{:.1} %", v * 100.0),
        Some(v) => format!("{v:.3}"),
    };
    for h in &report.heads {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            h.name,
            h.n,
            num(h.mae, false),
            num(h.rmse, false),
            num(h.acc, true),
            num(h.macro_f1, false)
        );
    }
    let _ = writeln!(
        md,
        "\n## Fairness\n\nEvery head's metric overall and per group (groups by the true \
         labels); \"worst\" in the goals above is over every ethnicity group, whatever its \
         size.\n\n{}",
        fairness.markdown()
    );
    if !plots.is_empty() {
        let _ = writeln!(md, "## Plots\n");
        for (file, caption) in &plots {
            let _ = writeln!(md, "![{caption}]({file})\n");
        }
    }
    let md_path = out("report.md");
    std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;

    // report.json
    let j = json!({
        "model": {
            "path": m.path.display().to_string(),
            "kind": kind,
            "name": m.contract.model_name,
            "version": m.contract.model_version,
            "architecture": m.contract.architecture,
            "input": [m.contract.preprocess.width, m.contract.preprocess.height],
            "quantization": m.contract.quantization,
            "test_time_flip": m.contract.test_time_flip,
        },
        "data": {
            "source": d.source.clone(),
            "split": split_name,
            "val_fraction": m.val_fraction,
            "n": report.n,
            "skipped": d.skipped,
        },
        "run": match (&log, &curves) {
            (Some(l), Some((points, best))) => json!({
                "log": l.display().to_string(),
                "epochs": points.len(),
                "best_epoch": best,
            }),
            _ => serde_json::Value::Null,
        },
        "metrics": report.to_json(),
        "fairness": fairness.to_json(),
        "goals": goals,
        "plots": plots.iter().map(|p| &p.0).collect::<Vec<_>>(),
    });
    let json_path = out("report.json");
    let text = serde_json::to_string_pretty(&j)?;
    std::fs::write(&json_path, text + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;

    println!(
        "{} on {} ({split_name}): {}",
        m.path.display(),
        d.source,
        report.one_line()
    );
    print!("{goals_text}");
    let mut written: Vec<String> = plots.into_iter().map(|p| p.0).collect();
    written.extend(["report.md".into(), "report.json".into()]);
    println!("wrote {} in {}", written.join(", "), a.out.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn head_names_become_safe_file_names() {
        assert_eq!(super::file_part("age_band-2"), "age_band-2");
        assert_eq!(super::file_part("a/b c"), "a_b_c");
    }
}
