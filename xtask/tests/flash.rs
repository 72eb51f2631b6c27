//! `xtask flash`: the installed layout, upgrades and rollback, agreement with install.sh,
//! the kiosk's browser autostart following the current release, and that every refusal
//! leaves the installed release as it was.

mod common;

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;
use xtask::util::sha256_hex;

const BASE: &str = "opt/hydranet";
const UNIT: &str = "etc/systemd/system/hydranet-edge.service";
const WANTS: &str = "etc/systemd/system/multi-user.target.wants/hydranet-edge.service";
const DESKTOP: &str = "etc/xdg/autostart/hydranet-kiosk.desktop";
const CAGE_UNIT: &str = "etc/systemd/system/hydranet-kiosk-browser.service";
const CAGE_WANTS: &str =
    "etc/systemd/system/multi-user.target.wants/hydranet-kiosk-browser.service";

fn flash(bundle: &Path, root: &Path) -> String {
    ok(&[
        "flash",
        "--board",
        "rpi4",
        "--bundle",
        s(bundle),
        "--rootfs",
        s(root),
    ])
}

fn rollback(root: &Path) -> String {
    ok(&[
        "flash",
        "--board",
        "rpi4",
        "--rootfs",
        s(root),
        "--rollback",
    ])
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).expect("metadata").permissions().mode() & 0o7777
}

/// The unit's ExecStart, split into words.
fn exec_start(root: &Path) -> Vec<String> {
    let unit = fs::read_to_string(root.join(UNIT)).expect("unit");
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    line.split_whitespace().map(String::from).collect()
}

