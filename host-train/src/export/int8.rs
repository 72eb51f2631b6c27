//! The int8 export workflow: load the checkpoint, calibrate the activation ranges on real
//! images when the form quantizes activations ([`crate::quant::calibrate`]), and write the
//! quantized ONNX file with the calibration recorded in its contract.
use std::path::{Path, PathBuf};

use candle_core::Device;
use models::{Calibration, Contract, Quantization};

use super::{export_checkpoint, ExportOptions, QuantExport, QuantForm};
use crate::{
    quant::{calibrate, Method},
    train::setup::load_for_inference,
    Error, Result,
};

/// An int8 export request.
#[derive(Debug, Clone)]
pub struct Int8Request {
    /// The ONNX form.
    pub form: QuantForm,
    /// Folder of calibration images (needed by [`QuantForm::Qdq`]).
    pub calibration: Option<PathBuf>,
    /// How many calibration images to use.
    pub count: usize,
    /// How to pick each activation range.
    pub method: Method,
    /// Test-time flip in the graph ([`ExportOptions::test_time_flip`]); calibration runs
    /// the plain images (a mirror image has the same activation ranges).
    pub test_time_flip: bool,
}

/// What an int8 export did.
#[derive(Debug, Clone)]
pub struct Int8Report {
    /// The exported contract (with its quantization section).
    pub contract: Contract,
    /// Calibration images used.
    pub images: usize,
    /// Calibration files that could not be read, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Calibrates (when the form quantizes activations) and writes the int8 ONNX file.
pub fn export_int8(checkpoint: &Path, out: &Path, req: &Int8Request) -> Result<Int8Report> {
    export_int8_on(checkpoint, out, req, &Device::Cpu)
}

/// [`export_int8`] with the calibration images run on `dev` (the weights written are the
/// checkpoint's, read on the host, whatever `dev` is).
pub fn export_int8_on(
    checkpoint: &Path,
    out: &Path,
    req: &Int8Request,
    dev: &Device,
) -> Result<Int8Report> {
    let (net, _, ck) = load_for_inference(checkpoint, dev)?;
    let (acts, calibration, skipped) = match req.form {
        QuantForm::Weights => Default::default(),
        QuantForm::Qdq | QuantForm::Qlinear => {
            let dir = req.calibration.as_deref().ok_or_else(|| {
                Error::Config("int8 activations need calibration images (--calibration DIR)".into())
            })?;
            let spec = &ck.contract.preprocess;
            let set = calibrate::load_images(dir, spec, req.count, Some(ck.config.val_fraction))?;
            let acts = calibrate::calibrate(net, &set, spec, req.method, 64, dev)?;
            let source = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| dir.display().to_string());
            let cal = Calibration {
                method: req.method.to_string(),
                images: set.count,
                source,
            };
            (acts, Some(cal), set.skipped)
        }
    };
    let info = Quantization {
        scheme: "int8".into(),
        form: req.form.as_str().into(),
        weights: "int8 symmetric per output channel (BatchNorm folded)".into(),
        activations: (req.form != QuantForm::Weights).then(|| "uint8 asymmetric per tensor".into()),
        calibration,
    };
    let images = info.calibration.as_ref().map_or(0, |c| c.images);
    let opts = ExportOptions {
        fold_batchnorm: true,
        quant: Some(QuantExport {
            form: req.form,
            acts,
            info,
        }),
        test_time_flip: req.test_time_flip,
    };
    let contract = export_checkpoint(checkpoint, out, &opts)?;
    Ok(Int8Report {
        contract,
        images,
        skipped,
    })
}
