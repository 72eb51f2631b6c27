//! Weight averaging: one network whose weights are the mean of several checkpoints of
//! the same run's trajectory (stochastic weight averaging, Izmailov et al. 2018) or of
//! runs fine-tuned from one start (model soups, Wortsman et al. 2022). The mean lies in a
//! wider part of the loss basin than any single point and costs nothing at inference,
//! unlike an ensemble.
//!
//! BatchNorm statistics do not average: the running mean and variance of a layer depend
//! on every weight before it, so after averaging they are recomputed with forward passes
//! over training images ([`recompute_batch_norm`]), as PyTorch's `swa_utils.update_bn`
//! does.
use std::{collections::HashMap, path::Path};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use models::HeadSpec;

use super::{
    checkpoint::{self, Checkpoint},
    setup::{inference_net, prepare_data, Need},
};
use crate::{
    data::{batch::epoch_order, AugmentConfig, Batcher, ImageCache},
    files::portable_name,
    names::{is_optim_state, is_running_stat},
    net::{HydraNet, BN_MOMENTUM},
    Error, Result,
};

/// The element-wise mean of the model tensors of `paths` (every `f32` tensor but the
/// optimiser's), with the first checkpoint's contract, configuration and loop state.
/// All must hold the same heads, architecture and input size, and the same tensor names
/// and shapes; anything else is an error naming the file.
pub fn average(paths: &[&Path], device: &Device) -> Result<Checkpoint> {
    let (first_path, rest) = paths
        .split_first()
        .ok_or_else(|| Error::Config("nothing to average: no checkpoints given".into()))?;
    let mut first = checkpoint::load(first_path, device)?;
    refuse_folded(first_path, &first)?;
    first.tensors.retain(|n, _| !is_optim_state(n));
    let mut sums: HashMap<String, Tensor> = first
        .tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), t.to_dtype(DType::F64)?)))
        .collect::<Result<_>>()?;
    for path in rest {
        let ck = checkpoint::load(path, device)?;
        refuse_folded(path, &ck)?;
        let bad = |reason: String| Error::Checkpoint {
            path: path.to_path_buf(),
            reason,
        };
        if ck.contract.heads != first.contract.heads
            || ck.contract.architecture != first.contract.architecture
            || ck.contract.preprocess != first.contract.preprocess
        {
            return Err(bad(format!(
                "holds a different model ({} at {}x{}) from {} ({} at {}x{})",
                ck.contract.architecture,
                ck.contract.preprocess.width,
                ck.contract.preprocess.height,
                first_path.display(),
                first.contract.architecture,
                first.contract.preprocess.width,
                first.contract.preprocess.height,
            )));
        }
        let model: Vec<&String> = ck.tensors.keys().filter(|n| !is_optim_state(n)).collect();
        if model.len() != sums.len() {
            return Err(bad(format!(
                "{} model tensors, {} has {}",
                model.len(),
                first_path.display(),
                sums.len()
            )));
        }
        for (name, sum) in sums.iter_mut() {
            let t = ck
                .tensors
                .get(name)
                .ok_or_else(|| bad(format!("no tensor `{name}`")))?;
            if t.dims() != sum.dims() {
                return Err(bad(format!(
                    "`{name}` has shape {:?}, {} has {:?}",
                    t.dims(),
                    first_path.display(),
                    sum.dims()
                )));
            }
            // f64 sums: the mean of many checkpoints does not depend on their order.
            *sum = (&*sum + t.to_dtype(DType::F64)?)?;
        }
    }
    let n = paths.len() as f64;
    first.tensors = sums
        .into_iter()
        .map(|(name, sum)| {
            let dtype = first.tensors[&name].dtype();
            Ok((name, (sum / n)?.to_dtype(dtype)?))
        })
        .collect::<Result<_>>()?;
    Ok(first)
}

/// A checkpoint made from an exported file holds its BatchNorm folded into the
/// convolutions (identity norms): its weights are another parametrisation of the network
/// than a trained checkpoint's, so their mean with others means nothing, and recomputed
/// statistics would change what it computes. Measured: the mean of the shipped model
/// (imported) and a run started from it scored 5.87 years / 75.6 % ethnicity against
/// 5.08 / 85.4 % for the run's own average (docs/experiments.md, row 29).
fn refuse_folded(path: &Path, ck: &Checkpoint) -> Result<()> {
    let folded = super::unfold::identity_norms_of(&ck.tensors)?;
    if folded.is_empty() {
        return Ok(());
    }
    Err(Error::Checkpoint {
        path: path.into(),
        reason: format!(
            "holds {} folded BatchNorm layers (it was made from an exported file, e.g. `{}`): \
             its weights cannot be averaged with trained ones; train from it \
             (`train --init-from` unfolds them) and average that run's checkpoints",
            folded.len(),
            folded[0]
        ),
    })
}

