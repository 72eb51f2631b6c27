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
    Device::new_cuda(ordinal)
        .map_err(|e| Error::Config(format!("cannot open CUDA device {ordinal}: {e}")))
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
}