#[test]
fn rootfs_gets_exactly_the_layout_the_unit_expects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b1 = bundle(dir.path(), "rpi4", "1.0.0");
    let root = dir.path().join("rootfs");
    fs::create_dir(&root).expect("rootfs");
    let out = flash(&b1, &root);
    assert!(
        out.contains("installed rpi4 1.0.0") && out.contains("previous: none"),
        "{out}"
    );

    let t = tree(&root);
    let names: Vec<&str> = t.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "etc",
            "etc/systemd",
            "etc/systemd/system",
            "etc/systemd/system/hydranet-edge.service",
            "etc/systemd/system/multi-user.target.wants",
            "etc/systemd/system/multi-user.target.wants/hydranet-edge.service",
            "etc/xdg",
            "etc/xdg/autostart",
            "etc/xdg/autostart/hydranet-kiosk.desktop",
            "opt",
            "opt/hydranet",
            "opt/hydranet/current",
            "opt/hydranet/releases",
            "opt/hydranet/releases/1.0.0",
            "opt/hydranet/releases/1.0.0/bin",
            "opt/hydranet/releases/1.0.0/bin/edge-runtime",
            "opt/hydranet/releases/1.0.0/install.sh",
            "opt/hydranet/releases/1.0.0/kiosk",
            "opt/hydranet/releases/1.0.0/kiosk/browser.sh",
            "opt/hydranet/releases/1.0.0/kiosk/hydranet-kiosk.desktop",
            "opt/hydranet/releases/1.0.0/manifest.json",
            "opt/hydranet/releases/1.0.0/mender",
            "opt/hydranet/releases/1.0.0/mender/hydranet-release",
            "opt/hydranet/releases/1.0.0/model",
            "opt/hydranet/releases/1.0.0/model/face_detector.LICENSE",
            "opt/hydranet/releases/1.0.0/model/face_detector.onnx",
            "opt/hydranet/releases/1.0.0/model/model.onnx",
            "opt/hydranet/releases/1.0.0/systemd",
            "opt/hydranet/releases/1.0.0/systemd/hydranet-edge.service",
            "usr",
            "usr/share",
            "usr/share/mender",
            "usr/share/mender/modules",
            "usr/share/mender/modules/v3",
            "usr/share/mender/modules/v3/hydranet-release",
        ]
    );
    // The update module the board's Mender client runs is the current release's.
    let module = root.join("usr/share/mender/modules/v3/hydranet-release");
    assert_eq!(mode(&module), 0o755);
    assert_eq!(
        fs::read(&module).expect("module"),
        fs::read(root.join(BASE).join("current/mender/hydranet-release")).expect("release module")
    );
    assert_eq!(link(&root.join(BASE).join("current")), "releases/1.0.0");
    assert_eq!(link(&root.join(WANTS)), "../hydranet-edge.service");
    // The links resolve inside the rootfs, and the wants link reaches the unit.
    let cur = root.join(BASE).join("current");
    assert_eq!(mode(&cur.join("bin/edge-runtime")), 0o755);
    assert_eq!(mode(&cur.join("install.sh")), 0o755);
    assert_eq!(mode(&cur.join("model/model.onnx")), 0o644);
    assert_eq!(mode(&cur.join("manifest.json")), 0o644);
    assert_eq!(mode(&root.join(UNIT)), 0o644);
    assert_eq!(mode(&root.join(BASE).join("releases/1.0.0")), 0o755);
    assert_eq!(
        fs::read(root.join(WANTS)).expect("wants"),
        fs::read(root.join(UNIT)).expect("unit")
    );
    assert_eq!(
        fs::read(root.join(UNIT)).expect("unit"),
        fs::read(cur.join("systemd/hydranet-edge.service")).expect("release unit")
    );

    // Every absolute path on the ExecStart line but the camera exists in the rootfs.
    let words = exec_start(&root);
    assert_eq!(words[0], "/opt/hydranet/current/bin/edge-runtime");
    assert_eq!(words[1], "kiosk");
    assert_eq!(words[words.len() - 2..], ["--listen", "127.0.0.1:8080"]);
    let paths: Vec<&String> = words.iter().filter(|w| w.starts_with("/opt/")).collect();
    assert_eq!(paths.len(), 3, "binary, model, detector: {words:?}");
    for p in paths {
        let inside = root.join(p.trim_start_matches('/'));
        assert!(inside.is_file(), "{p} is not in the rootfs");
    }
    assert!(words.contains(&"v4l:/dev/video0".to_string()), "{words:?}");

    // The manifest's checksums are those of the installed files.
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(cur.join("manifest.json")).expect("manifest"))
            .expect("json");
    for key in ["binary", "model"] {
        let rel = m[key]["path"].as_str().expect("path");
        let data = fs::read(cur.join(rel)).expect("installed file");
        assert_eq!(m[key]["sha256"], sha256_hex(&data), "{key}");
    }
    assert_eq!(
        fs::read(cur.join("bin/edge-runtime")).expect("bin"),
        fs::read(binary()).expect("bin")
    );

    // The autostart entry is the release's, and what it runs is the current release's
    // executable browser.sh, found through `current` inside the rootfs.
    assert_eq!(mode(&root.join(DESKTOP)), 0o644);
    assert_eq!(mode(&root.join("etc/xdg/autostart")), 0o755);
    assert_eq!(
        fs::read(root.join(DESKTOP)).expect("desktop"),
        fs::read(cur.join("kiosk/hydranet-kiosk.desktop")).expect("release desktop")
    );
    let script = desktop_exec(&root);
    assert_eq!(script, "/opt/hydranet/current/kiosk/browser.sh");
    assert_eq!(mode(&root.join(script.trim_start_matches('/'))), 0o755);
}

/// The `Exec=` of the installed autostart entry.
fn desktop_exec(root: &Path) -> String {
    fs::read_to_string(root.join(DESKTOP))
        .expect("autostart entry")
        .lines()
        .find_map(|l| l.strip_prefix("Exec="))
        .expect("Exec=")
        .to_owned()
}

/// Which of the kiosk's autostart files a root holds.
#[derive(Debug, PartialEq, Eq)]
enum Autostart {
    Desktop,
    Cage,
    None,
}

