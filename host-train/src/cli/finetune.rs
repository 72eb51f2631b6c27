//! `host-train finetune`: train one head (existing or new) on a frozen body.
use std::{path::PathBuf, process::ExitCode};

use anyhow::{bail, Context, Result};
use host_train::{
    device,
    train::finetune::{finetune, FinetuneOptions},
};
use models::{heads_file::HeadsFile, metrics::Report, HeadSpec};

use super::DataArgs;

/// Arguments of `finetune`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Checkpoint whose body (and other heads) stay as they are, or an exported fp32 ONNX
    /// file (e.g. the shipped model): its weights fold back to the same bits on export.
    #[arg(long)]
    checkpoint: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Head to train: an existing one, or the one `--add-head` creates.
    #[arg(long)]
    head: Option<String>,
    /// A new head: with `--heads FILE`, the name of one of the file's heads (any kind);
    /// without, `NAME:age-bands[:E1,E2,...]`, a class per age band starting at each edge
    /// (default 0,13,20,40,60 → 0-12, 13-19, 20-39, 40-59, 60+), labelled from the age in
    /// the data.
    #[arg(long, value_name = "NAME|SPEC")]
    add_head: Option<String>,
    /// Heads file declaring the head `--add-head` names.
    #[arg(long, value_name = "FILE.toml", requires = "add_head")]
    heads: Option<PathBuf>,
    /// The checkpoint already has the head `--add-head` names: the new declaration takes
    /// its place (same output position, any kind), from fresh weights. E.g. the shipped L1
    /// age head replaced by a distribution head:
    /// `--add-head age --heads models/heads/utkface-dex.toml --replace`.
    #[arg(long, requires = "add_head")]
    replace: bool,
    /// Keep the body frozen (the only mode: the body's features are computed once; to
    /// train the body too, use `train --resume` or `train --init-from`).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true")]
    freeze_body: bool,
    /// Checkpoint to write (default: next to the input, `<name>-<head>.safetensors`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Passes over the cached features.
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    /// Batch size.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Peak learning rate (cosine decay).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Weight decay of the head's matrices.
    #[arg(long, default_value_t = 5e-4)]
    weight_decay: f64,
    /// Seed of a new head's weights and of the batch order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Do not add mirrored copies of the training images' features.
    #[arg(long)]
    no_flip: bool,
    /// Start an existing head from fresh weights.
    #[arg(long)]
    reinit: bool,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Parses `NAME:age-bands[:E1,E2,...]`.
pub fn parse_head_spec(spec: &str) -> Result<HeadSpec> {
    let mut parts = spec.splitn(3, ':');
    let name = parts.next().unwrap_or_default();
    let kind = parts.next().unwrap_or_default();
    if kind != "age-bands" {
        bail!(
            "--add-head `{spec}`: expected NAME:age-bands[:E1,E2,...], or a head's name with \
             --heads FILE"
        );
    }
    let edges: Vec<u32> = match parts.next() {
        None => vec![0, 13, 20, 40, 60],
        Some(list) => list
            .split(',')
            .map(|e| e.trim().parse::<u32>())
            .collect::<std::result::Result<_, _>>()
            .with_context(|| format!("--add-head `{spec}`: edges must be whole years"))?,
    };
    HeadSpec::age_bands(name, &edges).map_err(anyhow::Error::msg)
}

fn head_line(report: &Report, name: &str) -> String {
    report
        .heads
        .iter()
        .find(|h| h.name == name)
        .map(|h| h.one_line())
        .unwrap_or_default()
}

pub fn run(a: Args) -> Result<ExitCode> {
    if !a.freeze_body {
        bail!(
            "finetune trains heads on a frozen body only; to train the body, use \
             `train --resume` or `train --init-from`"
        );
    }
    let add = match (&a.add_head, &a.heads) {
        (Some(name), Some(file)) => {
            let hf = HeadsFile::read(file)?;
            let spec = hf.heads.iter().find(|h| h.name == *name).cloned();
            Some(spec.ok_or_else(|| {
                anyhow::anyhow!(
                    "--add-head {name}: {} declares no such head (it declares {})",
                    file.display(),
                    hf.heads
                        .iter()
                        .map(|h| h.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?)
        }
        (Some(spec), None) => Some(parse_head_spec(spec)?),
        (None, _) => None,
    };
    let head = match (&a.head, &add) {
        (Some(h), Some(s)) if *h != s.name => {
            bail!("--head {h} and --add-head {} name different heads", s.name)
        }
        (Some(h), _) => h.clone(),
        (None, Some(s)) => s.name.clone(),
        (None, None) => bail!("name the head to train with --head, or add one with --add-head"),
    };
    let out = a.out.clone().unwrap_or_else(|| {
        let stem = a
            .checkpoint
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "checkpoint".into());
        a.checkpoint
            .with_file_name(format!("{stem}-{head}.safetensors"))
    });
    if out == a.checkpoint {
        bail!(
            "--out {} is the input checkpoint; write the fine-tuned model elsewhere",
            out.display()
        );
    }
    let dev = device::open(&a.device)?;
    let opts = FinetuneOptions {
        head: head.clone(),
        add,
        data: a.data.source()?,
        epochs: a.epochs,
        batch: a.batch,
        lr: a.lr,
        weight_decay: a.weight_decay,
        seed: a.seed,
        flip: !a.no_flip,
        reinit: a.reinit,
        replace: a.replace,
    };
    let r = finetune(&a.checkpoint, &out, &opts, &dev)
        .with_context(|| format!("fine-tuning `{head}` of {}", a.checkpoint.display()))?;
    println!(
        "features: {} training (mirrored copies included: {}), {} validation, in {:.1} s",
        r.train_features, opts.flip, r.val_samples, r.feature_seconds
    );
    for e in &r.history {
        let mark = if e.epoch == r.best_epoch {
            " *best"
        } else {
            ""
        };
        println!(
            "epoch {}/{}: train loss {:.4} | val loss {:.4}{mark}",
            e.epoch, opts.epochs, e.train_loss, e.val_loss
        );
    }
    println!("head training: {:.1} s", r.train_seconds);
    if r.best_epoch == 0 {
        println!("no epoch beat the checkpoint's own head on validation loss: kept it");
    }
    if let Some((report, loss)) = &r.before {
        println!("before: val loss {loss:.4} | {}", head_line(report, &head));
    }
    let (report, loss) = &r.after;
    println!("after:  val loss {loss:.4} | {}", head_line(report, &head));
    println!("wrote {} (body and other heads unchanged)", out.display());
    if r.contract.test_time_flip {
        println!(
            "its source runs with test-time flip: export it with --test-time-flip to keep that"
        );
    }
    Ok(ExitCode::SUCCESS)
}
