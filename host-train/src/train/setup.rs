//! From a configuration to a ready [`Trainer`]: read the data, split it, cache it, build the
//! network, loss and optimiser, and restore a checkpoint when resuming.
use std::{
    path::Path,
    sync::{atomic::AtomicBool, Arc},
};

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use models::{
    dataset::{label_counts, split, stable_hash, Rejected, Sample},
    Contract,
};

use super::{
    checkpoint::{self, TrainState},
    loss::LossCombiner,
    optim::{trainable, Optimizer},
    trainer::Trainer,
    TrainConfig,
};
use crate::{
    data::ImageCache,
    files::portable_name,
    kernels::Kernels,
    names::is_loss_var,
    net::{BackboneConfig, HydraNet},
    Error, Result,
};

/// Which heads a run needs labels for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Training: every head (a head with no labelled training image is an error).
    AllHeads,
    /// Fine-tuning one head: that one.
    Head(usize),
    /// No labels, only images (recomputing BatchNorm statistics).
    ImagesOnly,
}

/// Batches each statistics pass reads when an exported model's folded norms are unfolded
/// for training (`train --init-from`): 16 of 64 images measure a channel's mean and
/// variance to well under a percent, at one pass per norm.
const UNFOLD_BATCHES: usize = 16;

/// Decoded training and validation images.
pub struct PreparedData {
    /// Training split.
    pub train: ImageCache,
    /// Validation split.
    pub val: ImageCache,
    /// Names rejected while scanning (malformed, out of range).
    pub rejected: Vec<Rejected>,
}

/// A deterministic subset of `n` samples, spread over the whole set (not the first `n` by
/// name, which would all be centenarians in UTKFace's sort order).
pub fn subset(samples: &[Sample], n: usize) -> Vec<Sample> {
    let mut v = samples.to_vec();
    v.sort_by_key(|s| stable_hash(format!("subset:{}", s.file_name()).as_bytes()));
    v.truncate(n);
    v.sort_by(|a, b| a.path.cmp(&b.path));
    v
}

/// Scans, splits and caches the data named by `config`, warning about everything skipped.
/// Fails before any image is decoded when a head in `need` has no labelled training image.
pub fn prepare_data(config: &TrainConfig, contract: &Contract, need: Need) -> Result<PreparedData> {
    let source = config.source();
    let heads = &contract.heads;
    let scan = source.scan(heads)?;
    if let Some(report) = scan.rejection_report() {
        tracing::warn!("{}: {report}", source.describe());
    }
    let samples = match config.limit {
        Some(n) => subset(&scan.samples, n),
        None => scan.samples.clone(),
    };
    let (train, val) = split(&samples, config.val_fraction);
    let needed = |i: usize| match need {
        Need::AllHeads => true,
        Need::Head(h) => i == h,
        Need::ImagesOnly => false,
    };
    scan.require_labels(heads, &train, needed, "training split")?;
    let (tn, vn) = (
        label_counts(&train, heads.len()),
        label_counts(&val, heads.len()),
    );
    for (i, h) in heads.iter().enumerate() {
        if needed(i) && (tn[i] < train.len() || vn[i] < val.len()) {
            tracing::info!(
                "head `{}`: labelled on {} of {} training and {} of {} validation images",
                h.name,
                tn[i],
                train.len(),
                vn[i],
                val.len()
            );
        }
        if needed(i) && vn[i] == 0 && !val.is_empty() {
            tracing::warn!(
                "head `{}` has no labelled validation image: its validation metrics are empty",
                h.name
            );
        }
    }
    let spec = &contract.preprocess;
    let train = ImageCache::load(&train, spec, &config.cache, None)?;
    let val = ImageCache::load(&val, spec, &config.cache, None)?;
    for s in train.skipped.iter().chain(&val.skipped) {
        tracing::warn!(
            "skipped unreadable image {}: {}",
            s.path.display(),
            s.reason
        );
    }
    if train.len() < config.batch {
        return Err(Error::Config(format!(
            "{}: {} usable training images, fewer than one batch of {}",
            source.describe(),
            train.len(),
            config.batch
        )));
    }
    let mut rejected = scan.rejected;
    rejected.extend(train.skipped.iter().chain(&val.skipped).cloned());
    Ok(PreparedData {
        train,
        val,
        rejected,
    })
}

/// The contract a run trains: UTKFace's heads, or the heads file's (the model then takes
/// the file's name: `faces.toml` trains `hydranet-faces`).
pub fn contract_for(config: &TrainConfig, backbone: &BackboneConfig) -> Contract {
    let mut c = Contract::utkface(config.input_size, &backbone.to_string());
    if let Some(heads) = &config.heads {
        c.heads = heads.clone();
        if let Some(stem) = config.heads_file.as_ref().and_then(|f| f.file_stem()) {
            c.model_name = format!("hydranet-{}", stem.to_string_lossy());
        }
    }
    c
}

