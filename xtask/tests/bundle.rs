//! `xtask boards` and `xtask bundle`: the tarball's exact contents, the unit, the manifest.

mod common;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Read;

use common::*;
use flate2::read::GzDecoder;
use xtask::util::sha256_hex;

#[test]
fn boards_lists_the_three_profiles() {
    let out = ok(&["boards"]);
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{out}");
    assert!(rows[0].starts_with("jetson-orin-nano") && rows[0].contains("cortex-a78ae"));
    assert!(rows[1].starts_with("rpi4") && rows[1].contains("cortex-a72"));
    assert!(rows[2].starts_with("rpi5") && rows[2].contains("cortex-a76"));
    for r in rows {
        assert!(
            r.contains("aarch64-unknown-linux-musl") && r.contains("/dev/video0"),
            "{r}"
        );
    }
}

/// (mode, contents) of every entry, keyed by path; folders end in '/'.
fn entries(path: &std::path::Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    let mut ar = tar::Archive::new(GzDecoder::new(File::open(path).expect("bundle")));
    let mut out = BTreeMap::new();
    for e in ar.entries().expect("tar") {
        let mut e = e.expect("entry");
        let mut name = e.path().expect("path").to_string_lossy().into_owned();
        if e.header().entry_type().is_dir() && !name.ends_with('/') {
            name.push('/');
        }
        assert_eq!(e.header().uid().expect("uid"), 0);
        let mode = e.header().mode().expect("mode");
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("read");
        out.insert(name, (mode, data));
    }
    out
}

#[test]
fn bundle_holds_exactly_the_release() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = ok(&[
        "bundle",
        "--board",
        "rpi4",
        "--model",
        s(&model()),
        "--binary",
        s(&binary()),
        "--skip-arch-check",
        "--out",
        s(dir.path()),
        "--version",
        "1.2.3 rc/1",
    ]);
    // The version is sanitized for file names.
    let path = dir.path().join("hydranet-edge-rpi4-1.2.3-rc-1.tar.gz");
    assert!(out.contains(s(&path)), "{out}");
    let tar_bytes = fs::metadata(&path).expect("tarball").len();
    let bin_bytes = fs::metadata(binary()).expect("binary").len();
    assert!(
        out.contains(&format!("tarball: {tar_bytes} bytes")),
        "{out}"
    );
    assert!(
        out.contains(&format!("binary:  {bin_bytes} bytes")),
        "{out}"
    );
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .expect("out dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");

    let e = entries(&path);
    let top = "hydranet-edge-rpi4-1.2.3-rc-1";
    let names: Vec<&str> = e.keys().map(String::as_str).collect();
    let want = [
        format!("{top}/"),
        format!("{top}/bin/"),
        format!("{top}/bin/edge-runtime"),
        format!("{top}/install.sh"),
        format!("{top}/manifest.json"),
        format!("{top}/model/"),
        format!("{top}/model/model.onnx"),
        format!("{top}/systemd/"),
        format!("{top}/systemd/hydranet-edge.service"),
    ];
    assert_eq!(names, want);
    let get = |p: &str| &e[&format!("{top}/{p}")];
    assert_eq!(get("bin/edge-runtime").0, 0o755);
    assert_eq!(get("install.sh").0, 0o755);
    assert_eq!(get("model/model.onnx").0, 0o644);
    assert_eq!(get("bin/").0, 0o755);
    let bin = fs::read(binary()).expect("binary");
    let model_bytes = fs::read(model()).expect("model");
    assert_eq!(get("bin/edge-runtime").1, bin);
    assert_eq!(get("model/model.onnx").1, model_bytes);

    let m: serde_json::Value = serde_json::from_slice(&get("manifest.json").1).expect("json");
    assert_eq!(m["board"], "rpi4");
    assert_eq!(m["version"], "1.2.3-rc-1");
    assert_eq!(m["target"], "aarch64-unknown-linux-musl");
    assert_eq!(m["libc"], "musl");
    assert_eq!(m["target_cpu"], "cortex-a72");
    assert_eq!(m["created"], "2023-11-14T22:13:20Z");
    assert_eq!(m["install"]["prefix"], "/opt/hydranet");
    assert_eq!(m["binary"]["sha256"], sha256_hex(&bin));
    assert_eq!(m["binary"]["bytes"], bin.len());
    assert_eq!(m["model"]["sha256"], sha256_hex(&model_bytes));

    let unit = String::from_utf8(get("systemd/hydranet-edge.service").1.clone()).expect("utf-8");
    assert!(unit.contains(
        "\nExecStart=/opt/hydranet/current/bin/edge-runtime run \
         --model /opt/hydranet/current/model/model.onnx --source v4l:/dev/video0 \
         --camera-format yuyv --width 640 --height 480 --fps 30\n"
    ));
    let sh = String::from_utf8(get("install.sh").1.clone()).expect("utf-8");
    assert!(sh.contains("VERSION='1.2.3-rc-1'") && sh.contains("PREFIX='/opt/hydranet'"));
}

