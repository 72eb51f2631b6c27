//! Seeded weight initialisation.
//!
//! Candle's CPU device cannot be seeded (`set_seed` fails on CPU), so the initial weights it
//! draws differ run to run. Reproducible training needs our own draw: each tensor gets its
//! own stream, seeded by the run seed and the tensor's name, so adding a head never changes
//! the body's initial weights.
use candle_core::{Result, Tensor};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// Re-draws every random tensor of `varmap` from `seed`, following torchvision's ResNet:
/// convolutions Kaiming-normal (fan-out, ReLU gain); linear weights and biases uniform in
/// ±1/sqrt(fan_in). BatchNorm parameters and statistics keep their constant starts.
pub fn reinit(varmap: &VarMap, seed: u64) -> Result<()> {
    reinit_where(varmap, seed, |_| true)
}

/// [`reinit`] for the variables whose names pass `select` only (a new head).
pub fn reinit_where(varmap: &VarMap, seed: u64, select: impl Fn(&str) -> bool) -> Result<()> {
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("var map lock poisoned".into()))?;
    let mut names: Vec<&String> = vars.keys().filter(|n| select(n)).collect();
    names.sort();
    for name in names {
        let var = &vars[name];
        let dims = var.dims().to_vec();
        let mut rng =
            ChaCha8Rng::seed_from_u64(seed ^ models::dataset::stable_hash(name.as_bytes()));
        let n: usize = dims.iter().product();
        let values: Vec<f32> = match dims.len() {
            4 => {
                let fan_out = dims[0] * dims[2] * dims[3];
                let normal = Normal::new(0.0f32, (2.0 / fan_out as f32).sqrt())
                    .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
                (0..n).map(|_| normal.sample(&mut rng)).collect()
            }
            2 => uniform(&mut rng, n, dims[1]),
            1 if name.ends_with(".bias") => {
                let weight = format!("{}.weight", name.trim_end_matches(".bias"));
                match vars.get(&weight).map(|w| w.dims().to_vec()) {
                    Some(w) if w.len() == 2 => uniform(&mut rng, n, w[1]),
                    _ => continue,
                }
            }
            _ => continue,
        };
        var.set(&Tensor::from_vec(values, dims.as_slice(), var.device())?)?;
    }
    Ok(())
}

fn uniform(rng: &mut ChaCha8Rng, n: usize, fan_in: usize) -> Vec<f32> {
    let bound = 1.0 / (fan_in as f32).sqrt();
    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
}
