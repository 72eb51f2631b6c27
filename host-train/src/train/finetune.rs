//! Fine-tuning one head on a frozen body (the Tesla HydraNet idea): the body's features are
//! computed once, then only that head trains, fast on CPU.
//!
//! The new checkpoint is the old one's tensors with only the head's replaced (or added), so
//! the body and every other head stay bit-identical — a model already validated for the
//! other tasks does not move while one task is improved.
use std::{collections::HashMap, path::Path, time::Instant};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use models::{
    dataset::{is_labelled, DataSource},
    decode::decode,
    metrics::Evaluator,
    metrics::Report,
    Contract, HeadSpec,
};

use super::{
    checkpoint::{self, Checkpoint},
    evaluate::outputs_to_rows,
    loss::head_loss,
    optim::{Optimizer, OptimizerKind},
    schedule::{lr_at, ScheduleKind},
    setup::{prepare_data, Need, PreparedData},
    TrainConfig,
};
use crate::{
    data::{batch::epoch_order, AugmentConfig, Batcher, ImageCache},
    kernels::Kernels,
    names::{head_prefix, is_loss_var, is_optim_state},
    net::{init, BackboneConfig, HydraNet},
    Error, Result,
};

/// What to fine-tune and how.
#[derive(Debug, Clone)]
pub struct FinetuneOptions {
    /// The head to train (an existing head, or the one `add` creates).
    pub head: String,
    /// A new head to add and train (its targets must be derivable from the data).
    pub add: Option<HeadSpec>,
    /// Images labelled for the head (a UTKFace-named folder or CSV manifests; they need
    /// not label the other heads); the split is the checkpoint's own (same
    /// `val_fraction`, same file-name hash).
    pub data: DataSource,
    /// Passes over the cached features.
    pub epochs: usize,
    /// Batch size over features.
    pub batch: usize,
    /// Peak learning rate (cosine decay, no warm-up).
    pub lr: f64,
    /// AdamW weight decay on the head's matrices.
    pub weight_decay: f64,
    /// Seed of the new head's initialisation and of the batch order.
    pub seed: u64,
    /// Also cache the features of each training image mirrored (a free augmentation).
    pub flip: bool,
    /// Start an existing head from fresh weights instead of its trained ones.
    pub reinit: bool,
    /// With `add`: the checkpoint already has a head of that name and `add` takes its
    /// place (same output position, possibly another kind: an L1 age head becomes a
    /// distribution one), from fresh weights; the old head's weights are dropped.
    pub replace: bool,
}

/// One epoch of head training.
#[derive(Debug, Clone, PartialEq)]
pub struct FinetuneEpoch {
    /// 1-based.
    pub epoch: usize,
    /// Mean training loss of the head.
    pub train_loss: f64,
    /// Validation loss of the head.
    pub val_loss: f64,
}

/// What a fine-tuning run did.
pub struct FinetuneResult {
    /// The contract written (with the added head, if any).
    pub contract: Contract,
    /// Index of the trained head.
    pub head_index: usize,
    /// Validation report and head loss before training (`None` for a new head).
    pub before: Option<(Report, f64)>,
    /// Validation report and head loss of the saved weights.
    pub after: (Report, f64),
    /// Per-epoch losses.
    pub history: Vec<FinetuneEpoch>,
    /// Epoch whose weights were kept (lowest validation loss; 0: the checkpoint's own head).
    pub best_epoch: usize,
    /// Training samples (features) per epoch labelled for the head, mirrored copies included.
    pub train_features: usize,
    /// Validation samples labelled for the head.
    pub val_samples: usize,
    /// Seconds spent computing body features.
    pub feature_seconds: f64,
    /// Seconds spent training the head.
    pub train_seconds: f64,
}

/// Cached body features of a split and the head's targets.
struct Features {
    /// Features of the samples labelled for the trained head.
    x: Tensor,
    /// Their training-form targets (normalised regression, class index).
    y: Tensor,
    /// Features of every sample, for the metrics of every head.
    all: Tensor,
    /// Raw targets of every head, for metrics (unlabelled ones count nowhere).
    raw: Vec<Vec<f32>>,
}

