//! Bad input through the real binary: each case gives one clear message naming the file,
//! the rest of the work goes on, and nothing already saved is lost.
mod common;

use std::path::Path;

use common::{host_train, TINY};

fn train(data: &Path, out: &Path, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(&TINY);
    args.extend_from_slice(extra);
    host_train(&args)
}

#[test]
fn a_folder_without_valid_images_is_one_clear_error() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("holiday.jpg"), b"x").unwrap();
    std::fs::write(
        data.path().join("39_1_20170116174525125.jpg.chip.jpg"),
        b"x",
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let (ok, _, err) = train(data.path(), out.path(), &[]);
    assert!(!ok);
    assert!(
        err.contains("no usable samples") && err.contains(data.path().to_str().unwrap()),
        "{err}"
    );
    assert!(
        err.contains("39_1_20170116174525125.jpg.chip.jpg") && err.contains("found 3 field(s)"),
        "{err}"
    );
}

#[test]
fn a_missing_folder_is_named() {
    let out = tempfile::tempdir().unwrap();
    let (ok, _, err) = train(Path::new("/nonexistent/faces"), out.path(), &[]);
    assert!(!ok);
    assert!(
        err.contains("/nonexistent/faces") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn unreadable_images_and_malformed_names_are_skipped_with_warnings() {
    let data = tempfile::tempdir().unwrap();
    host_train::synth::generate(data.path(), 48, 40, 2).unwrap();
    std::fs::write(
        data.path().join("30_0_0_20170116232725357.jpg.chip.jpg"),
        b"\xff\xd8\xff not a jpeg",
    )
    .unwrap();
    std::fs::copy(
        data.path().join("30_0_0_20170116232725357.jpg.chip.jpg"),
        data.path().join("55_0_0_20170116232725357jpg.chip.jpg"),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let (ok, stdout, err) = train(data.path(), out.path(), &[]);
    assert!(ok, "{err}");
    assert!(
        err.contains("skipped unreadable image")
            && err.contains("30_0_0_20170116232725357.jpg.chip.jpg"),
        "{err}"
    );
    assert!(
        err.contains("55_0_0_20170116232725357jpg.chip.jpg: name does not end in"),
        "{err}"
    );
    assert!(stdout.contains("(2 skipped)"), "{stdout}");
    assert!(out.path().join("last.safetensors").is_file());
}

#[test]
fn resuming_from_a_corrupt_checkpoint_fails_and_keeps_the_good_ones() {
    let data = tempfile::tempdir().unwrap();
    host_train::synth::generate(data.path(), 40, 40, 4).unwrap();
    let out = tempfile::tempdir().unwrap();
    let (ok, _, err) = train(data.path(), out.path(), &[]);
    assert!(ok, "{err}");
    let best = out.path().join("best.safetensors");
    let last = out.path().join("last.safetensors");
    let best_bytes = std::fs::read(&best).unwrap();
    let last_bytes = std::fs::read(&last).unwrap();

    // Truncated copy of a real checkpoint.
    let broken = out.path().join("broken.safetensors");
    std::fs::write(&broken, &last_bytes[..last_bytes.len() / 2]).unwrap();
    let (ok, _, err) = train(
        data.path(),
        out.path(),
        &["--resume", broken.to_str().unwrap()],
    );
    assert!(!ok);
    assert!(err.contains("broken.safetensors"), "{err}");
    assert_eq!(
        std::fs::read(&best).unwrap(),
        best_bytes,
        "best checkpoint changed"
    );
    assert_eq!(
        std::fs::read(&last).unwrap(),
        last_bytes,
        "last checkpoint changed"
    );

    // Random bytes.
    std::fs::write(&broken, b"garbage").unwrap();
    let (ok, _, err) = train(
        data.path(),
        out.path(),
        &["--resume", broken.to_str().unwrap()],
    );
    assert!(!ok && err.contains("broken.safetensors"), "{err}");
    assert_eq!(std::fs::read(&last).unwrap(), last_bytes);

    // A bare `--resume` (the README's form) takes OUT/last.safetensors; this run had
    // finished, so it has nothing left to do.
    let (ok, stdout, err) = train(data.path(), out.path(), &["--resume"]);
    assert!(ok, "{err}");
    assert!(
        stdout.contains(&format!("resuming {}", last.display())),
        "{stdout}"
    );
}

#[test]
fn eval_prints_metrics_and_a_json_line() {
    let data = tempfile::tempdir().unwrap();
    host_train::synth::generate(data.path(), 40, 40, 6).unwrap();
    let out = tempfile::tempdir().unwrap();
    let (ok, _, err) = train(data.path(), out.path(), &[]);
    assert!(ok, "{err}");
    let ck = out.path().join("best.safetensors");
    let (ok, stdout, err) = host_train(&[
        "eval",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--data",
        data.path().to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{err}");
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["n"], 40);
    for k in ["age_mae", "gender_acc", "ethnicity_acc", "ethnicity_f1"] {
        assert!(last[k].is_number(), "{k} missing in {last}");
    }
    let (ok, stdout, _) = host_train(&[
        "eval",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--data",
        data.path().to_str().unwrap(),
    ]);
    assert!(
        ok && stdout.contains("confusion matrix `ethnicity`") && stdout.contains("by age_band"),
        "{stdout}"
    );
    let (ok, _, err) = host_train(&[
        "eval",
        "--checkpoint",
        "/nonexistent/x.safetensors",
        "--data",
        data.path().to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("/nonexistent/x.safetensors"), "{err}");
}

#[test]
fn the_design_cards_export_form_trains_then_exports() {
    let data = tempfile::tempdir().unwrap();
    host_train::synth::generate(data.path(), 40, 40, 8).unwrap();
    let out = tempfile::tempdir().unwrap();
    let onnx = out.path().join("model.onnx");
    let mut args = vec![
        "--export",
        onnx.to_str().unwrap(),
        "--data",
        data.path().to_str().unwrap(),
    ];
    let run = out.path().join("run");
    args.extend_from_slice(&["--out", run.to_str().unwrap()]);
    args.extend_from_slice(&TINY);
    let (ok, stdout, err) = host_train(&args);
    assert!(ok, "{err}");
    assert!(
        stdout.contains("wrote") && stdout.contains("opset 13"),
        "{stdout}"
    );
    assert!(std::fs::metadata(&onnx).unwrap().len() > 10_000);
    let (ok, _, err) = host_train(&[
        "export",
        "--checkpoint",
        onnx.to_str().unwrap(),
        "--out",
        "/tmp/never.onnx",
    ]);
    assert!(
        !ok && err.contains("model.onnx") && err.contains("not a safetensors file"),
        "{err}"
    );
}

/// `host-train --export model.onnx --quantize int8 ...`: both files, calibrated on the run's
/// own training split by default, each with its size and validation metrics.
#[test]
fn the_design_cards_export_form_writes_the_int8_file_too() {
    let data = tempfile::tempdir().unwrap();
    host_train::synth::generate(data.path(), 40, 40, 10).unwrap();
    let out = tempfile::tempdir().unwrap();
    let onnx = out.path().join("model.onnx");
    let run = out.path().join("run");
    let mut args = vec![
        "--export",
        onnx.to_str().unwrap(),
        "--quantize",
        "int8",
        "--data",
        data.path().to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ];
    args.extend_from_slice(&TINY);
    let (ok, stdout, err) = host_train(&args);
    assert!(ok, "{err}");
    let int8 = out.path().join("model-int8.onnx");
    let (fp32_size, int8_size) = (
        std::fs::metadata(&onnx).unwrap().len(),
        std::fs::metadata(&int8).unwrap().len(),
    );
    assert!(int8_size * 2 < fp32_size, "{int8_size} vs {fp32_size}");
    let number_after = |text: &str, key: &str| -> usize {
        let at = text
            .find(key)
            .unwrap_or_else(|| panic!("no `{key}` in {text}"))
            + key.len();
        let digits: String = text[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().unwrap()
    };
    assert!(stdout.contains("int8 qdq"), "{stdout}");
    let calibrated = number_after(&stdout, "calibrated on ");
    for (file, size) in [(&onnx, fp32_size), (&int8, int8_size)] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(file.to_str().unwrap()) && l.contains("validation split"))
            .unwrap_or_else(|| panic!("no metrics line for {}:\n{stdout}", file.display()));
        assert!(line.contains(&format!("({size} B)")), "{line}");
        assert!(line.contains("age MAE"), "{line}");
        // Calibrated on the training split, scored on the validation split: all 40, once.
        assert_eq!(calibrated + number_after(line, "n="), 40, "{stdout}");
    }
    // Quantizing needs something to quantize.
    let (ok, _, err) = host_train(&[
        "train",
        "--quantize",
        "int8",
        "--data",
        data.path().to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("--export"), "{err}");
}

#[test]
fn int8_export_calibrates_warns_when_short_and_evaluates_the_file() {
    let data = tempfile::tempdir().unwrap();
    host_train::synth::generate(data.path(), 40, 40, 9).unwrap();
    let out = tempfile::tempdir().unwrap();
    let (ok, _, err) = train(data.path(), out.path(), &[]);
    assert!(ok, "{err}");
    let ck = out.path().join("best.safetensors");
    let int8 = out.path().join("model-int8.onnx");
    // 40 images, a quarter held out for validation: fewer than the 64 asked for.
    let (ok, stdout, err) = host_train(&[
        "export",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--out",
        int8.to_str().unwrap(),
        "--quantize",
        "int8",
        "--calibration",
        data.path().to_str().unwrap(),
        "--calibration-count",
        "64",
        "--calibration-method",
        "entropy",
    ]);
    assert!(ok, "{err}");
    assert!(
        stdout.contains("int8 qdq") && stdout.contains("entropy"),
        "{stdout}"
    );
    assert!(
        err.contains("asked for 64 images") && err.contains("used"),
        "{err}"
    );
    let (ok, stdout, err) = host_train(&[
        "eval",
        "--model",
        int8.to_str().unwrap(),
        "--data",
        data.path().to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{err}");
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["n"], 40);

    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("readme.txt"), b"no images").unwrap();
    let never = out.path().join("never.onnx");
    let (ok, _, err) = host_train(&[
        "export",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--out",
        never.to_str().unwrap(),
        "--quantize",
        "int8",
        "--calibration",
        empty.path().to_str().unwrap(),
    ]);
    assert!(
        !ok && err.contains(empty.path().to_str().unwrap()) && err.contains("no usable images"),
        "{err}"
    );
    assert!(!never.exists());
    // Activations need calibration images.
    let (ok, _, err) = host_train(&[
        "export",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--out",
        never.to_str().unwrap(),
        "--quantize",
        "int8",
    ]);
    assert!(!ok && err.contains("--calibration"), "{err}");
}

/// A second cycle warm-started from a run's checkpoint, exported with the test-time flip:
/// the file, rebuilt in Candle, scores exactly as the checkpoint run with the flip.
#[test]
fn warm_start_then_test_time_flip_export_scores_as_the_checkpoint_with_flip() {
    let data = tempfile::tempdir().unwrap();
    host_train::synth::generate(data.path(), 40, 40, 9).unwrap();
    let out = tempfile::tempdir().unwrap();
    let first = out.path().join("first");
    let (ok, _, err) = train(data.path(), &first, &[]);
    assert!(ok, "{err}");
    let first_ck = first.join("best.safetensors");
    let second = out.path().join("second");
    let (ok, _, err) = train(
        data.path(),
        &second,
        &["--init-from", first_ck.to_str().unwrap(), "--seed", "2"],
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("head tensors loaded") && !err.contains(" 0 head tensors"),
        "{err}"
    );
    let ck = second.join("best.safetensors");
    let onnx = out.path().join("flip.onnx");
    let (ok, stdout, err) = host_train(&[
        "export",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--out",
        onnx.to_str().unwrap(),
        "--test-time-flip",
    ]);
    assert!(ok && stdout.contains("test-time flip"), "{stdout}{err}");
    let score = |args: &[&str]| -> serde_json::Value {
        let mut a = vec!["eval", "--data", data.path().to_str().unwrap(), "--json"];
        a.extend_from_slice(args);
        let (ok, stdout, err) = host_train(&a);
        assert!(ok, "{err}");
        serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
    };
    let file = score(&["--model", onnx.to_str().unwrap()]);
    let flip = score(&["--checkpoint", ck.to_str().unwrap(), "--test-time-flip"]);
    for k in ["age_mae", "gender_acc", "ethnicity_acc"] {
        let (a, b) = (file[k].as_f64().unwrap(), flip[k].as_f64().unwrap());
        assert!(
            (a - b).abs() < 1e-4,
            "{k}: file {a} vs checkpoint with flip {b}"
        );
    }
}