fn autostart(root: &Path) -> Autostart {
    let desktop = root.join(DESKTOP).exists();
    let cage = root.join(CAGE_UNIT).exists();
    // The wants link exists exactly when the unit does, and reaches it.
    assert_eq!(cage, fs::symlink_metadata(root.join(CAGE_WANTS)).is_ok());
    if cage {
        assert_eq!(
            link(&root.join(CAGE_WANTS)),
            "../hydranet-kiosk-browser.service"
        );
        assert_eq!(
            fs::read(root.join(CAGE_WANTS)).expect("wants"),
            fs::read(root.join(CAGE_UNIT)).expect("unit")
        );
    }
    match (desktop, cage) {
        (true, false) => Autostart::Desktop,
        (false, true) => Autostart::Cage,
        (false, false) => Autostart::None,
        (true, true) => panic!("both autostarts in {}", root.display()),
    }
}

/// A desktop kiosk, then a cage kiosk, then none, then back by rollback: install.sh and
/// `flash --rootfs` leave the same tree at every step, and the board always carries the
/// autostart of the current release only (a release without a kiosk takes it away).
#[test]
fn kiosk_autostart_follows_the_current_release() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("bundles");
    let b1 = bundle(&out, "rpi4", "1-desktop");
    let cage_boards = boards_with(&dir.path().join("cage"), "rpi4", cage);
    let b2 = bundle_from(&cage_boards, &out, "rpi4", "2-cage");
    let off_boards = boards_with(&dir.path().join("off"), "rpi4", kiosk_off);
    let b3 = bundle_from(&off_boards, &out, "rpi4", "3-off");
    let unpacked = dir.path().join("unpacked");
    fs::create_dir(&unpacked).expect("mkdir");
    let rust = dir.path().join("rust");
    let shell = dir.path().join("shell");
    fs::create_dir(&rust).expect("mkdir");
    fs::create_dir(&shell).expect("mkdir");
    let sh = |args: &[&str]| {
        let out = Command::new("sh").args(args).output().expect("sh runs");
        assert!(
            out.status.success(),
            "sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let install = |b: &Path| {
        let u = untar(b, &unpacked);
        sh(&[s(&u.join("install.sh")), "--root", s(&shell)]);
        flash(b, &rust);
        assert_eq!(
            tree(&shell),
            tree(&rust),
            "after installing {}",
            b.display()
        );
    };
    let roll_back = || {
        let installed = shell.join(BASE).join("current/install.sh");
        sh(&[s(&installed), "--rollback", "--root", s(&shell)]);
        rollback(&rust);
        assert_eq!(tree(&shell), tree(&rust), "after a rollback");
    };

    install(&b1);
    assert_eq!(autostart(&rust), Autostart::Desktop);
    assert_eq!(exec_start(&rust)[1], "kiosk");

    install(&b2);
    assert_eq!(autostart(&rust), Autostart::Cage);
    let unit = fs::read_to_string(rust.join(CAGE_UNIT)).expect("cage unit");
    assert!(unit.contains("\nExecStart=/usr/bin/cage -- /opt/hydranet/current/kiosk/browser.sh\n"));
    assert!(unit.contains("release 2-cage:"), "{unit}");
    assert_eq!(mode(&rust.join(CAGE_UNIT)), 0o644);
    assert!(rust.join(BASE).join("current/kiosk/browser.sh").is_file());

    install(&b3);
    assert_eq!(autostart(&rust), Autostart::None);
    assert_eq!(exec_start(&rust)[1], "run");
    assert!(!rust.join(BASE).join("current/kiosk").exists());

    // Back to the cage release (its install.sh is not the one rolling back: 3's is).
    roll_back();
    assert_eq!(link(&rust.join(BASE).join("current")), "releases/2-cage");
    assert_eq!(autostart(&rust), Autostart::Cage);
    assert_eq!(exec_start(&rust)[1], "kiosk");
    roll_back();
    assert_eq!(autostart(&rust), Autostart::None);

    // Desktop again over none, then a rollback from desktop to none.
    install(&b1);
    assert_eq!(autostart(&rust), Autostart::Desktop);
    assert_eq!(
        desktop_exec(&rust),
        "/opt/hydranet/current/kiosk/browser.sh"
    );
    roll_back();
    assert_eq!(autostart(&rust), Autostart::None);

    // Nothing outside the declared files: the only paths outside the prefix are the units,
    // their wants links, the autostart entry and the Mender update module, plus their
    // folders.
    let declared = [
        UNIT,
        WANTS,
        DESKTOP,
        CAGE_UNIT,
        CAGE_WANTS,
        "usr/share/mender/modules/v3/hydranet-release",
    ];
    for k in tree(&rust).keys() {
        let inside = k.starts_with(BASE)
            || declared.contains(&k.as_str())
            || declared.iter().any(|d| d.starts_with(&format!("{k}/")))
            || BASE.starts_with(&format!("{k}/"));
        assert!(inside, "{k} is not a declared path");
    }
    let t = tree(&rust);
    assert!(t.keys().all(|k| !k.ends_with(".new")), "{:?}", t.keys());
}