fn features(
    net: &HydraNet,
    cache: &ImageCache,
    heads: &[HeadSpec],
    head: usize,
    flip: bool,
    device: &Device,
) -> Result<Features> {
    let batcher = Batcher::new(cache, heads, AugmentConfig::NONE, 0);
    let (mut xs, mut ys, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    let indices: Vec<usize> = (0..cache.len()).collect();
    for chunk in indices.chunks(256) {
        let b = batcher.batch(chunk, 0, false, device)?;
        // Detached: the body is frozen, and a graph kept per batch would hold every
        // activation of the whole set in memory.
        xs.push(net.features(&b.input, false)?.detach());
        ys.push(b.targets[head].clone());
        raw.extend(b.raw_targets.iter().cloned());
        if flip {
            xs.push(net.features(&b.input.flip(&[3])?, false)?.detach());
            ys.push(b.targets[head].clone());
            raw.extend(b.raw_targets);
        }
    }
    let all = Tensor::cat(&xs, 0)?;
    let y = Tensor::cat(&ys, 0)?;
    let labelled: Vec<u32> = (0..raw.len() as u32)
        .filter(|&i| is_labelled(raw[i as usize][head]))
        .collect();
    let keep = Tensor::from_vec(labelled.clone(), labelled.len(), device)?;
    Ok(Features {
        x: all.index_select(&keep, 0)?,
        y: y.index_select(&keep, 0)?,
        all,
        raw,
    })
}

/// Scores the network's heads on cached validation features: the report over every head
/// and the trained head's loss.
fn validate(
    net: &HydraNet,
    heads: &[HeadSpec],
    head: usize,
    val: &Features,
) -> Result<(Report, f64)> {
    let loss = head_loss(&heads[head], &net.head_forward(head, &val.x)?, &val.y)?
        .to_scalar::<f32>()? as f64;
    let outs = net.heads_forward(&val.all)?;
    let rows = outputs_to_rows(&outs)?;
    let mut ev = Evaluator::new(heads);
    for (i, t) in val.raw.iter().enumerate() {
        let r: Vec<&[f32]> = rows.iter().map(|r| r[i].as_slice()).collect();
        ev.add(t, &decode(heads, &r)?);
    }
    Ok((ev.report(), loss))
}

/// A head's tensors by name.
type HeadWeights = Vec<(String, Tensor)>;

fn snapshot(varmap: &VarMap, prefix: &str) -> Result<HeadWeights> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::Config("var map lock poisoned".into()))?;
    let mut v = Vec::new();
    for (n, var) in data.iter().filter(|(n, _)| n.starts_with(prefix)) {
        v.push((n.clone(), var.as_tensor().copy()?));
    }
    Ok(v)
}

/// A checkpoint, or an exported fp32 ONNX file read back as one (its folded norms as
/// identity norms, which fold back to the same bits: a head can be added to a shipped
/// model whose checkpoint is gone).
pub fn load_model(path: &Path, device: &Device) -> Result<Checkpoint> {
    if path.extension().is_none_or(|e| e != "onnx") {
        return checkpoint::load(path, device);
    }
    let im = crate::export::import::load_onnx(path, device)?;
    if im.contract.quantization.is_some() {
        return Err(Error::Checkpoint {
            path: path.into(),
            reason: "is quantized; fine-tune the fp32 file (then export int8 again)".into(),
        });
    }
    let mut contract = im.contract;
    contract
        .training
        .insert("finetuned_from".into(), crate::files::portable_name(path));
    Ok(Checkpoint {
        config: TrainConfig::for_model(&contract),
        contract,
        state: Default::default(),
        tensors: im.tensors,
    })
}

