//! Helpers shared by the integration tests: run the xtask binary, make bundles from the
//! parity fixture's model and a host executable, and snapshot folder trees.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use xtask::util::sha256_hex;

/// Fixed so that bundles of the same inputs are byte-identical.
pub const EPOCH: &str = "1700000000";

pub fn workspace() -> PathBuf {
    xtask::workspace_root()
}

pub fn model() -> PathBuf {
    workspace().join("tests/fixtures/parity-v1/model.onnx")
}

/// Any small executable will do: these tests are about layout, not about running it.
pub fn binary() -> PathBuf {
    PathBuf::from("/bin/true")
}

pub fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .expect("xtask runs")
}

/// Runs xtask, expects success, returns stdout.
pub fn ok(args: &[&str]) -> String {
    let out = xtask(args);
    assert!(
        out.status.success(),
        "xtask {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs xtask, expects failure, returns stderr.
pub fn fails(args: &[&str]) -> String {
    let out = xtask(args);
    assert!(
        !out.status.success(),
        "xtask {args:?} succeeded:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Makes `hydranet-edge-<board>-<version>.tar.gz` in `out` and returns its path.
pub fn bundle(out: &Path, board: &str, version: &str) -> PathBuf {
    ok(&[
        "bundle",
        "--board",
        board,
        "--model",
        s(&model()),
        "--binary",
        s(&binary()),
        "--skip-arch-check",
        "--out",
        s(out),
        "--version",
        version,
    ]);
    let path = out.join(format!("hydranet-edge-{board}-{version}.tar.gz"));
    assert!(path.is_file(), "{} missing", path.display());
    path
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir { mode: u32 },
    File { mode: u32, sha256: String },
    Link { target: String },
}

/// Every path under `root` (relative, '/'-separated) with its type, mode, contents hash or
/// link target.
pub fn tree(root: &Path) -> BTreeMap<String, Node> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for p in entries {
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            let meta = fs::symlink_metadata(&p).expect("metadata");
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&p).expect("read_link");
                out.insert(
                    rel,
                    Node::Link {
                        target: target.to_string_lossy().into_owned(),
                    },
                );
            } else if meta.is_dir() {
                out.insert(rel, Node::Dir { mode });
                walk(root, &p, out);
            } else {
                let data = fs::read(&p).expect("read");
                out.insert(
                    rel,
                    Node::File {
                        mode,
                        sha256: sha256_hex(&data),
                    },
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

pub fn link(path: &Path) -> String {
    fs::read_link(path)
        .unwrap_or_else(|e| panic!("{} is not a symlink: {e}", path.display()))
        .to_string_lossy()
        .into_owned()
}

/// Unpacks a bundle with the system's tar, as a user on the board would.
pub fn untar(bundle: &Path, into: &Path) -> PathBuf {
    let status = Command::new("tar")
        .arg("xzf")
        .arg(bundle)
        .arg("-C")
        .arg(into)
        .status()
        .expect("tar runs");
    assert!(status.success());
    let name = bundle
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".tar.gz"))
        .expect("bundle name");
    into.join(name)
}

/// A boards folder `dir` holding the shipped profiles, with `board`'s edited by `edit`
/// (e.g. to change its `[kiosk]`). Returns `dir`.
pub fn boards_with(dir: &Path, board: &str, edit: impl Fn(&str) -> String) -> PathBuf {
    fs::create_dir_all(dir).expect("boards dir");
    let shipped = workspace().join("boards");
    for entry in fs::read_dir(&shipped).expect("boards/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = fs::read_to_string(&path).expect("profile");
            let name = path.file_name().expect("name");
            let text = if path.file_stem().is_some_and(|s| s == board) {
                let edited = edit(&text);
                assert_ne!(edited, text, "the edit of {board}.toml changed nothing");
                edited
            } else {
                text
            };
            fs::write(dir.join(name), text).expect("write profile");
        }
    }
    dir.to_owned()
}

/// [`bundle`] with the profiles of `boards_dir`.
pub fn bundle_from(boards_dir: &Path, out: &Path, board: &str, version: &str) -> PathBuf {
    ok(&[
        "--boards-dir",
        s(boards_dir),
        "bundle",
        "--board",
        board,
        "--model",
        s(&model()),
        "--binary",
        s(&binary()),
        "--skip-arch-check",
        "--out",
        s(out),
        "--version",
        version,
    ]);
    let path = out.join(format!("hydranet-edge-{board}-{version}.tar.gz"));
    assert!(path.is_file(), "{} missing", path.display());
    path
}

/// The rpi4 profile with its kiosk's browser started by cage instead of the desktop.
pub fn cage(text: &str) -> String {
    text.replace("display = \"desktop\"", "display = \"cage\"")
}

/// The rpi4 profile with its kiosk off.
pub fn kiosk_off(text: &str) -> String {
    text.replace("enabled = true", "enabled = false")
}