#[test]
fn upgrade_keeps_previous_and_rollback_swaps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b1 = bundle(dir.path(), "rpi4", "1");
    let b2 = bundle(dir.path(), "rpi4", "2");
    let root = dir.path().join("rootfs");
    fs::create_dir(&root).expect("rootfs");
    let base = root.join(BASE);

    // No previous yet: rollback refuses and changes nothing.
    flash(&b1, &root);
    let before = tree(&root);
    let err = fails(&[
        "flash",
        "--board",
        "rpi4",
        "--rootfs",
        s(&root),
        "--rollback",
    ]);
    assert!(err.contains("no previous install"), "{err}");
    assert_eq!(tree(&root), before);

    let out = flash(&b2, &root);
    assert!(out.contains("previous: 1"), "{out}");
    assert_eq!(link(&base.join("current")), "releases/2");
    assert_eq!(link(&base.join("previous")), "releases/1");
    assert!(base.join("releases/1/bin/edge-runtime").is_file());
    let unit = fs::read_to_string(root.join(UNIT)).expect("unit");
    assert!(unit.contains("release 2:"), "{unit}");

    // Flashing the current bundle again is a no-op: previous stays.
    let before = tree(&root);
    flash(&b2, &root);
    assert_eq!(tree(&root), before);

    let out = rollback(&root);
    assert!(out.contains("current 1, previous 2"), "{out}");
    assert_eq!(link(&base.join("current")), "releases/1");
    assert_eq!(link(&base.join("previous")), "releases/2");
    let unit = fs::read_to_string(root.join(UNIT)).expect("unit");
    assert!(unit.contains("release 1:"), "{unit}");

    rollback(&root);
    assert_eq!(link(&base.join("current")), "releases/2");
    assert_eq!(link(&base.join("previous")), "releases/1");

    // A rollback for another board's profile is refused.
    let err = fails(&[
        "flash",
        "--board",
        "rpi5",
        "--rootfs",
        s(&root),
        "--rollback",
    ]);
    assert!(err.contains("`rpi4`") && err.contains("`rpi5`"), "{err}");
    assert_eq!(link(&base.join("current")), "releases/2");

    // No temporary names left behind.
    let t = tree(&root);
    assert!(
        t.keys()
            .all(|k| !k.ends_with(".new") && !k.ends_with(".partial")),
        "{:?}",
        t.keys()
    );
}

