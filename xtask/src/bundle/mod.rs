//! Release bundles: `hydranet-edge-<board>-<version>.tar.gz` holding one folder with the
//! binary, the model, the systemd unit, install.sh and manifest.json, and with the kiosk on,
//! the browser autostart under `kiosk/` (see kiosk.rs).
//!
//! - this file: the release layout and [`create`], which gathers and checks the parts;
//! - `manifest`: manifest.json and release versions;
//! - `unit`: the systemd unit; `install`: install.sh;
//! - `mender`: the Mender update module every release carries, and `.mender` artifacts;
//! - `archive`: writing the tarball and reading one back ([`Bundle`]).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::board::{Board, KioskDisplay, Libc};
use crate::error::{io_err, Error, Result};
use crate::kiosk;
use crate::onnx;
use crate::util::rfc3339_utc;

mod archive;
mod install;
mod manifest;
pub mod mender;
mod unit;

pub use archive::Bundle;
pub use install::render_install_sh;
pub use manifest::{
    check_version, default_version, sanitize_version, FileDigest, Manifest, ManifestDetector,
    ManifestInstall, ManifestKiosk,
};
pub use unit::{exec_start, render_unit};

/// Bumped when the layout or the manifest changes incompatibly; flash refuses others.
pub const FORMAT: u32 = 1;
pub const BIN: &str = "bin/edge-runtime";
pub const MODEL: &str = "model/model.onnx";
/// The face detector a release ships, and its licence, beside the model (edge-runtime
/// finds it there by itself).
pub const DETECTOR: &str = "model/face_detector.onnx";
pub const DETECTOR_LICENCE: &str = "model/face_detector.LICENSE";
pub const INSTALL_SH: &str = "install.sh";
/// The Mender update module (`mender.rs`), in every release: install.sh puts it where the
/// board's Mender client looks for it, so that the next release can come over the air.
pub const UPDATE_MODULE: &str = "mender/hydranet-release";
pub const MANIFEST: &str = "manifest.json";
const BASE_DIRS: [&str; 4] = ["bin", "model", "systemd", "mender"];

const EM_AARCH64: u16 = 183;

pub fn unit_file(service: &str) -> String {
    format!("systemd/{service}.service")
}

/// Every file of a release and its mode, the same in the tarball and once installed.
/// `kiosk` is the manifest's kiosk display (`None`: no kiosk); `detector`, whether it
/// ships the face detector.
pub fn release_files(
    service: &str,
    kiosk: Option<KioskDisplay>,
    detector: bool,
) -> Vec<(String, u32)> {
    let mut files = vec![
        (BIN.into(), 0o755),
        (MODEL.into(), 0o644),
        (unit_file(service), 0o644),
        (INSTALL_SH.into(), 0o755),
        (MANIFEST.into(), 0o644),
        (UPDATE_MODULE.into(), 0o755),
    ];
    if detector {
        files.push((DETECTOR.into(), 0o644));
        files.push((DETECTOR_LICENCE.into(), 0o644));
    }
    files.extend(kiosk::release_files(kiosk));
    files
}

/// The folders of a release (all 0755).
pub fn release_dirs(kiosk: Option<KioskDisplay>) -> Vec<&'static str> {
    let mut dirs = BASE_DIRS.to_vec();
    if kiosk.is_some() {
        dirs.push(kiosk::DIR);
    }
    dirs
}

pub fn top_folder(board: &str, version: &str) -> String {
    format!("hydranet-edge-{board}-{version}")
}

pub struct BundleSpec<'a> {
    pub board: &'a Board,
    pub libc: Libc,
    pub binary: &'a Path,
    pub model: &'a Path,
    /// The face detector (BlazeFace ONNX) and its licence file.
    pub detector: Option<(&'a Path, &'a Path)>,
    pub out_dir: &'a Path,
    pub version: &'a str,
    pub created_unix: u64,
    /// Lets a non-aarch64 executable through (tests bundle a host binary).
    pub skip_arch_check: bool,
}

pub struct Created {
    pub tarball: PathBuf,
    pub tarball_bytes: u64,
    pub manifest: Manifest,
}