/// Sets every BatchNorm's running statistics of `net` to the mean of its batch statistics
/// over `images` (training-mode forward passes, no augmentation, batches of `batch` in a
/// fixed shuffled order; the last partial batch is left out). The rest of `varmap` is
/// unchanged. Returns the number of images used.
///
/// The network updates a running statistic as `(1 - m) * running + m * batch`; with the
/// running value zeroed before each pass, the value after it is `m * batch` exactly, so
/// the batch statistic is read back without a second code path through the network.
pub fn recompute_batch_norm(
    net: &HydraNet,
    varmap: &VarMap,
    images: &ImageCache,
    heads: &[HeadSpec],
    batch: usize,
    device: &Device,
) -> Result<usize> {
    recompute_batch_norm_on(net, varmap, images, heads, batch, usize::MAX, device)
}

/// [`recompute_batch_norm`] over at most `max_batches` batches (the same first batches of
/// the same fixed order on every call).
pub fn recompute_batch_norm_on(
    net: &HydraNet,
    varmap: &VarMap,
    images: &ImageCache,
    heads: &[HeadSpec],
    batch: usize,
    max_batches: usize,
    device: &Device,
) -> Result<usize> {
    let batch = batch.max(2);
    let batches = (images.len() / batch).min(max_batches);
    if batches == 0 {
        return Err(Error::Config(format!(
            "{} images: fewer than one batch of {batch} to recompute BatchNorm statistics",
            images.len()
        )));
    }
    let stats: Vec<(String, candle_core::Var)> = {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| Error::Config("var map lock poisoned".into()))?;
        data.iter()
            .filter(|(n, _)| is_running_stat(n))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect()
    };
    if stats.is_empty() {
        return Err(Error::Config(
            "the network has no BatchNorm statistics".into(),
        ));
    }
    let mut sums: Vec<Tensor> = stats
        .iter()
        .map(|(_, v)| v.as_tensor().zeros_like())
        .collect::<candle_core::Result<_>>()?;
    let batcher = Batcher::new(images, heads, AugmentConfig::NONE, 0);
    let order = epoch_order(images.len(), 0, 0);
    for chunk in order.chunks_exact(batch).take(batches) {
        for (_, v) in &stats {
            v.set(&v.as_tensor().zeros_like()?)?;
        }
        let b = batcher.batch(chunk, 0, false, device)?;
        net.forward_t(&b.input, true)?;
        for (sum, (_, v)) in sums.iter_mut().zip(&stats) {
            *sum = (&*sum + v.as_tensor())?;
        }
    }
    for (sum, (_, v)) in sums.iter().zip(&stats) {
        v.set(&(sum / (BN_MOMENTUM * batches as f64))?)?;
    }
    Ok(batches * batch)
}

/// What [`average_checkpoints`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct AverageSummary {
    /// Checkpoints averaged.
    pub sources: usize,
    /// Training images whose batch statistics replaced the averaged BatchNorm statistics
    /// (`None`: the statistics are the plain mean of the checkpoints').
    pub batch_norm_images: Option<usize>,
}

/// Averages `paths` ([`average`]), recomputes the BatchNorm statistics on the training
/// split of `bn_data` (the first checkpoint's run data when `None`; its validation split
/// is never used) unless `keep_batch_norm`, and saves the result to `out` as a checkpoint
/// without optimiser state. Its contract records the sources, so an exported model says
/// what it was made from.
pub fn average_checkpoints(
    paths: &[&Path],
    out: &Path,
    bn_data: Option<&Path>,
    keep_batch_norm: bool,
    batch: usize,
    device: &Device,
) -> Result<AverageSummary> {
    let mut ck = average(paths, device)?;
    let first = paths.first().copied().unwrap_or(Path::new(""));
    let (net, varmap) = inference_net(&ck, first, device)?;
    let names: Vec<String> = paths.iter().map(|p| portable_name(p)).collect();
    ck.contract
        .training
        .insert("averaged_from".into(), names.join(", "));
    let batch_norm_images = if keep_batch_norm {
        ck.contract.training.insert(
            "batch_norm".into(),
            "mean of the averaged checkpoints".into(),
        );
        None
    } else {
        let mut config = ck.config.clone();
        if let Some(d) = bn_data {
            config.set_source(&models::dataset::DataSource::from_path(d));
        } else if config.data.as_os_str().is_empty() && config.manifests.is_empty() {
            // E.g. a checkpoint made from an exported file: it records no run data.
            return Err(Error::Checkpoint {
                path: first.into(),
                reason: "names no training data to recompute the BatchNorm statistics on; \
                         give the images with --bn-data, or keep the averaged statistics \
                         with --keep-batch-norm"
                    .into(),
            });
        }
        let data = prepare_data(&config, &ck.contract, Need::ImagesOnly)?;
        let n = recompute_batch_norm(
            &net,
            &varmap,
            &data.train,
            &ck.contract.heads,
            batch,
            device,
        )?;
        ck.contract.training.insert(
            "batch_norm".into(),
            format!(
                "recomputed on {n} training images of {}",
                portable_name(&config.data)
            ),
        );
        Some(n)
    };
    checkpoint::save(&[out], &ck.contract, &ck.config, &ck.state, &varmap, &[])?;
    Ok(AverageSummary {
        sources: paths.len(),
        batch_norm_images,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_statistics_are_recognised_by_name() {
        assert!(is_running_stat("layer1.0.bn1.running_mean"));
        assert!(is_running_stat("bn1.running_var"));
        assert!(!is_running_stat("bn1.weight"));
        assert!(!is_running_stat("heads.age.0.bias"));
    }
}
