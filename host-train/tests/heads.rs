//! Heads a user declares (`--heads FILE`) trained from partly labelled CSV manifests,
//! through the real binary: train, export fp32 and int8, evaluate; and every bad heads file
//! or manifest refused before the first step, naming the file and the line or column.
mod common;

use std::path::{Path, PathBuf};

use common::{host_train, TINY};

/// The issue's example heads: an 8-class age group (written into a CSV) and a binary head.
const HEADS: &str = r#"
[[head]]
name = "age_group"
kind = "multiclass"
labels = ["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60+"]

[[head]]
name = "is_adult"
kind = "binary"
labels = ["minor", "adult"]
weight = 1.0
"#;

fn age_group(age: u8) -> &'static str {
    [
        "0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60+",
    ][match age {
        0..=2 => 0,
        3..=9 => 1,
        10..=19 => 2,
        20..=29 => 3,
        30..=39 => 4,
        40..=49 => 5,
        50..=59 => 6,
        _ => 7,
    }]
}

/// Synthetic faces and two manifests: `groups.csv` labels `age_group` on the first half of
/// the images, `adults.csv` labels `is_adult` on the other half. Returns (images, manifests).
fn partly_labelled(count: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    host_train::synth::generate(&images, count, 40, 21).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let (mut groups, mut adults) = (
        String::from("path,age_group\n"),
        String::from("path,is_adult\n"),
    );
    for (i, n) in names.iter().enumerate() {
        let age = models::dataset::parse_utkface_name(n).unwrap().age;
        if i < names.len() / 2 {
            groups.push_str(&format!("{n},{}\n", age_group(age)));
        } else {
            let adult = if age >= 18 { "adult" } else { "minor" };
            adults.push_str(&format!("{n},{adult}\n"));
        }
    }
    let m = vec![dir.path().join("groups.csv"), dir.path().join("adults.csv")];
    std::fs::write(&m[0], groups).unwrap();
    std::fs::write(&m[1], adults).unwrap();
    (dir, m)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `train --heads` with `--data` and the manifests, plus `extra`.
fn train_heads(
    heads: &Path,
    images: &Path,
    manifests: &[PathBuf],
    out: &Path,
    extra: &[&str],
) -> (bool, String, String) {
    let mut args = vec!["train", "--heads", s(heads), "--data", s(images)];
    for m in manifests {
        args.extend(["--manifest", s(m)]);
    }
    args.extend(["--out", s(out)]);
    args.extend_from_slice(&TINY);
    args.extend_from_slice(extra);
    host_train(&args)
}

#[test]
fn declared_heads_with_partial_labels_train_export_and_evaluate() {
    let (dir, manifests) = partly_labelled(64);
    let images = dir.path().join("images");
    let heads = dir.path().join("faces.toml");
    std::fs::write(&heads, HEADS).unwrap();
    let run = dir.path().join("run");
    let onnx = dir.path().join("faces.onnx");
    let (ok, stdout, err) = train_heads(
        &heads,
        &images,
        &manifests,
        &run,
        &["--export", s(&onnx), "--quantize", "int8"],
    );
    assert!(ok, "{err}");
    assert!(
        stdout.contains("heads: age_group (multiclass, 8 classes), is_adult (binary)"),
        "{stdout}"
    );
    // The heads file is kept beside the run, as written.
    assert_eq!(
        std::fs::read_to_string(run.join("heads.toml")).unwrap(),
        HEADS
    );
    // Each written file is scored on the validation split, every head over its labels.
    let int8 = dir.path().join("faces-int8.onnx");
    for file in [&onnx, &int8] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(s(file)) && l.contains("validation split"))
            .unwrap_or_else(|| panic!("no metrics line for {}:\n{stdout}", file.display()));
        assert!(
            line.contains("age_group acc") && line.contains("is_adult acc"),
            "{line}"
        );
        assert!(
            !line.contains("age MAE") && !line.contains("gender"),
            "{line}"
        );
        // `n=` of the split, then one per head: each is labelled on part of it.
        assert_eq!(line.matches(" n=").count(), 3, "per-head counts: {line}");
    }

    // The contract carries the heads (and the file's text): eval needs no heads file.
    let mut args = vec!["eval", "--model", s(&int8), "--data", s(&images)];
    for m in &manifests {
        args.extend(["--manifest", s(m)]);
    }
    args.extend(["--split", "val", "--json"]);
    let (ok, stdout, err) = host_train(&args);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let n = v["n"].as_u64().unwrap();
    let (ng, na) = (
        v["age_group_n"].as_u64().unwrap(),
        v["is_adult_n"].as_u64().unwrap(),
    );
    assert!(ng > 0 && na > 0 && ng + na == n, "{v}");
    assert!(
        v["age_group_acc"].is_number() && v["is_adult_acc"].is_number(),
        "{v}"
    );
    assert!(v.get("age_mae").is_none(), "{v}");
    let confusion = &v["heads"][0]["confusion"];
    assert_eq!(confusion.as_array().unwrap().len(), 8, "{v}");
    let im = host_train::export::import::load_onnx(&int8, &candle_core::Device::Cpu).unwrap();
    let names: Vec<&str> = im.contract.heads.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["age_group", "is_adult"]);
    assert_eq!(im.contract.model_name, "hydranet-faces");
    assert_eq!(im.contract.training["heads_file"], HEADS);
    assert!(im.contract.training["labelled.is_adult"].contains(" of "));

    // The report handles any head set: a confusion matrix per class head, no regression.
    let rep = dir.path().join("report");
    let mut args = vec!["report", "--model", s(&onnx), "--data", s(&images)];
    for m in &manifests {
        args.extend(["--manifest", s(m)]);
    }
    args.extend(["--out", s(&rep)]);
    let (ok, _, err) = host_train(&args);
    assert!(ok, "{err}");
    for f in [
        "confusion_age_group.png",
        "confusion_is_adult.png",
        "report.md",
    ] {
        assert!(rep.join(f).is_file(), "{f} missing");
    }
    let md = std::fs::read_to_string(rep.join("report.md")).unwrap();
    assert!(md.contains("| age_group | "), "{md}");
}