/// install.sh on the board and `flash --rootfs` here must leave the same tree, step by step.
#[test]
fn install_sh_agrees_with_rust_flash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b1 = bundle(dir.path(), "rpi4", "1");
    let b2 = bundle(dir.path(), "rpi4", "2+gabc");
    let unpacked = dir.path().join("unpacked");
    fs::create_dir(&unpacked).expect("mkdir");
    let u1 = untar(&b1, &unpacked);
    let u2 = untar(&b2, &unpacked);
    let rust = dir.path().join("rust");
    let shell = dir.path().join("shell");
    fs::create_dir(&rust).expect("mkdir");
    fs::create_dir(&shell).expect("mkdir");

    let sh = |args: &[&str]| {
        let out = Command::new("sh").args(args).output().expect("sh runs");
        assert!(
            out.status.success(),
            "sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let install = |u: &Path| {
        let script = u.join("install.sh");
        sh(&[s(&script), "--root", s(&shell)])
    };

    let out = install(&u1);
    assert!(out.contains("systemd not touched"), "{out}");
    flash(&b1, &rust);
    assert_eq!(tree(&shell), tree(&rust), "after installing 1");

    install(&u2);
    flash(&b2, &rust);
    assert_eq!(tree(&shell), tree(&rust), "after installing 2");

    // Same bundle again.
    install(&u2);
    flash(&b2, &rust);
    assert_eq!(tree(&shell), tree(&rust), "after installing 2 again");

    // The installed release's own script rolls back, as on the board.
    let installed = shell.join(BASE).join("current/install.sh");
    sh(&[s(&installed), "--rollback", "--root", s(&shell)]);
    rollback(&rust);
    assert_eq!(tree(&shell), tree(&rust), "after rollback");
    assert_eq!(link(&shell.join(BASE).join("current")), "releases/1");

    // Back to 2 by installing it again (it is `previous` now).
    install(&u2);
    flash(&b2, &rust);
    assert_eq!(tree(&shell), tree(&rust), "after reinstalling 2");
    assert_eq!(link(&rust.join(BASE).join("previous")), "releases/1");

    // And install.sh refuses a rollback with nothing to go back to.
    let fresh = dir.path().join("fresh");
    fs::create_dir(&fresh).expect("mkdir");
    let out = Command::new("sh")
        .args([s(&u1.join("install.sh")), "--rollback", "--root", s(&fresh)])
        .output()
        .expect("sh runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no current install"));
}

#[test]
fn install_sh_is_clean_posix_sh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = bundle(dir.path(), "rpi4", "1");
    let u = untar(&b, dir.path());
    // The kiosk's browser.sh too, with the token part switched on.
    let boards = boards_with(&dir.path().join("boards"), "rpi5", |t| {
        cage(t).replace("enabled = true", "enabled = true\ntoken_env = true")
    });
    let b5 = bundle_from(&boards, dir.path(), "rpi5", "1");
    let u5 = untar(&b5, dir.path());
    for script in [
        u.join("install.sh"),
        u.join("kiosk/browser.sh"),
        u5.join("kiosk/browser.sh"),
    ] {
        let status = Command::new("sh")
            .args(["-n", s(&script)])
            .status()
            .expect("sh");
        assert!(status.success(), "{}", script.display());
        // shellcheck is optional on a developer machine; when present it must be quiet.
        match Command::new("shellcheck")
            .args(["--shell=sh", s(&script)])
            .output()
        {
            Ok(out) => assert!(
                out.status.success(),
                "{}: {}",
                script.display(),
                String::from_utf8_lossy(&out.stdout)
            ),
            Err(e) => eprintln!("shellcheck not run: {e}"),
        }
    }
}

