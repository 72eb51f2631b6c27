//! Starting a body from torchvision weights (`--init-from FILE.safetensors`).
//!
//! The body's variables already carry torchvision's names (`conv1.weight`,
//! `layer1.0.bn1.running_mean`, `layer2.0.downsample.0.weight`, ...), so a torchvision
//! ResNet state dict saved as safetensors maps one to one. What torchvision has and the
//! body does not — the ImageNet classifier `fc.*` and BatchNorm's `num_batches_tracked`
//! counters — is ignored; any other difference is an error naming the tensor, because a
//! half-loaded body trains worse than a fresh one and says nothing.
use std::{collections::BTreeSet, path::Path};

use candle_core::{DType, Device};
use candle_nn::VarMap;

use crate::{
    names::{is_body_var, is_head_var, is_torchvision_extra},
    Error, Result,
};

/// What loading a pretrained body did.
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainedReport {
    /// Body tensors set from the file.
    pub loaded: usize,
    /// Head tensors set from the file: a HydraNet checkpoint (`heads.*`) warm-starts its
    /// heads too, so a second training cycle continues from a trained model.
    pub heads_loaded: usize,
    /// File tensors the body has no use for by design (`fc.*`, `*.num_batches_tracked`).
    pub ignored: Vec<String>,
    /// Other file tensors the body does not have (e.g. `layer1.1.*` when loading a
    /// ResNet18 file into a ResNet10 body).
    pub unused: Vec<String>,
}

/// Sets every body variable of `varmap` from the safetensors file at `path`.
///
/// Every body variable must be in the file with the same shape (any float dtype; converted
/// to the variable's). Heads the file also has (a HydraNet checkpoint) are loaded when
/// their shapes match; others keep their fresh initialisation.
pub fn load_torchvision_body(varmap: &VarMap, path: &Path) -> Result<PretrainedReport> {
    let bad = |reason: String| Error::Checkpoint {
        path: path.into(),
        reason,
    };
    let tensors = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| {
        bad(format!(
            "cannot read as safetensors ({e}); convert a torchvision state dict with \
             safetensors.torch.save_file(model.state_dict(), FILE)"
        ))
    })?;
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::Config("var map lock poisoned".into()))?;
    let mut loaded = 0;
    let mut missing = Vec::new();
    let mut body_names = BTreeSet::new();
    let mut heads_loaded = 0;
    let mut head_names: Vec<&String> = data.keys().filter(|n| is_head_var(n)).collect();
    head_names.sort();
    for name in head_names {
        let var = &data[name];
        let Some(t) = tensors.get(name) else { continue };
        if t.dims() != var.dims() {
            return Err(bad(format!(
                "`{name}` has shape {:?}, this model's head expects {:?} (a different head \
                 spec than the checkpoint's)",
                t.dims(),
                var.dims()
            )));
        }
        var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
        body_names.insert(name.as_str());
        heads_loaded += 1;
    }
    let mut names: Vec<&String> = data.keys().filter(|n| is_body_var(n)).collect();
    names.sort();
    for name in names {
        body_names.insert(name.as_str());
        let var = &data[name];
        let Some(t) = tensors.get(name) else {
            missing.push(name.clone());
            continue;
        };
        if t.dims() != var.dims() {
            return Err(bad(format!(
                "`{name}` has shape {:?}, this body expects {:?} (a different depth or \
                 width; torchvision's resnet18 needs `--backbone resnet18`)",
                t.dims(),
                var.dims()
            )));
        }
        if !matches!(
            t.dtype(),
            DType::F32 | DType::F16 | DType::BF16 | DType::F64
        ) {
            return Err(bad(format!(
                "`{name}` is {:?}, expected a float tensor",
                t.dtype()
            )));
        }
        var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
        loaded += 1;
    }
    if !missing.is_empty() {
        let shown: Vec<_> = missing.iter().take(8).map(String::as_str).collect();
        return Err(bad(format!(
            "{} body tensor(s) missing, e.g. {} (is it a torchvision ResNet state dict?)",
            missing.len(),
            shown.join(", ")
        )));
    }
    let mut ignored = Vec::new();
    let mut unused = Vec::new();
    let mut extra: Vec<&String> = tensors
        .keys()
        .filter(|n| !body_names.contains(n.as_str()))
        .collect();
    extra.sort();
    for name in extra {
        if is_torchvision_extra(name) {
            ignored.push(name.clone());
        } else {
            unused.push(name.clone());
        }
    }
    Ok(PretrainedReport {
        loaded,
        heads_loaded,
        ignored,
        unused,
    })
}