pub fn create(spec: &BundleSpec<'_>) -> Result<Created> {
    let board = spec.board;
    board.check_libc(spec.libc).map_err(Error::Usage)?;
    let version = sanitize_version(spec.version)?;

    let binary = fs::read(spec.binary).map_err(io_err("reading binary", spec.binary))?;
    check_binary(&binary, spec.skip_arch_check).map_err(|reason| Error::Binary {
        path: spec.binary.to_owned(),
        reason,
    })?;
    let model = fs::read(spec.model).map_err(io_err("reading model", spec.model))?;
    onnx::check_model(&model).map_err(|reason| Error::Model {
        path: spec.model.to_owned(),
        reason,
    })?;

    let detector = match spec.detector {
        None => None,
        Some((file, licence)) => {
            let data = fs::read(file).map_err(io_err("reading detector", file))?;
            onnx::check_onnx(&data).map_err(|reason| Error::Model {
                path: file.to_owned(),
                reason,
            })?;
            let text = fs::read(licence).map_err(io_err("reading detector licence", licence))?;
            if text.is_empty() {
                return Err(Error::Model {
                    path: licence.to_owned(),
                    reason: "the detector's licence file is empty".into(),
                });
            }
            Some((data, text))
        }
    };
    let manifest = Manifest {
        format: FORMAT,
        board: board.name.clone(),
        version: version.clone(),
        target: board.target(spec.libc).into(),
        libc: spec.libc,
        target_cpu: board.target_cpu.clone(),
        created: rfc3339_utc(spec.created_unix),
        install: ManifestInstall {
            prefix: board.install.prefix.clone(),
            service: board.install.service.clone(),
        },
        binary: FileDigest::of(BIN, &binary),
        model: FileDigest::of(MODEL, &model),
        kiosk: board.kiosk.enabled.then(|| ManifestKiosk {
            listen: board.kiosk.listen_addr().to_string(),
            display: board.kiosk.display,
            browser: board.kiosk.browser.clone(),
            user: match board.kiosk.display {
                KioskDisplay::Cage => board.kiosk.user.clone(),
                KioskDisplay::Desktop => None,
            },
            token_env: board.kiosk.token_env,
        }),
        detector: detector.as_ref().map(|(d, l)| ManifestDetector {
            model: FileDigest::of(DETECTOR, d),
            licence: FileDigest::of(DETECTOR_LICENCE, l),
        }),
    };
    let display = manifest.kiosk_display();
    let mut manifest_json =
        serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Usage(e.to_string()))?;
    manifest_json.push(b'\n');
    let unit = render_unit(board, &version, detector.is_some());
    let install_sh = render_install_sh(&manifest);

    let service = &board.install.service;
    let mut contents: BTreeMap<String, Vec<u8>> = [
        (BIN.to_owned(), binary),
        (MODEL.to_owned(), model),
        (unit_file(service), unit.into_bytes()),
        (INSTALL_SH.to_owned(), install_sh.into_bytes()),
        (MANIFEST.to_owned(), manifest_json),
        (
            UPDATE_MODULE.to_owned(),
            mender::UPDATE_MODULE_SH.as_bytes().to_vec(),
        ),
    ]
    .into();
    if let Some((d, l)) = detector {
        contents.insert(DETECTOR.to_owned(), d);
        contents.insert(DETECTOR_LICENCE.to_owned(), l);
    }
    if let Some(display) = display {
        contents.insert(
            kiosk::BROWSER_SH.into(),
            kiosk::render_browser_sh(board, &version).into_bytes(),
        );
        let (path, text) = match display {
            KioskDisplay::Desktop => (
                kiosk::DESKTOP_FILE,
                kiosk::render_desktop_entry(board, &version),
            ),
            KioskDisplay::Cage => (
                kiosk::UNIT_FILE,
                kiosk::render_browser_unit(board, &version),
            ),
        };
        contents.insert(path.into(), text.into_bytes());
    }

    fs::create_dir_all(spec.out_dir).map_err(io_err("creating", spec.out_dir))?;
    let top = top_folder(&board.name, &version);
    let tarball = spec.out_dir.join(format!("{top}.tar.gz"));
    archive::write_tarball(
        &tarball,
        &top,
        service,
        display,
        &contents,
        spec.created_unix,
    )?;
    let tarball_bytes = fs::metadata(&tarball)
        .map_err(io_err("reading", &tarball))?
        .len();
    Ok(Created {
        tarball,
        tarball_bytes,
        manifest,
    })
}

