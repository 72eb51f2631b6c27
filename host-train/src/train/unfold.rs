//! Training again from an exported model.
//!
//! An exported file has its BatchNorm folded into the convolutions; imported
//! (`export::import`), each norm comes back as an identity norm (mean 0, variance
//! `1 - eps`, scale 1, shift = the folded bias). That is exact for inference and wrong for
//! training: in training mode a norm divides by its batch's statistics, so the first step
//! rescales every channel of the folded network to unit variance. A constant-lr branch
//! started that way from the shipped model had a first-epoch training loss of 4.78; the
//! same branch unfolded, 3.54 (docs/experiments.md, rows 29-30).
//!
//! [`unfold_batch_norm`] gives each identity norm the statistics its input really has
//! (mean `μ`, variance `σ²` over training images) with scale `sqrt(σ² + eps)` and shift
//! `bias + μ`: evaluation mode then computes exactly what the folded network did, and
//! training mode, which normalises by the batch's own `μ_B, σ_B`, the same up to the
//! batch's sampling noise.
use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use models::HeadSpec;

use super::average::recompute_batch_norm_on;
use crate::{data::ImageCache, net::HydraNet, net::BN_EPS, Error, Result};

/// What [`unfold_batch_norm`] changed.
#[derive(Debug, Clone, PartialEq)]
pub struct UnfoldReport {
    /// Identity norms given their input's statistics (0: the network had none).
    pub norms: usize,
    /// Training images each statistics pass read.
    pub images: usize,
}

/// The prefixes (`layer1.0.bn1`) of the identity norms of `varmap` (running mean 0,
/// running variance `1 - eps`, scale 1: what the import of a folded file writes), in
/// forward order. Names sort in forward order for the ResNet bodies (`bn1` <
/// `layer1.0.bn1` < `layer1.0.bn2` < `layer1.0.downsample.1` < `layer2...`; a block's
/// downsample norm depends on the block's input only).
pub fn identity_norms(varmap: &VarMap) -> Result<Vec<String>> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::Config("var map lock poisoned".into()))?;
    let names: Vec<&String> = data.keys().collect();
    identity_norms_in(&names, |name| data.get(name).map(|v| v.as_tensor().clone()))
}

/// [`identity_norms`] of a checkpoint's tensors.
pub fn identity_norms_of(tensors: &HashMap<String, Tensor>) -> Result<Vec<String>> {
    let names: Vec<&String> = tensors.keys().collect();
    identity_norms_in(&names, |name| tensors.get(name).cloned())
}

fn identity_norms_in(
    names: &[&String],
    get: impl Fn(&str) -> Option<Tensor>,
) -> Result<Vec<String>> {
    let all = |name: &str, value: f32| -> Result<bool> {
        let Some(t) = get(name) else {
            return Ok(false);
        };
        let xs = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        Ok(xs.iter().all(|x| (x - value).abs() <= 1e-7))
    };
    let mut prefixes: Vec<&str> = names
        .iter()
        .filter_map(|n| n.strip_suffix(".running_mean"))
        .collect();
    prefixes.sort();
    let mut out = Vec::new();
    for p in prefixes {
        if all(&format!("{p}.running_mean"), 0.0)?
            && all(&format!("{p}.running_var"), (1.0 - BN_EPS) as f32)?
            && all(&format!("{p}.weight"), 1.0)?
        {
            out.push(p.to_string());
        }
    }
    Ok(out)
}

/// Re-expresses every identity norm of `net` (see the module) with the statistics of its
/// input over the first `max_batches` batches of `images`: one training-mode pass per
/// norm, in forward order, each with the norms before it already unfolded, so that each
/// measures the input the folded network gives it. Other norms and every other weight are
/// left as they are.
pub fn unfold_batch_norm(
    net: &HydraNet,
    varmap: &VarMap,
    images: &ImageCache,
    heads: &[HeadSpec],
    batch: usize,
    max_batches: usize,
    device: &Device,
) -> Result<UnfoldReport> {
    let norms = identity_norms(varmap)?;
    if norms.is_empty() {
        return Ok(UnfoldReport {
            norms: 0,
            images: 0,
        });
    }
    let vars = |prefix: &str| -> Result<[candle_core::Var; 4]> {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| Error::Config("var map lock poisoned".into()))?;
        let get = |s: &str| {
            data.get(&format!("{prefix}.{s}"))
                .cloned()
                .ok_or_else(|| Error::Config(format!("no tensor `{prefix}.{s}`")))
        };
        Ok([
            get("running_mean")?,
            get("running_var")?,
            get("weight")?,
            get("bias")?,
        ])
    };
    // Every other norm keeps its statistics: the passes below overwrite all of them.
    let kept: Vec<(candle_core::Var, Tensor)> = {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| Error::Config("var map lock poisoned".into()))?;
        data.iter()
            .filter(|(n, _)| crate::names::is_running_stat(n))
            .filter(|(n, _)| !norms.iter().any(|p| n.starts_with(&format!("{p}."))))
            .map(|(_, v)| Ok((v.clone(), v.as_tensor().copy()?)))
            .collect::<Result<_>>()?
    };
    let mut measured = Vec::with_capacity(norms.len());
    let mut used = 0;
    for prefix in &norms {
        used = recompute_batch_norm_on(net, varmap, images, heads, batch, max_batches, device)?;
        let [mean, var, weight, bias] = vars(prefix)?;
        let (mu, sigma2) = (mean.as_tensor().copy()?, var.as_tensor().copy()?);
        weight.set(&(&sigma2 + BN_EPS)?.sqrt()?)?;
        bias.set(&(bias.as_tensor() + &mu)?)?;
        measured.push((mean, var, mu, sigma2));
    }
    for (mean, var, mu, sigma2) in measured {
        mean.set(&mu)?;
        var.set(&sigma2)?;
    }
    for (v, t) in kept {
        v.set(&t)?;
    }
    Ok(UnfoldReport {
        norms: norms.len(),
        images: used,
    })
}
