//! `host-train export`.
use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use host_train::{
    device,
    export::{export_checkpoint, ExportOptions, QuantForm, IR_VERSION, OPSET},
    quant::{export_int8_on, Int8Request, Method},
};

/// Number format of a quantized export.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Quantize {
    /// int8 weights per output channel; uint8 activations per tensor (`--quant-form qdq`).
    Int8,
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
    /// Folder of images to calibrate the activation ranges on. UTKFace-named files of
    /// the checkpoint's validation split are left out.
    #[arg(long, requires = "quantize")]
    calibration: Option<PathBuf>,
    /// Calibration images to use.
    #[arg(long, default_value_t = 512, requires = "quantize")]
    calibration_count: usize,
    /// How each activation range is chosen.
    #[arg(long, value_enum, default_value_t = Method::Percentile, requires = "quantize")]
    calibration_method: Method,
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
    let req = Int8Request {
        form: a.quant_form,
        calibration: a.calibration.clone(),
        count: a.calibration_count,
        method: a.calibration_method,
        test_time_flip: a.test_time_flip,
    };
    let r = export_int8_on(&a.checkpoint, &a.out, &req, &dev).with_context(|| {
        format!(
            "exporting {} to int8 {}{}",
            a.checkpoint.display(),
            a.out.display(),
            a.calibration
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
    if a.quant_form != QuantForm::Weights && r.images < a.calibration_count {
        tracing::warn!(
            "calibration: asked for {} images, {} usable ones used",
            a.calibration_count,
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
                r.images, a.calibration_method
            ),
            QuantForm::Weights => String::new(),
        }
    );
    Ok(ExitCode::SUCCESS)
}
