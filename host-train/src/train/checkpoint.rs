//! Checkpoints: one safetensors file holding the weights (with BatchNorm statistics), the
//! optimiser state, and in its metadata the contract, the run config and the loop state.
//!
//! One file, written to a temporary name and renamed into place, so a crash or Ctrl-C
//! mid-write never leaves a half checkpoint where a good one was.
use std::{collections::HashMap, path::Path};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use models::Contract;
use serde::{Deserialize, Serialize};

use super::TrainConfig;
use crate::{files::write_atomic, Error, Result};

/// Value of the `format` metadata entry.
pub const FORMAT: &str = "hydranet-checkpoint/1";

/// Where the loop is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs completed.
    pub epoch: usize,
    /// Steps completed in the current (unfinished) epoch; 0 at an epoch boundary.
    pub step_in_epoch: usize,
    /// Optimiser steps taken in all.
    pub global_step: u64,
    /// Best validation loss so far.
    pub best_val_loss: Option<f64>,
    /// Epoch (1-based) of the best validation loss.
    pub best_epoch: Option<usize>,
}

/// A loaded checkpoint.
pub struct Checkpoint {
    /// The model's contract.
    pub contract: Contract,
    /// The run's configuration.
    pub config: TrainConfig,
    /// Loop state at save time.
    pub state: TrainState,
    /// Every tensor: model weights and `optim.*` state.
    pub tensors: HashMap<String, Tensor>,
}

fn meta_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v)
        .map_err(|e| Error::Config(format!("cannot serialise checkpoint metadata: {e}")))
}

/// Saves model variables (all of `varmap`) and optimiser state to each of `paths` (the
/// checkpoint is serialised once, however many files receive it).
pub fn save(
    paths: &[&Path],
    contract: &Contract,
    config: &TrainConfig,
    state: &TrainState,
    varmap: &VarMap,
    optim_state: &[(String, Tensor)],
) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| Error::Config("var map lock poisoned".into()))?;
        data.iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect()
    };
    tensors.extend(optim_state.iter().cloned());
    save_tensors_to(paths, contract, config, state, tensors)
}

/// Saves a checkpoint made of exactly `tensors` (e.g. another checkpoint's, edited).
pub fn save_tensors(
    path: &Path,
    contract: &Contract,
    config: &TrainConfig,
    state: &TrainState,
    tensors: impl IntoIterator<Item = (String, Tensor)>,
) -> Result<()> {
    save_tensors_to(&[path], contract, config, state, tensors)
}

fn save_tensors_to(
    paths: &[&Path],
    contract: &Contract,
    config: &TrainConfig,
    state: &TrainState,
    tensors: impl IntoIterator<Item = (String, Tensor)>,
) -> Result<()> {
    // Files are device-independent: every tensor is copied to the host first (a no-op on
    // CPU), so a GPU run writes what a CPU run would, and a failed copy is an error here
    // rather than a panic inside the serialiser.
    let mut tensors = tensors
        .into_iter()
        .map(|(n, t)| Ok((n, t.to_device(&Device::Cpu)?)))
        .collect::<Result<Vec<(String, Tensor)>>>()?;
    // Sorted names: the same tensors always serialise to the same bytes.
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("contract".to_string(), meta_json(contract)?);
    meta.insert("config".to_string(), meta_json(config)?);
    meta.insert("state".to_string(), meta_json(state)?);
    let bytes = safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(meta))
        .map_err(|e| Error::Checkpoint {
            path: paths.first().map(|p| p.to_path_buf()).unwrap_or_default(),
            reason: e.to_string(),
        })?;
    paths.iter().try_for_each(|p| write_atomic(p, &bytes))
}

/// Loads a checkpoint with every tensor created on `device` (whatever device wrote it: the
/// file holds host copies); any defect is an error naming the file.
pub fn load(path: &Path, device: &Device) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })?;
    let bad = |reason: String| Error::Checkpoint {
        path: path.into(),
        reason,
    };
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a safetensors file ({e})")))?;
    let meta = header.metadata().clone().unwrap_or_default();
    match meta.get("format").map(String::as_str) {
        Some(FORMAT) => {}
        Some(other) => return Err(bad(format!("format `{other}`, expected `{FORMAT}`"))),
        None => {
            return Err(bad(
                "no HydraNet checkpoint metadata (a plain safetensors file?)".into(),
            ))
        }
    }
    fn field<T: serde::de::DeserializeOwned>(
        meta: &HashMap<String, String>,
        key: &str,
    ) -> std::result::Result<T, String> {
        let raw = meta
            .get(key)
            .ok_or_else(|| format!("metadata has no `{key}`"))?;
        serde_json::from_str(raw).map_err(|e| format!("metadata `{key}`: {e}"))
    }
    let contract: Contract = field(&meta, "contract").map_err(bad)?;
    contract.validate()?;
    let config = field(&meta, "config").map_err(bad)?;
    let state = field(&meta, "state").map_err(bad)?;
    let tensors =
        candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| bad(e.to_string()))?;
    Ok(Checkpoint {
        contract,
        config,
        state,
        tensors,
    })
}

/// Copies weights from `tensors` into every variable of `varmap` (names and shapes must
/// match). Variables listed in `optional` may be absent.
pub fn apply_weights(
    varmap: &VarMap,
    tensors: &HashMap<String, Tensor>,
    source: &Path,
    optional: impl Fn(&str) -> bool,
) -> Result<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::Config("var map lock poisoned".into()))?;
    let bad = |reason: String| Error::Checkpoint {
        path: source.into(),
        reason,
    };
    for (name, var) in data.iter() {
        match tensors.get(name) {
            Some(t) if t.dims() == var.dims() => {
                var.set(&t.to_device(var.device())?.to_dtype(var.dtype())?)?
            }
            Some(t) => {
                return Err(bad(format!(
                    "`{name}` has shape {:?}, the model expects {:?}",
                    t.dims(),
                    var.dims()
                )))
            }
            None if optional(name) => {}
            None => return Err(bad(format!("no tensor `{name}`"))),
        }
    }
    Ok(())
}