/// Refuses an empty file, and anything but an aarch64 ELF unless `skip_arch_check`.
fn check_binary(data: &[u8], skip_arch_check: bool) -> Result<(), String> {
    if data.is_empty() {
        return Err("is empty".into());
    }
    if skip_arch_check {
        return Ok(());
    }
    match elf_machine(data) {
        Some(EM_AARCH64) => Ok(()),
        Some(m) => Err(format!(
            "is an ELF executable for machine {m}{}, not aarch64 ({EM_AARCH64}); \
             build it with `cargo xtask build --board ...` (or pass --skip-arch-check)",
            if m == 62 { " (x86-64)" } else { "" }
        )),
        None => Err("is not an ELF executable".into()),
    }
}

/// `e_machine` of a 64-bit little-endian ELF file.
fn elf_machine(data: &[u8]) -> Option<u16> {
    if data.len() < 20 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
        return None;
    }
    Some(u16::from_le_bytes([data[18], data[19]]))
}

/// Writes `data` to `path` with `mode` and flushes it to disk: a board may lose power right
/// after a flash.
pub(crate) fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut f = File::create(path).map_err(io_err("creating", path))?;
    f.write_all(data).map_err(io_err("writing", path))?;
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_err("setting the mode of", path))?;
    f.sync_all().map_err(io_err("writing", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::CameraPath;

    fn board(name: &str) -> Board {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../boards");
        Board::find(&dir, name).expect("board")
    }

    #[test]
    fn versions_are_sanitized() {
        assert_eq!(
            sanitize_version("0.1.0+g823cbb8").expect("ok"),
            "0.1.0+g823cbb8"
        );
        assert_eq!(sanitize_version("v1.2 beta/3").expect("ok"), "v1.2-beta-3");
        assert_eq!(sanitize_version("../../etc").expect("ok"), "etc");
        assert!(sanitize_version("///").is_err());
        assert!(sanitize_version("1.0.partial").is_err());
        assert!(check_version("../x").is_err());
    }

    #[test]
    fn default_version_has_the_workspace_version() {
        let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let v = default_version(&ws);
        assert!(v.starts_with(env!("CARGO_PKG_VERSION")), "{v}");
        assert_eq!(sanitize_version(&v).expect("valid"), v);
    }

    /// The hardening and supervision every unit has, kiosk or not.
    const COMMON: [&str; 12] = [
        "Type=notify",
        "Restart=on-failure",
        "RestartSec=2",
        "WatchdogSec=10",
        "DynamicUser=yes",
        "SupplementaryGroups=video",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "DeviceAllow=char-video4linux rw",
        "WantedBy=multi-user.target",
    ];

    fn has_lines(unit: &str, want: &[&str]) {
        let lines: Vec<&str> = unit.lines().collect();
        for w in want {
            assert!(lines.contains(w), "missing `{w}` in\n{unit}");
        }
    }

    #[test]
    fn unit_for_rpi4_runs_the_kiosk() {
        let unit = render_unit(&board("rpi4"), "1.0", false);
        has_lines(&unit, &COMMON);
        has_lines(
            &unit,
            &[
                "Description=HydraNet edge kiosk on 127.0.0.1:8080 (rpi4)",
                "After=local-fs.target",
                "ExecStart=/opt/hydranet/current/bin/edge-runtime kiosk --model \
                 /opt/hydranet/current/model/model.onnx --source v4l:/dev/video0 \
                 --camera-format yuyv --width 640 --height 480 --fps 30 \
                 --listen 127.0.0.1:8080",
            ],
        );
        assert_eq!(unit.matches("ExecStart=").count(), 1);
        assert!(!unit.contains("libcamerify"));
        assert!(!unit.contains("EnvironmentFile") && !unit.contains("--token"));
        assert!(!unit.contains("network-online"));
    }

    #[test]
    fn kiosk_off_runs_run() {
        let mut b = board("rpi4");
        b.kiosk.enabled = false;
        let unit = render_unit(&b, "1.0", false);
        has_lines(&unit, &COMMON);
        has_lines(
            &unit,
            &[
                "Description=HydraNet edge runtime (rpi4)",
                "ExecStart=/opt/hydranet/current/bin/edge-runtime run --model \
                 /opt/hydranet/current/model/model.onnx --source v4l:/dev/video0 \
                 --camera-format yuyv --width 640 --height 480 --fps 30",
            ],
        );
        assert!(!unit.contains("--listen") && !unit.contains("kiosk"));
    }

    #[test]
    fn kiosk_token_comes_from_the_environment_file() {
        let mut b = board("jetson-orin-nano");
        b.kiosk.listen = "0.0.0.0:8080".into();
        b.kiosk.token_env = true;
        let unit = render_unit(&b, "1.0", false);
        has_lines(&unit, &COMMON);
        has_lines(&unit, &["EnvironmentFile=-/etc/hydranet/kiosk.env"]);
        let exec = unit
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .expect("ExecStart");
        assert!(exec.contains(" kiosk ") && exec.ends_with(" --listen 0.0.0.0:8080"));
        assert!(!exec.contains("token") && !exec.contains("TOKEN"), "{exec}");
        // Every address: nothing to wait for. One interface's address: wait for the network.
        assert!(!unit.contains("network-online"));
        b.kiosk.listen = "192.168.1.20:8080".into();
        let unit = render_unit(&b, "1.0", false);
        has_lines(
            &unit,
            &["Wants=network-online.target", "After=network-online.target"],
        );
    }

    #[test]
    fn libcamerify_wraps_the_runtime() {
        let mut b = board("rpi5");
        b.camera.path = CameraPath::Libcamerify;
        let unit = render_unit(&b, "1.0", false);
        assert!(unit.contains(
            "ExecStart=/usr/bin/libcamerify /opt/hydranet/current/bin/edge-runtime kiosk"
        ));
        assert!(unit.contains("DeviceAllow=char-media rw"));
    }

    #[test]
    fn elf_checks() {
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[18..20].copy_from_slice(&EM_AARCH64.to_le_bytes());
        assert!(check_binary(&elf, false).is_ok());
        elf[18..20].copy_from_slice(&62u16.to_le_bytes());
        assert!(check_binary(&elf, false).unwrap_err().contains("x86-64"));
        assert!(check_binary(&elf, true).is_ok());
        assert!(check_binary(b"#!/bin/sh\n", false)
            .unwrap_err()
            .contains("not an ELF"));
        assert_eq!(check_binary(b"", true).unwrap_err(), "is empty");
    }

    #[test]
    fn install_sh_has_no_placeholders_left() {
        let m = Manifest {
            format: FORMAT,
            board: "rpi4".into(),
            version: "1.0".into(),
            target: "aarch64-unknown-linux-musl".into(),
            libc: Libc::Musl,
            target_cpu: "cortex-a72".into(),
            created: rfc3339_utc(0),
            install: ManifestInstall {
                prefix: "/opt/hydranet".into(),
                service: "hydranet-edge".into(),
            },
            binary: FileDigest::of(BIN, b"b"),
            model: FileDigest::of(MODEL, b"m"),
            kiosk: None,
            detector: None,
        };
        let sh = render_install_sh(&m);
        for p in [
            "@BOARD@",
            "@VERSION@",
            "@PREFIX@",
            "@SERVICE@",
            "@BIN_SHA256@",
            "@MODEL",
            "@AUTOSTART",
            "@KIOSK",
        ] {
            assert!(!sh.contains(p), "{p} left in\n{sh}");
        }
        assert!(sh.starts_with("#!/bin/sh\n"));
        assert!(sh.contains("VERSION='1.0'"));
    }
}
