//! The subcommands through the real binary, on the fixture model.
use std::process::Command;

use hydranet_fixture::Fixture;

fn edge(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_edge-runtime"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn eval_json_ends_with_the_metrics_object() {
    let fx = Fixture::load().unwrap();
    // 60 real faces (links into ../shared) and one malformed name.
    let data = tempfile::tempdir().unwrap();
    let shared = hydranet_fixture::utkface_dir();
    let mut names: Vec<_> = std::fs::read_dir(&shared)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for n in names
        .iter()
        .filter(|n| models::dataset::parse_utkface_name(&n.to_string_lossy()).is_ok())
        .take(60)
    {
        std::os::unix::fs::symlink(shared.join(n), data.path().join(n)).unwrap();
    }
    std::os::unix::fs::symlink(
        shared.join(&names[0]),
        data.path().join("61_1_20170109142408075.jpg.chip.jpg"),
    )
    .unwrap();
    let (ok, out, err) = edge(&[
        "eval",
        "--model",
        fx.model_path().to_str().unwrap(),
        "--data",
        data.path().to_str().unwrap(),
        "--json",
        "--batch",
        "8",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(v["n"], 60);
    assert_eq!(v["skipped"], 1);
    assert!(err.contains("61_1_20170109142408075.jpg.chip.jpg"), "{err}");
    // The age-band head is labelled by the names' age field; `is_adult` is not.
    for k in ["age_mae", "gender_acc", "ethnicity_acc", "age_group_acc"] {
        assert!(v[k].is_number(), "{k}: {v}");
    }
    assert_eq!(v["is_adult_n"], 0, "{v}");
    assert!(err.contains("labels no image for head `is_adult`"), "{err}");

    // A manifest labelling `is_adult` on every other image, beside the folder.
    let mut csv = String::from("path,is_adult\n");
    let mut labelled = 0;
    let linked = names
        .iter()
        .map(|n| n.to_string_lossy().into_owned())
        .filter_map(|n| models::dataset::parse_utkface_name(&n).ok().map(|l| (n, l)))
        .take(60);
    for (n, l) in linked.step_by(2) {
        csv.push_str(&format!(
            "{n},{}\n",
            if l.age >= 18 { "adult" } else { "minor" }
        ));
        labelled += 1;
    }
    let m = data.path().join("adults.csv");
    std::fs::write(&m, csv).unwrap();
    let (ok, out, err) = edge(&[
        "eval",
        "--model",
        fx.model_path().to_str().unwrap(),
        "--data",
        data.path().to_str().unwrap(),
        "--manifest",
        m.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(v["n"], labelled, "{v}");
    assert!(v["is_adult_acc"].is_number(), "{v}");
    assert_eq!(v["age_n"], 0, "only is_adult is labelled: {v}");
}

#[test]
fn bench_prints_percentiles() {
    let fx = Fixture::load().unwrap();
    let (ok, out, err) = edge(&[
        "bench",
        "--model",
        fx.model_path().to_str().unwrap(),
        "--iters",
        "20",
        "--warmup",
        "2",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(v["p50_ms"].as_f64().unwrap() <= v["p99_ms"].as_f64().unwrap());
    assert!(v["img_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["peak_rss_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn info_prints_the_contract() {
    let fx = Fixture::load().unwrap();
    let (ok, out, _) = edge(&["info", "--model", fx.model_path().to_str().unwrap()]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["heads"][2]["name"], "ethnicity");
    assert_eq!(v["heads"][4]["name"], "is_adult");
    assert_eq!(v["heads"].as_array().unwrap().len(), 5);
}