#[test]
fn bundles_are_reproducible() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    let pa = bundle(a.path(), "rpi5", "7");
    let pb = bundle(b.path(), "rpi5", "7");
    assert_eq!(fs::read(pa).expect("a"), fs::read(pb).expect("b"));
}

#[test]
fn jetson_unit_asks_for_auto_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = bundle(dir.path(), "jetson-orin-nano", "1");
    let e = entries(&path);
    let unit = &e["hydranet-edge-jetson-orin-nano-1/systemd/hydranet-edge.service"].1;
    let unit = String::from_utf8_lossy(unit);
    assert!(unit.contains("--camera-format auto "), "{unit}");
    let m = &e["hydranet-edge-jetson-orin-nano-1/manifest.json"].1;
    let m: serde_json::Value = serde_json::from_slice(m).expect("json");
    assert_eq!(m["target_cpu"], "cortex-a78ae");
}

#[test]
fn gnu_libc_is_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    ok(&[
        "bundle",
        "--board",
        "rpi4",
        "--libc",
        "gnu",
        "--model",
        s(&model()),
        "--binary",
        s(&binary()),
        "--skip-arch-check",
        "--out",
        s(dir.path()),
        "--version",
        "g",
    ]);
    let e = entries(&dir.path().join("hydranet-edge-rpi4-g.tar.gz"));
    let m: serde_json::Value =
        serde_json::from_slice(&e["hydranet-edge-rpi4-g/manifest.json"].1).expect("json");
    assert_eq!(m["target"], "aarch64-unknown-linux-gnu");
    assert_eq!(m["libc"], "gnu");
}

#[test]
fn bad_inputs_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.onnx");
    fs::write(&empty, b"").expect("write");
    let text = dir.path().join("notes.onnx");
    fs::write(&text, b"hello, not a model\n").expect("write");
    let missing = dir.path().join("missing.onnx");
    let out = dir.path().join("out");
    let run = |model: &std::path::Path, binary: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "bundle",
            "--board",
            "rpi4",
            "--model",
            s(model),
            "--binary",
            s(binary),
            "--out",
            s(&out),
            "--version",
            "1",
        ];
        args.extend_from_slice(extra);
        fails(&args)
    };
    let skip = ["--skip-arch-check"];
    let err = run(&empty, &binary(), &skip);
    assert!(err.contains(s(&empty)) && err.contains("is empty"), "{err}");
    let err = run(&text, &binary(), &skip);
    assert!(
        err.contains(s(&text)) && err.contains("not an ONNX file"),
        "{err}"
    );
    let err = run(&missing, &binary(), &skip);
    assert!(err.contains(s(&missing)), "{err}");
    // A host binary is not what the board runs.
    let err = run(&model(), &binary(), &[]);
    assert!(
        err.contains("/bin/true") && err.contains("not aarch64"),
        "{err}"
    );
    let err = run(&model(), &dir.path().join("nope"), &skip);
    assert!(err.contains("nope"), "{err}");
    let err = fails(&[
        "bundle",
        "--board",
        "rpi9",
        "--model",
        s(&model()),
        "--binary",
        "/bin/true",
    ]);
    assert!(err.contains("rpi9") && err.contains("rpi4, rpi5"), "{err}");
    // Nothing half-written is left behind.
    assert!(!out.exists() || fs::read_dir(&out).expect("out").next().is_none());
}
