//! `xtask bundle --format mender`: the artifact Debian's `mender-artifact` writes, read back
//! and validated by the same tool, signed and unsigned; and the refusals. The install on a
//! client is tests/mender/standalone-test.sh (it needs root and the client).

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;

fn tool(args: &[&str]) -> (bool, String) {
    let out = Command::new("mender-artifact")
        .args(args)
        .output()
        .expect("mender-artifact runs (Debian package mender-artifact; scripts/setup.sh test)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `bundle` of the fixture's model and a stand-in binary into `out`, without a detector.
fn bundle_args<'a>(model: &'a Path, binary: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec![
        "bundle",
        "--model",
        s(model),
        "--binary",
        s(binary),
        "--skip-arch-check",
        "--no-detector",
        "--out",
        s(out),
    ]
}

fn bundle(dir: &Path, board: &str, version: &str, extra: &[&str]) -> String {
    let (model, binary) = (model(), binary());
    let mut args = bundle_args(&model, &binary, dir);
    args.extend(["--board", board, "--version", version, "--format", "mender"]);
    args.extend_from_slice(extra);
    ok(&args)
}

fn keypair(dir: &Path, name: &str) -> (String, String) {
    let key = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub"));
    let run = |args: &[&str]| {
        let st = Command::new("openssl")
            .args(args)
            .status()
            .expect("openssl runs");
        assert!(st.success(), "openssl {args:?}");
    };
    // mender-artifact 3.9 reads EC keys in the SEC1 form ("EC PRIVATE KEY"), not PKCS#8.
    run(&[
        "ecparam",
        "-genkey",
        "-name",
        "prime256v1",
        "-noout",
        "-out",
        s(&key),
    ]);
    run(&["pkey", "-in", s(&key), "-pubout", "-out", s(&public)]);
    (s(&key).to_owned(), s(&public).to_owned())
}

#[test]
fn artifact_holds_the_tarball_for_the_device_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bundle(dir.path(), "rpi4", "1.0", &[]);
    let artifact = dir.path().join("hydranet-edge-rpi4-1.0.mender");
    let tarball = dir.path().join("hydranet-edge-rpi4-1.0.tar.gz");
    assert!(out.contains(s(&artifact)), "{out}");
    assert!(out.contains("device type raspberrypi4, unsigned"), "{out}");
    assert!(tarball.is_file(), "the tarball stays beside the artifact");

    let (valid, text) = tool(&["validate", s(&artifact)]);
    assert!(valid, "{text}");
    let (read, text) = tool(&["read", s(&artifact)]);
    assert!(read, "{text}");
    for want in [
        "Name: hydranet-edge-rpi4-1.0",
        "Compatible devices: '[raspberrypi4]'",
        "Signature: no signature",
        "Type:   hydranet-release",
        "hydranet-edge-rpi4-1.0.tar.gz",
        "rootfs-image.hydranet-edge.version: 1.0",
    ] {
        assert!(text.contains(want), "no `{want}` in\n{text}");
    }
    // The payload is the tarball itself, byte for byte.
    let (dumped, text) = tool(&["dump", "--files", s(&dir.path().join("dump")), s(&artifact)]);
    assert!(dumped, "{text}");
    assert_eq!(
        fs::read(dir.path().join("dump/hydranet-edge-rpi4-1.0.tar.gz")).expect("dumped"),
        fs::read(&tarball).expect("tarball")
    );
}

#[test]
fn signed_artifacts_verify_with_their_key_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, public) = keypair(dir.path(), "key");
    let (_, other) = keypair(dir.path(), "other");
    let out = bundle(dir.path(), "rpi5", "2.0", &["--sign-key", &key]);
    assert!(out.contains("device type raspberrypi5, signed"), "{out}");
    let artifact = dir.path().join("hydranet-edge-rpi5-2.0.mender");
    let (ok_key, text) = tool(&["validate", "-k", &public, s(&artifact)]);
    assert!(ok_key, "{text}");
    let (ok_other, text) = tool(&["validate", "-k", &other, s(&artifact)]);
    assert!(!ok_other, "validates with another key:\n{text}");
    let (read, text) = tool(&["read", s(&artifact)]);
    assert!(read && text.contains("Signature: signed"), "{text}");
}

#[test]
fn refusals_name_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, binary) = (model(), binary());
    let common = bundle_args(&model, &binary, dir.path());
    // --sign-key belongs to artifacts.
    let mut args = common.to_vec();
    args.extend(["--board", "rpi4", "--sign-key", "/nonexistent.pem"]);
    let err = fails(&args);
    assert!(err.contains("--format mender"), "{err}");
    // A key that is not there, named.
    let mut args = common.to_vec();
    args.extend([
        "--board",
        "rpi4",
        "--format",
        "mender",
        "--sign-key",
        "/nonexistent/key.pem",
    ]);
    let err = fails(&args);
    assert!(err.contains("/nonexistent/key.pem"), "{err}");
    // A profile without [mender].
    let boards = dir.path().join("boards");
    fs::create_dir(&boards).expect("mkdir");
    let text = fs::read_to_string(workspace().join("boards/rpi4.toml")).expect("profile");
    let cut = text.find("\n[mender]").expect("rpi4 has [mender]");
    fs::write(boards.join("rpi4.toml"), &text[..cut]).expect("write");
    let mut args = vec!["--boards-dir", s(&boards)];
    args.extend(common.iter().copied());
    args.extend(["--board", "rpi4", "--format", "mender"]);
    let err = fails(&args);
    assert!(err.contains("no [mender] section"), "{err}");
    // A device type a shell would have to quote.
    let bad = text.replace(
        "device_type = \"raspberrypi4\"",
        "device_type = \"pi 4; rm\"",
    );
    fs::write(boards.join("rpi4.toml"), bad).expect("write");
    let err = fails(&args);
    assert!(
        err.contains("device_type") && err.contains("rpi4.toml"),
        "{err}"
    );
    assert!(
        !dir.path().join("hydranet-edge-rpi4-1.0.mender").exists()
            && fs::read_dir(dir.path())
                .expect("ls")
                .flatten()
                .all(|e| !e.file_name().to_string_lossy().ends_with(".mender")),
        "an artifact was left behind"
    );
}