/// A bad heads file or manifest: refused before training starts (no checkpoint, no
/// epoch), with the file and the line or column.
fn refused(heads_text: &str, manifests: &[(&str, &str)], want: &[&str]) {
    let (dir, _) = partly_labelled(16);
    let images = dir.path().join("images");
    let heads = dir.path().join("h.toml");
    std::fs::write(&heads, heads_text).unwrap();
    let m: Vec<PathBuf> = manifests
        .iter()
        .map(|(name, text)| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        })
        .collect();
    let run = dir.path().join("run");
    let (ok, stdout, err) = train_heads(&heads, &images, &m, &run, &[]);
    assert!(!ok, "accepted:\n{stdout}");
    for w in want {
        assert!(err.contains(w), "`{w}` not in:\n{err}");
    }
    assert!(!run.join("last.safetensors").exists());
    assert!(!stdout.contains("epoch 1/"), "{stdout}");
}

/// A manifest over the sixteen images [`refused`] makes (the same names: `synth` is
/// deterministic), with `cell(i)` after each path.
fn rows(header: &str, cell: impl Fn(usize) -> String) -> String {
    let (d, _) = partly_labelled(16);
    let mut names: Vec<String> = std::fs::read_dir(d.path().join("images"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut out = format!("path,{header}\n");
    for (i, n) in names.iter().enumerate() {
        out.push_str(&format!("{n},{}\n", cell(i)));
    }
    out
}

#[test]
fn bad_heads_files_are_refused_with_the_line() {
    let csv = rows("age_group,is_adult", |i| {
        format!("{},{}", age_group(20), ["minor", "adult"][i % 2])
    });
    let ok_csv = [("m.csv", csv.as_str())];
    refused(
        "[[head]]\nname = \"a\"\nkind = \"ordinal\"\n",
        &ok_csv,
        &["h.toml, line 3", "unknown kind `ordinal`"],
    );
    refused(
        &format!(
            "{HEADS}\n[[head]]\nname = \"IS_ADULT\"\nkind = \"binary\"\nlabels = [\"a\", \"b\"]\n"
        ),
        &ok_csv,
        &[
            "h.toml, line 14",
            "declared twice (as `is_adult` at line 8)",
        ],
    );
    refused(
        "[[head]]\nname = \"image\"\nkind = \"binary\"\nlabels = [\"a\", \"b\"]\n",
        &ok_csv,
        &["h.toml, line 2", "collides with the ONNX graph's `image`"],
    );
}

#[test]
fn bad_manifests_are_refused_naming_the_column_or_the_line() {
    // A column the heads need that no manifest has.
    let only_groups = rows("age_group", |_| age_group(30).into());
    refused(
        HEADS,
        &[("groups.csv", &only_groups)],
        &[
            "head `is_adult` has no labelled sample",
            "no manifest has a column `is_adult`",
            "groups.csv: path,age_group",
        ],
    );
    // A column whose every cell is empty: the head would learn nothing.
    let empty = rows("age_group,is_adult", |_| format!("{},", age_group(30)));
    refused(
        HEADS,
        &[("empty.csv", &empty)],
        &[
            "head `is_adult` has no labelled sample",
            "every `is_adult` cell of the training split is empty",
        ],
    );
    // A value outside the head's labels in every row: each row named, none left.
    let bad = rows("age_group,is_adult", |_| format!("{},maybe", age_group(30)));
    refused(
        HEADS,
        &[("bad.csv", &bad)],
        &[
            "bad.csv, line 2, column `is_adult` (head `is_adult`): `maybe` is neither a class index nor one of [\"minor\", \"adult\"]",
            "no usable samples",
        ],
    );
    // A regression value outside its range.
    let reg = "[[head]]\nname = \"score\"\nkind = \"regression\"\nmin = 0\nmax = 10\n";
    let out_of_range = rows(
        "score",
        |i| if i == 0 { "11".into() } else { String::new() },
    );
    refused(
        reg,
        &[("scores.csv", &out_of_range)],
        &[
            "line 2, column `score` (head `score`): 11 outside 0..=10",
            "no usable samples",
        ],
    );
}

#[test]
fn one_bad_row_is_skipped_with_its_line_and_the_rest_trains() {
    let (dir, manifests) = partly_labelled(32);
    let images = dir.path().join("images");
    let heads = dir.path().join("faces.toml");
    std::fs::write(&heads, HEADS).unwrap();
    let mut text = std::fs::read_to_string(&manifests[1]).unwrap();
    text = text.replacen(",adult\n", ",grown-up\n", 1);
    std::fs::write(&manifests[1], &text).unwrap();
    let run = dir.path().join("run");
    let (ok, stdout, err) = train_heads(&heads, &images, &manifests, &run, &[]);
    assert!(ok, "{err}");
    assert!(
        err.contains("adults.csv") && err.contains("`grown-up` is neither"),
        "{err}"
    );
    assert!(stdout.contains("(1 skipped)"), "{stdout}");
    assert!(run.join("best.safetensors").is_file());
}