/// One installed release, then each kind of refusal; after each the tree is unchanged.
#[test]
fn refusals_leave_the_installed_release_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b1 = bundle(dir.path(), "rpi4", "1");
    let b2 = bundle(dir.path(), "rpi4", "2");
    let other = bundle(dir.path(), "rpi5", "9");
    let root = dir.path().join("rootfs");
    fs::create_dir(&root).expect("rootfs");
    flash(&b1, &root);
    let installed = tree(&root);
    let check = |what: &str| assert_eq!(tree(&root), installed, "changed by: {what}");

    // A missing bundle is named.
    let missing = dir.path().join("no-such-bundle.tar.gz");
    let err = fails(&[
        "flash",
        "--board",
        "rpi4",
        "--bundle",
        s(&missing),
        "--rootfs",
        s(&root),
    ]);
    assert!(
        err.contains(s(&missing)) && err.contains("does not exist"),
        "{err}"
    );
    check("missing bundle");

    // A bundle for another board names both boards.
    let err = fails(&[
        "flash",
        "--board",
        "rpi4",
        "--bundle",
        s(&other),
        "--rootfs",
        s(&root),
    ]);
    assert!(
        err.contains("`rpi5`") && err.contains("`rpi4`") && err.contains(s(&other)),
        "{err}"
    );
    check("wrong board");

    // A corrupted bundle (not gzip), and one whose binary does not match the manifest.
    let junk = dir.path().join("junk.tar.gz");
    fs::write(&junk, b"not a tarball").expect("write");
    let err = fails(&[
        "flash",
        "--board",
        "rpi4",
        "--bundle",
        s(&junk),
        "--rootfs",
        s(&root),
    ]);
    assert!(err.contains(s(&junk)), "{err}");
    let tampered = tamper(&b2, dir.path());
    let err = fails(&[
        "flash",
        "--board",
        "rpi4",
        "--bundle",
        s(&tampered),
        "--rootfs",
        s(&root),
    ]);
    assert!(err.contains("does not match its sha256"), "{err}");
    check("bad bundles");

    // Another build under the version that is current (here: another creation time) is
    // refused, by flash and by install.sh alike.
    let rebuilt_dir = dir.path().join("rebuilt");
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "bundle",
            "--board",
            "rpi4",
            "--skip-arch-check",
            "--version",
            "1",
        ])
        .args([
            "--model",
            s(&model()),
            "--binary",
            s(&binary()),
            "--out",
            s(&rebuilt_dir),
        ])
        .env("SOURCE_DATE_EPOCH", "1800000000")
        .output()
        .expect("xtask");
    assert!(out.status.success());
    let rebuilt = rebuilt_dir.join("hydranet-edge-rpi4-1.tar.gz");
    let err = fails(&[
        "flash",
        "--board",
        "rpi4",
        "--bundle",
        s(&rebuilt),
        "--rootfs",
        s(&root),
    ]);
    assert!(err.contains("is the current install and differs"), "{err}");
    let unpacked = untar(&rebuilt, &rebuilt_dir);
    let out = Command::new("sh")
        .args([s(&unpacked.join("install.sh")), "--root", s(&root)])
        .output()
        .expect("sh");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is the current install and differs"));
    check("another build of the current version");

    // A rootfs that is not a directory (a path below a regular file) ...
    let file = dir.path().join("a-file");
    fs::write(&file, b"x").expect("write");
    let below = file.join("rootfs");
    let err = fails(&[
        "flash",
        "--board",
        "rpi4",
        "--bundle",
        s(&b2),
        "--rootfs",
        s(&below),
    ]);
    assert!(
        err.contains(s(&below)) && err.contains("not an existing directory"),
        "{err}"
    );
    let err = fails(&[
        "flash",
        "--board",
        "rpi4",
        "--bundle",
        s(&b2),
        "--rootfs",
        s(&file),
    ]);
    assert!(err.contains("is not a directory"), "{err}");
    // ... and one nobody can write to, root included: /proc takes no new files.
    let err = fails(&[
        "flash",
        "--board",
        "rpi4",
        "--bundle",
        s(&b2),
        "--rootfs",
        "/proc",
    ]);
    assert!(
        err.contains("rootfs /proc") && err.contains("not writable"),
        "{err}"
    );
    check("bad rootfs");

    // An unreachable board: a port on this machine nothing listens on.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let port = port.to_string();
    let err = fails(&[
        "flash",
        "--board",
        "rpi4",
        "--bundle",
        s(&b2),
        "--ssh",
        "root@127.0.0.1",
        "--ssh-port",
        &port,
    ]);
    assert!(
        err.contains("cannot reach root@127.0.0.1") && err.contains(&port),
        "{err}"
    );
    let err = fails(&[
        "flash",
        "--board",
        "rpi4",
        "--rollback",
        "--ssh",
        "root@127.0.0.1",
        "--ssh-port",
        &port,
    ]);
    assert!(err.contains("cannot reach root@127.0.0.1"), "{err}");

    // Command-line mistakes.
    let err = fails(&["flash", "--board", "rpi4", "--bundle", s(&b2)]);
    assert!(err.contains("--rootfs") && err.contains("--ssh"), "{err}");
    let err = fails(&[
        "flash",
        "--board",
        "rpi4",
        "--rollback",
        "--bundle",
        s(&b2),
        "--rootfs",
        s(&root),
    ]);
    assert!(err.contains("cannot be used with"), "{err}");
    check("ssh and usage errors");
}