/// Builds the network, loss and optimiser for `config`, fresh or from `resume`.
pub fn build_trainer<'a>(
    config: TrainConfig,
    mut contract: Contract,
    data: &'a PreparedData,
    resume: Option<&Path>,
    device: Device,
    stop: Arc<AtomicBool>,
) -> Result<Trainer<'a>> {
    if config.batch < 2 {
        return Err(Error::Config(
            "--batch must be at least 2 (BatchNorm needs a batch)".into(),
        ));
    }
    let backbone: BackboneConfig = config.backbone.parse().map_err(Error::Config)?;
    let source = config.source();
    let data_name: Vec<String> = source
        .images
        .iter()
        .chain(&source.manifests)
        .map(|p| portable_name(p))
        .collect();
    contract
        .training
        .insert("data".into(), data_name.join(" + "));
    let counts = label_counts(&data.train.samples, contract.heads.len());
    for (h, n) in contract.heads.iter().zip(counts) {
        if n < data.train.len() {
            contract.training.insert(
                format!("labelled.{}", h.name),
                format!("{n} of {} training images", data.train.len()),
            );
        }
    }
    contract
        .training
        .insert("train_samples".into(), data.train.len().to_string());
    contract
        .training
        .insert("val_samples".into(), data.val.len().to_string());
    contract
        .training
        .insert("val_fraction".into(), config.val_fraction.to_string());
    contract
        .training
        .insert("seed".into(), config.seed.to_string());
    contract
        .training
        .insert("epochs".into(), config.epochs.to_string());
    let (net, varmap) = HydraNet::fresh(
        &backbone,
        &contract.heads,
        config.kernels,
        config.seed,
        &device,
    )?;
    if let (None, Some(file)) = (resume, &config.init_from) {
        let r = crate::net::pretrained::load_torchvision_body(&varmap, file)?;
        tracing::info!(
            "{}: {} body and {} head tensors loaded, {} ignored (fc, counters, optimiser){}",
            file.display(),
            r.loaded,
            r.heads_loaded,
            r.ignored.len(),
            match r.unused.len() {
                0 => String::new(),
                n => format!(", {n} unused by this body"),
            }
        );
        contract
            .training
            .insert("init_from".into(), portable_name(file));
        // A start from an exported file (folded BatchNorm) would be rescaled by the first
        // training step: give its norms their inputs' statistics first.
        let u = super::unfold::unfold_batch_norm(
            &net,
            &varmap,
            &data.train,
            &contract.heads,
            config.batch,
            UNFOLD_BATCHES,
            &device,
        )?;
        if u.norms > 0 {
            tracing::info!(
                "{}: {} folded BatchNorm layers (an exported model's) given their inputs' \
                 statistics over {} training images",
                file.display(),
                u.norms,
                u.images
            );
            contract.training.insert(
                "init_from_unfolded".into(),
                format!(
                    "{} norms, statistics of {} training images",
                    u.norms, u.images
                ),
            );
        }
    }
    let loss = LossCombiner::new(
        config.loss_weighting,
        &config.head_weights,
        &contract.heads,
        VarBuilder::from_varmap(&varmap, DType::F32, &device).pp(crate::names::LOSS),
    )?;
    let mut optim = Optimizer::new(
        config.optimizer,
        trainable(&varmap),
        config.weight_decay,
        config.momentum,
    )?
    .fused(config.kernels == Kernels::Fast);
    let mut state = TrainState::default();
    if let Some(path) = resume {
        let ck = checkpoint::load(path, &device)?;
        if ck.contract.heads != contract.heads || ck.contract.architecture != contract.architecture
        {
            return Err(Error::Checkpoint {
                path: path.into(),
                reason: format!(
                    "it holds a {} with other heads; cannot resume this run",
                    ck.contract.architecture
                ),
            });
        }
        checkpoint::apply_weights(&varmap, &ck.tensors, path, |_| false)?;
        optim.load_state(&ck.tensors, ck.state.global_step)?;
        state = ck.state;
    }
    Ok(Trainer {
        config,
        contract,
        net,
        varmap,
        loss,
        optim,
        device,
        train: &data.train,
        val: &data.val,
        state,
        stop,
        verbose: true,
        max_steps: None,
        log_steps: false,
        keep_epochs: false,
        history: Vec::new(),
    })
}

/// Loads a checkpoint's network for inference (eval, export).
pub fn load_for_inference(
    path: &Path,
    device: &Device,
) -> Result<(HydraNet, VarMap, checkpoint::Checkpoint)> {
    let ck = checkpoint::load(path, device)?;
    let (net, varmap) = inference_net(&ck, path, device)?;
    Ok((net, varmap, ck))
}

/// The network of a loaded (or edited, e.g. averaged) checkpoint, its weights applied;
/// `source` names it in errors.
pub fn inference_net(
    ck: &checkpoint::Checkpoint,
    source: &Path,
    device: &Device,
) -> Result<(HydraNet, VarMap)> {
    let backbone: BackboneConfig =
        ck.contract
            .architecture
            .parse()
            .map_err(|e| Error::Checkpoint {
                path: source.into(),
                reason: e,
            })?;
    let varmap = VarMap::new();
    let net = HydraNet::new(
        &backbone,
        &ck.contract.heads,
        Kernels::Fast,
        VarBuilder::from_varmap(&varmap, DType::F32, device),
    )?;
    checkpoint::apply_weights(&varmap, &ck.tensors, source, is_loss_var)?;
    Ok((net, varmap))
}
