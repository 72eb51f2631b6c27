//! `host-train report` end to end on a tiny synthetic run: every PNG is written, decodes,
//! has the size the plot code promises and is not blank; the markdown and JSON hold every
//! group and the goal checks; exported ONNX files (fp32, int8) are reported the same way.
mod common;

use std::path::Path;

use common::host_train;

use host_train::report::plot::{confusion_size, val_metrics_size, LOSS_SIZE, SCATTER_SIZE};

/// Checks a PNG: it decodes, has `size`, and is a drawing (a share of non-white pixels and
/// many colours from anti-aliased text and lines), not a blank or flat canvas.
fn check_png(path: &Path, size: (u32, u32)) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        image::guess_format(&bytes).unwrap(),
        image::ImageFormat::Png,
        "{}",
        path.display()
    );
    let img = image::load_from_memory(&bytes).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), size, "{}", path.display());
    let total = (img.width() * img.height()) as usize;
    let inked = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    let mut colours: Vec<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    colours.sort_unstable();
    colours.dedup();
    assert!(
        inked * 100 > total && colours.len() > 30,
        "{} looks blank: {inked} of {total} pixels drawn, {} colours",
        path.display(),
        colours.len()
    );
}

#[test]
fn report_draws_the_plots_and_tables_for_a_checkpoint_and_onnx_files() {
    let data = tempfile::tempdir().unwrap();
    host_train::synth::generate(data.path(), 64, 40, 11).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let d = data.path().to_str().unwrap();
    let (ok, _, err) = host_train(&[
        "train",
        "--data",
        d,
        "--out",
        run.to_str().unwrap(),
        "--backbone",
        "resnet10-w0.25",
        "--input-size",
        "32",
        "--batch",
        "8",
        "--epochs",
        "2",
        "--val-fraction",
        "0.25",
    ]);
    assert!(ok, "{err}");

    // The run's best checkpoint on the run's validation split, curves from its log.
    let out = tmp.path().join("report");
    let (ok, stdout, err) = host_train(&[
        "report",
        "--run",
        run.to_str().unwrap(),
        "--data",
        d,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(
        stdout.contains("worst ethnicity group's gender accuracy")
            && (stdout.contains("PASS") || stdout.contains("FAIL")),
        "{stdout}"
    );
    check_png(&out.join("loss.png"), LOSS_SIZE);
    check_png(&out.join("val_metrics.png"), val_metrics_size(3));
    check_png(&out.join("confusion_gender.png"), confusion_size(2));
    check_png(&out.join("confusion_ethnicity.png"), confusion_size(5));
    check_png(&out.join("age_scatter.png"), SCATTER_SIZE);

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["data"]["split"], "val");
    assert_eq!(json["run"]["epochs"], 2);
    let n = json["data"]["n"].as_u64().unwrap();
    assert!(n > 5 && n < 64, "validation split of 64: {n}");
    assert_eq!(json["fairness"]["overall"]["n"], n);
    assert_eq!(json["goals"].as_array().unwrap().len(), 5);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("| group | n | age MAE (years) | gender acc | ethnicity acc |")
            && md.contains(&format!("| **all** | {n} |")),
        "{md}"
    );
    // Every group of every breakdown is a row, and the groups' sizes add up.
    for (group, title) in [
        ("ethnicity", "ethnicity"),
        ("gender", "gender"),
        ("age_band", "age band"),
    ] {
        let rows = json["fairness"]["groups"][group].as_array().unwrap();
        assert!(!rows.is_empty(), "no {group} groups");
        let mut sum = 0;
        for r in rows {
            let value = r["value"].as_str().unwrap();
            let rn = r["n"].as_u64().unwrap();
            sum += rn;
            assert!(
                md.contains(&format!("| {title}: {value} | {rn} |")),
                "{title}: {value} missing in\n{md}"
            );
            for k in ["age_mae", "gender_acc", "ethnicity_acc"] {
                assert!(r[k].is_number(), "{group} {value}: {k} in {r}");
            }
        }
        assert_eq!(sum, n, "{group} groups");
    }
    for f in [
        "loss.png",
        "val_metrics.png",
        "confusion_gender.png",
        "age_scatter.png",
    ] {
        assert!(md.contains(&format!("]({f})")), "{f} not linked in\n{md}");
    }

    // The exported file, every image: no training log, the same tables.
    let onnx = tmp.path().join("model.onnx");
    let (ok, _, err) = host_train(&[
        "export",
        "--checkpoint",
        run.join("best.safetensors").to_str().unwrap(),
        "--out",
        onnx.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let out2 = tmp.path().join("report-onnx");
    let (ok, _, err) = host_train(&[
        "report",
        "--model",
        onnx.to_str().unwrap(),
        "--data",
        d,
        "--split",
        "all",
        "--out",
        out2.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    check_png(&out2.join("confusion_ethnicity.png"), confusion_size(5));
    check_png(&out2.join("age_scatter.png"), SCATTER_SIZE);
    assert!(!out2.join("loss.png").exists());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out2.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["data"]["n"], 64);
    assert_eq!(json["model"]["kind"], "ONNX, float");
    assert!(json["run"].is_null());
    let md = std::fs::read_to_string(out2.join("report.md")).unwrap();
    assert!(
        md.contains("| **all** | 64 |") && md.contains("training log: none"),
        "{md}"
    );

    // An int8 file too (its activations simulated in Candle, as `eval --model` does).
    let int8 = tmp.path().join("model-int8.onnx");
    let (ok, _, err) = host_train(&[
        "export",
        "--checkpoint",
        run.join("best.safetensors").to_str().unwrap(),
        "--out",
        int8.to_str().unwrap(),
        "--quantize",
        "int8",
        "--calibration",
        d,
        "--calibration-count",
        "16",
    ]);
    assert!(ok, "{err}");
    let out3 = tmp.path().join("report-int8");
    let (ok, _, err) = host_train(&[
        "report",
        "--model",
        int8.to_str().unwrap(),
        "--data",
        d,
        "--out",
        out3.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    check_png(&out3.join("confusion_gender.png"), confusion_size(2));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out3.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["model"]["kind"], "ONNX, int8 qdq", "{}", json["model"]);
    // The split recorded in the file is the run's: the same validation images.
    assert_eq!(json["data"]["n"], n);

    // Errors name the file.
    let (ok, _, err) = host_train(&[
        "report",
        "--checkpoint",
        "/nonexistent/best.safetensors",
        "--data",
        d,
        "--out",
        out2.to_str().unwrap(),
    ]);
    assert!(
        !ok && err.contains("/nonexistent/best.safetensors"),
        "{err}"
    );
}
