//! `host-train export`.
use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use host_train::{
    device,
    export::{
        export_checkpoint, export_int8_on, ExportOptions, Int8Request, QuantForm, IR_VERSION, OPSET,
    },
    quant::Method,
};

/// Number format of a quantized export.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Quantize {
    /// int8 weights per output channel; uint8 activations per tensor (`--quant-form qdq`).
    Int8,
}

/// Where and how the int8 activation ranges are calibrated (`export` and `train --export`).
#[derive(clap::Args, Debug, Clone)]
pub struct CalibrationArgs {
    /// Folder of images to calibrate the activation ranges on (`train --export`: the run's
    /// own --data folder by default). UTKFace-named files of the checkpoint's validation
    /// split are left out.
    #[arg(long, requires = "quantize")]
    pub calibration: Option<PathBuf>,
    /// Calibration images to use.
    #[arg(long, default_value_t = 512, requires = "quantize")]
    pub calibration_count: usize,
    /// How each activation range is chosen.
    #[arg(long, value_enum, default_value_t = Method::Percentile, requires = "quantize")]
    pub calibration_method: Method,
}

/// Arguments of `export`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Checkpoint to export.
    #[arg(long)]
    checkpoint: PathBuf,
    /// ONNX file to write.
    #[arg(long)]
    out: PathBuf,
    /// Keep BatchNormalization nodes instead of folding them into the convolutions.
    #[arg(long, conflicts_with = "quantize")]
    keep_batchnorm: bool,
    /// Write a quantized model (static post-training quantization).
    #[arg(long, value_enum)]
    quantize: Option<Quantize>,
    /// ONNX form of the quantized model: `qdq` (int8 weights and activations) or
    /// `weights` (int8 weights, float activations; no calibration).
    #[arg(long, value_enum, default_value_t = QuantForm::Qdq, requires = "quantize")]
    quant_form: QuantForm,
    #[command(flatten)]
    calibration: CalibrationArgs,
    /// cpu, cuda or cuda:N: where the int8 calibration images run. The conversion itself
    /// copies the checkpoint's weights on the host, whichever device trained them.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Average each head's output over the image and its mirror image, inside the graph
    /// (twice the body's compute; recorded in the contract, so runtimes need nothing).
    #[arg(long)]
    test_time_flip: bool,
}

/// Exports `checkpoint` to `out` and says what was written.
pub fn export(
    checkpoint: &std::path::Path,
    out: &std::path::Path,
    keep_batchnorm: bool,
    test_time_flip: bool,
) -> Result<()> {
    let contract = export_checkpoint(
        checkpoint,
        out,
        &ExportOptions {
            fold_batchnorm: !keep_batchnorm,
            quant: None,
            test_time_flip,
        },
    )
    .with_context(|| format!("exporting {} to {}", checkpoint.display(), out.display()))?;
    let size = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    println!(
        "wrote {} ({:.2} MB, ONNX IR {IR_VERSION}, opset {OPSET}, {}, BatchNorm {}{}; heads: {})",
        out.display(),
        size as f64 / 1e6,
        contract.architecture,
        if keep_batchnorm { "kept" } else { "folded" },
        if test_time_flip {
            ", test-time flip"
        } else {
            ""
        },
        contract.head_list()
    );
    Ok(())
}

pub fn run(a: Args) -> Result<ExitCode> {
    let dev = device::open(&a.device)?;
    let Some(Quantize::Int8) = a.quantize else {
        export(&a.checkpoint, &a.out, a.keep_batchnorm, a.test_time_flip)?;
        return Ok(ExitCode::SUCCESS);
    };
    let c = &a.calibration;
    let req = Int8Request {
        form: a.quant_form,
        calibration: c.calibration.clone(),
        count: c.calibration_count,
        method: c.calibration_method,
        test_time_flip: a.test_time_flip,
    };
    let r = export_int8_on(&a.checkpoint, &a.out, &req, &dev).with_context(|| {
        format!(
            "exporting {} to int8 {}{}",
            a.checkpoint.display(),
            a.out.display(),
            c.calibration
                .as_ref()
                .map(|c| format!(" (calibration images from {})", c.display()))
                .unwrap_or_default()
        )
    })?;
    for (p, reason) in &r.skipped {
        tracing::warn!(
            "calibration: skipped unreadable image {}: {reason}",
            p.display()
        );
    }
    if a.quant_form != QuantForm::Weights && r.images < c.calibration_count {
        tracing::warn!(
            "calibration: asked for {} images, {} usable ones used",
            c.calibration_count,
            r.images
        );
    }
    let size = std::fs::metadata(&a.out).map(|m| m.len()).unwrap_or(0);
    println!(
        "wrote {} ({:.2} MB, int8 {}, {}{})",
        a.out.display(),
        size as f64 / 1e6,
        a.quant_form.as_str(),
        r.contract.architecture,
        match a.quant_form {
            QuantForm::Qdq | QuantForm::Qlinear => format!(
                ", activations calibrated on {} images ({})",
                r.images, c.calibration_method
            ),
            QuantForm::Weights => String::new(),
        }
    );
    Ok(ExitCode::SUCCESS)
}