/// Fine-tunes one head of the checkpoint (or fp32 ONNX file) at `checkpoint` and writes
/// the result to `out`, a checkpoint.
pub fn finetune(
    checkpoint: &Path,
    out: &Path,
    opts: &FinetuneOptions,
    device: &Device,
) -> Result<FinetuneResult> {
    if opts.epochs == 0 || opts.batch < 2 {
        return Err(Error::Config("need --epochs >= 1 and --batch >= 2".into()));
    }
    let Checkpoint {
        mut contract,
        config: old_config,
        state,
        tensors,
    } = load_model(checkpoint, device)?;
    let head = match &opts.add {
        Some(spec) => match contract.head_index(&spec.name) {
            Some(i) if opts.replace => {
                contract.heads[i] = spec.clone();
                contract.validate()?;
                i
            }
            Some(_) => {
                return Err(Error::Config(format!(
                    "{} already has a head `{}`; fine-tune it without --add-head, or \
                     replace it with --replace",
                    checkpoint.display(),
                    spec.name
                )))
            }
            None if opts.replace => {
                return Err(Error::Config(format!(
                    "{} has no head `{}` to replace (it has {})",
                    checkpoint.display(),
                    spec.name,
                    contract.head_list()
                )))
            }
            None => {
                contract.heads.push(spec.clone());
                contract.validate()?;
                contract.heads.len() - 1
            }
        },
        None if opts.replace => {
            return Err(Error::Config(
                "replacing a head needs the new head's declaration (--add-head)".into(),
            ))
        }
        None => contract.head_index(&opts.head).ok_or_else(|| {
            Error::Config(format!(
                "{} has no head `{}` (it has {}); add one with --add-head",
                checkpoint.display(),
                opts.head,
                contract.head_list()
            ))
        })?,
    };
    let heads = contract.heads.clone();
    let prefix = head_prefix(&heads[head].name);
    let fresh_head = opts.add.is_some() || opts.reinit;

    let mut config = TrainConfig {
        limit: None,
        batch: opts.batch.min(old_config.batch),
        ..old_config.clone()
    };
    config.set_source(&opts.data);
    let data: PreparedData = prepare_data(&config, &contract, Need::Head(head))?;
    if data.val.is_empty() {
        return Err(Error::Config(format!(
            "{}: the validation split is empty (val_fraction {})",
            opts.data.describe(),
            config.val_fraction
        )));
    }

    let backbone: BackboneConfig = contract.architecture.parse().map_err(Error::Config)?;
    let varmap = VarMap::new();
    let net = HydraNet::new(
        &backbone,
        &heads,
        Kernels::Fast,
        VarBuilder::from_varmap(&varmap, DType::F32, device),
    )?;
    let tensors = if opts.replace {
        // The replaced head's tensors may have other shapes: they are not loaded, and not
        // written back (the output drops every tensor under the head's prefix).
        tensors
            .into_iter()
            .filter(|(n, _)| !n.starts_with(&prefix))
            .collect()
    } else {
        tensors
    };
    checkpoint::apply_weights(&varmap, &tensors, checkpoint, |n| {
        is_loss_var(n) || (opts.add.is_some() && n.starts_with(&prefix))
    })?;
    if fresh_head {
        init::reinit_where(&varmap, opts.seed, |n| n.starts_with(&prefix))?;
    }

    let t0 = Instant::now();
    let train = features(&net, &data.train, &heads, head, opts.flip, device)?;
    let val = features(&net, &data.val, &heads, head, false, device)?;
    let feature_seconds = t0.elapsed().as_secs_f64();
    if val.x.dim(0)? == 0 {
        return Err(Error::Config(format!(
            "{}: no validation image is labelled for `{}` (column `{}`), so the best epoch \
             cannot be chosen",
            opts.data.describe(),
            heads[head].name,
            heads[head].column()
        )));
    }

    let before = match opts.add {
        Some(_) => None,
        None => Some(validate(&net, &heads, head, &val)?),
    };

    let params: Vec<_> = super::optim::trainable(&varmap)
        .into_iter()
        .filter(|(n, _)| n.starts_with(&prefix))
        .collect();
    let mut optim = Optimizer::new(OptimizerKind::Adamw, params, opts.weight_decay, 0.9)?
        .fused(device.is_cpu());
    let n = train.x.dim(0)?;
    let steps_per_epoch = n.div_ceil(opts.batch) as u64;
    let total = steps_per_epoch * opts.epochs as u64;
    let t1 = Instant::now();
    let mut history = Vec::new();
    // (validation loss, epoch, the head's weights) of the best epoch so far.
    // An existing head starts as the candidate to beat (epoch 0): fine-tuning that only
    // overfits the cached features gives the head back unchanged.
    let mut best: Option<(f64, usize, HeadWeights)> = match &before {
        Some((_, loss)) if !opts.reinit => Some((*loss, 0, snapshot(&varmap, &prefix)?)),
        _ => None,
    };
    for epoch in 0..opts.epochs {
        let order = epoch_order(n, opts.seed, epoch as u64);
        let mut sum = 0.0f64;
        for chunk in order.chunks(opts.batch) {
            let idx: Vec<u32> = chunk.iter().map(|&i| i as u32).collect();
            let idx = Tensor::from_vec(idx, chunk.len(), device)?;
            let x = train.x.index_select(&idx, 0)?;
            let y = train.y.index_select(&idx, 0)?;
            let loss = head_loss(&heads[head], &net.head_forward(head, &x)?, &y)?;
            sum += loss.to_scalar::<f32>()? as f64 * chunk.len() as f64;
            let lr = lr_at(ScheduleKind::Cosine, opts.lr, optim.steps, total, 0);
            optim.step(&loss.backward()?, lr)?;
        }
        let (_, val_loss) = validate(&net, &heads, head, &val)?;
        let train_loss = sum / n as f64;
        tracing::info!(
            "finetune {} epoch {}/{}: train loss {train_loss:.4}, val loss {val_loss:.4}",
            heads[head].name,
            epoch + 1,
            opts.epochs
        );
        history.push(FinetuneEpoch {
            epoch: epoch + 1,
            train_loss,
            val_loss,
        });
        if best.as_ref().is_none_or(|(l, _, _)| val_loss < *l) {
            best = Some((val_loss, epoch + 1, snapshot(&varmap, &prefix)?));
        }
    }
    let train_seconds = t1.elapsed().as_secs_f64();
    let (_, best_epoch, best_weights) = best.ok_or_else(|| Error::Config("no epoch ran".into()))?;
    {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| Error::Config("var map lock poisoned".into()))?;
        for (name, t) in &best_weights {
            if let Some(var) = data.get(name) {
                var.set(t)?;
            }
        }
    }
    let after = validate(&net, &heads, head, &val)?;

    contract.training.insert(
        format!("finetune.{}", heads[head].name),
        format!(
            "{} head on a frozen body: {} epochs over {} cached features{}, lr {}, best epoch {best_epoch}",
            match (opts.replace, fresh_head) {
                (true, _) => "replaced",
                (false, true) => "new",
                (false, false) => "existing",
            },
            opts.epochs,
            n,
            if opts.flip { " (mirrored copies included)" } else { "" },
            opts.lr
        ),
    );
    // Everything but the head (and the optimiser state, which belongs to the old run)
    // is carried over as loaded: bit-identical by construction.
    let mut out_tensors: HashMap<String, Tensor> = tensors
        .into_iter()
        .filter(|(n, _)| !is_optim_state(n) && !n.starts_with(&prefix))
        .collect();
    out_tensors.extend(best_weights);
    checkpoint::save_tensors(out, &contract, &old_config, &state, out_tensors)?;
    Ok(FinetuneResult {
        contract,
        head_index: head,
        before,
        after,
        history,
        best_epoch,
        train_features: n,
        val_samples: val.x.dim(0)?,
        feature_seconds,
        train_seconds,
    })
}