/// A failure after the new release is staged, before anything is switched: current,
/// previous and the unit stay as they were.
#[test]
fn failure_midway_keeps_the_running_release() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b1 = bundle(dir.path(), "rpi4", "1");
    let b2 = bundle(dir.path(), "rpi4", "2");
    let b3 = bundle(dir.path(), "rpi4", "3");
    let root = dir.path().join("rootfs");
    fs::create_dir(&root).expect("rootfs");
    flash(&b1, &root);
    flash(&b2, &root);
    let before = tree(&root);

    // Blocks the temporary name the new unit is written to (the step after staging).
    let blocker = root.join("etc/systemd/system/.hydranet-edge.service.new");
    fs::create_dir_all(blocker.join("x")).expect("blocker");
    let err = fails(&[
        "flash",
        "--board",
        "rpi4",
        "--bundle",
        s(&b3),
        "--rootfs",
        s(&root),
    ]);
    assert!(err.contains(".hydranet-edge.service.new"), "{err}");
    fs::remove_dir_all(&blocker).expect("unblock");

    let mut after = tree(&root);
    // The staged release may stay (it is complete, and nothing points to it) ...
    after.retain(|k, _| !k.starts_with("opt/hydranet/releases/3"));
    // ... and everything else is exactly as before.
    assert_eq!(after, before);
    assert_eq!(link(&root.join(BASE).join("current")), "releases/2");
    assert_eq!(link(&root.join(BASE).join("previous")), "releases/1");

    // The same when the kiosk's autostart entry cannot be staged (after the unit was):
    // only staged files are new.
    let blocker = root.join("etc/xdg/autostart/.hydranet-kiosk.desktop.new");
    fs::create_dir_all(blocker.join("x")).expect("blocker");
    let err = fails(&[
        "flash",
        "--board",
        "rpi4",
        "--bundle",
        s(&b3),
        "--rootfs",
        s(&root),
    ]);
    assert!(err.contains(".hydranet-kiosk.desktop.new"), "{err}");
    fs::remove_dir_all(&blocker).expect("unblock");
    let mut after = tree(&root);
    after.retain(|k, _| {
        !k.starts_with("opt/hydranet/releases/3") && !k.ends_with("/.hydranet-edge.service.new")
    });
    assert_eq!(after, before);

    // Once the obstacle is gone the same flash goes through.
    flash(&b3, &root);
    assert_eq!(link(&root.join(BASE).join("current")), "releases/3");
    assert_eq!(link(&root.join(BASE).join("previous")), "releases/2");
    assert!(fs::read_to_string(root.join(DESKTOP))
        .expect("desktop")
        .contains("release 3:"));
}

