//! Shared by the parity tests.
#![allow(dead_code)]
use std::collections::BTreeMap;

use candle_core::{Device, Tensor};
use host_train::net::HydraNet;
use models::Contract;

/// Candle's raw outputs for one preprocessed image: one vector per head.
pub fn candle_raw(net: &HydraNet, contract: &Contract, input: &[f32]) -> Vec<Vec<f32>> {
    let x = Tensor::from_vec(
        input.to_vec(),
        contract.preprocess.input_shape(1).to_vec(),
        &Device::Cpu,
    )
    .unwrap();
    net.forward_t(&x, false)
        .unwrap()
        .iter()
        .map(|o| o.to_vec2::<f32>().unwrap().remove(0))
        .collect()
}

/// tract's raw outputs for one preprocessed image (an engine of batch 1): one vector per
/// head, shaped like [`candle_raw`]'s.
pub fn tract_raw(engine: &edge_runtime::Engine, input: &[f32]) -> Vec<Vec<f32>> {
    engine
        .run_raw(input)
        .unwrap()
        .into_iter()
        .map(|mut h| h.remove(0))
        .collect()
}

/// Head name → values.
pub fn by_head(contract: &Contract, raw: &[Vec<f32>]) -> BTreeMap<String, Vec<f32>> {
    contract
        .heads
        .iter()
        .zip(raw)
        .map(|(h, r)| (h.name.clone(), r.clone()))
        .collect()
}

/// Largest value of a per-head map.
pub fn worst(d: &BTreeMap<String, f32>) -> f32 {
    d.values().copied().fold(0.0, f32::max)
}
