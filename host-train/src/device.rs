//! `--device cpu|cuda[:N]`.
use candle_core::Device;

use crate::{Error, Result};

/// Opens the device named by `spec`: `cpu`, `cuda` or `cuda:N`.
pub fn open(spec: &str) -> Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    if spec == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = match spec.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => rest
            .strip_prefix(':')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| {
                Error::Config(format!("bad device `{spec}`: use cpu, cuda or cuda:N"))
            })?,
        None => {
            return Err(Error::Config(format!(
                "unknown device `{spec}`: use cpu, cuda or cuda:N"
            )))
        }
    };
    open_cuda(ordinal)
}

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal).map_err(|e| {
        // The driver's message is what helps; Candle adds a backtrace under RUST_BACKTRACE.
        let e = match e {
            candle_core::Error::WithBacktrace { inner, .. } => *inner,
            e => e,
        };
        Error::Config(format!(
            "cannot open CUDA device {ordinal}: {e} (no NVIDIA GPU or driver here? \
             `nvidia-smi` lists the GPUs; use --device cpu)"
        ))
    })
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(ordinal: usize) -> Result<Device> {
    Err(Error::Config(format!(
        "cuda:{ordinal} requested, but this host-train was built without the `cuda` feature \
         (build with `cargo build --release -p host-train --features cuda`)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert!(open("cpu").unwrap().is_cpu());
        assert!(open("tpu").is_err());
        assert!(open("cuda:x").is_err());
        #[cfg(not(feature = "cuda"))]
        assert!(open("cuda:0")
            .unwrap_err()
            .to_string()
            .contains("without the `cuda` feature"));
    }

    /// With the feature: a GPU opens, and no GPU (or the build-time stub libcuda) is an
    /// error that says which device, not a panic.
    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_opens_or_fails_cleanly() {
        match open("cuda") {
            Ok(d) => assert!(d.is_cuda()),
            Err(e) => assert!(
                e.to_string().starts_with("cannot open CUDA device 0: "),
                "{e}"
            ),
        }
    }
}