/// A copy of `bundle` whose binary differs from what the manifest says.
fn tamper(bundle: &Path, dir: &Path) -> std::path::PathBuf {
    let work = dir.join("tamper");
    fs::create_dir_all(&work).expect("mkdir");
    let top = untar(bundle, &work);
    fs::write(top.join("bin/edge-runtime"), b"#!/bin/sh\necho evil\n").expect("write");
    let name = top.file_name().expect("name").to_owned();
    let out = dir.join("tampered.tar.gz");
    let status = Command::new("tar")
        .arg("czf")
        .arg(&out)
        .arg("-C")
        .arg(&work)
        .arg(&name)
        .status()
        .expect("tar");
    assert!(status.success());
    out
}

/// The --ssh path end to end, with `ssh` and `scp` replaced by scripts that run the remote
/// command on this machine (no sshd needed) and install.sh told `--root` a temporary folder.
#[test]
fn ssh_install_and_rollback_through_a_stand_in_ssh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = dir.path().join("fakebin");
    fs::create_dir(&fake).expect("mkdir");
    let log = dir.path().join("ssh.log");
    fs::write(
        fake.join("ssh"),
        "#!/bin/sh\n\
         # Stands in for ssh: skips the options, logs the destination, runs the command here.\n\
         while [ $# -gt 0 ]; do case $1 in -o|-p) shift 2 ;; *) break ;; esac; done\n\
         echo \"ssh $1\" >>\"$FAKE_SSH_LOG\"\n\
         shift\n\
         exec sh -c \"$*\"\n",
    )
    .expect("write");
    fs::write(
        fake.join("scp"),
        "#!/bin/sh\n\
         while [ $# -gt 2 ]; do shift; done\n\
         echo \"scp $1 $2\" >>\"$FAKE_SSH_LOG\"\n\
         cp \"$1\" \"${2#*:}\"\n",
    )
    .expect("write");
    for f in ["ssh", "scp"] {
        fs::set_permissions(fake.join(f), fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let path = format!(
        "{}:{}",
        fake.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Unique names: the stand-in really uses this machine's /tmp.
    let v1 = format!("ssh-{}-1", std::process::id());
    let v2 = format!("ssh-{}-2", std::process::id());
    let b1 = bundle(dir.path(), "rpi4", &v1);
    let b2 = bundle(dir.path(), "rpi4", &v2);
    let board = dir.path().join("board root");
    fs::create_dir(&board).expect("mkdir");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "flash",
            "--board",
            "rpi4",
            "--ssh",
            "pi@board",
            "--ssh-port",
            "2222",
            "--remote-root",
            s(&board),
        ];
        args.extend_from_slice(extra);
        let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(&args)
            .env("PATH", &path)
            .env("FAKE_SSH_LOG", &log)
            .output()
            .expect("xtask");
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    let out = run(&["--bundle", s(&b1)]);
    assert!(out.contains(&format!("installed {v1} (rpi4)")), "{out}");
    run(&["--bundle", s(&b2)]);
    let base = board.join(BASE);
    assert_eq!(link(&base.join("current")), format!("releases/{v2}"));
    assert_eq!(link(&base.join("previous")), format!("releases/{v1}"));
    run(&["--rollback"]);
    assert_eq!(link(&base.join("current")), format!("releases/{v1}"));

    // The same tree as a local rootfs flash of the same steps.
    let rust = dir.path().join("rust");
    fs::create_dir(&rust).expect("mkdir");
    flash(&b1, &rust);
    flash(&b2, &rust);
    rollback(&rust);
    assert_eq!(tree(&board), tree(&rust));

    let log = fs::read_to_string(&log).expect("log");
    assert!(log.lines().all(|l| l.contains("pi@board")), "{log}");
    assert!(log.contains(&format!(
        "scp {} pi@board:/tmp/hydranet-edge-rpi4-{v1}.tar.gz",
        b1.display()
    )));
    // The remote side cleans up after itself.
    assert!(!Path::new(&format!("/tmp/hydranet-edge-rpi4-{v1}.tar.gz")).exists());
    assert!(!Path::new(&format!("/tmp/hydranet-edge-rpi4-{v1}")).exists());
}
