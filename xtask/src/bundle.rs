//! Release bundles: `hydranet-edge-<board>-<version>.tar.gz` holding one folder with the
//! binary, the model, the systemd unit, install.sh and manifest.json, and with the kiosk on,
//! the browser autostart under `kiosk/` (see kiosk.rs).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::{Deserialize, Serialize};

use crate::board::{
    is_safe_path, is_simple_name, Board, CameraPath, KioskDisplay, Libc, DYNAMIC_USER, TOKEN_FILE,
    TOKEN_VAR,
};
use crate::error::{io_err, Error, Result};
use crate::kiosk;
use crate::onnx;
use crate::util::{rfc3339_utc, sha256_hex};

/// Bumped when the layout or the manifest changes incompatibly; flash refuses others.
pub const FORMAT: u32 = 1;
pub const BIN: &str = "bin/edge-runtime";
pub const MODEL: &str = "model/model.onnx";
pub const INSTALL_SH: &str = "install.sh";
pub const MANIFEST: &str = "manifest.json";
const BASE_DIRS: [&str; 3] = ["bin", "model", "systemd"];

const EM_AARCH64: u16 = 183;

pub fn unit_file(service: &str) -> String {
    format!("systemd/{service}.service")
}

/// Every file of a release and its mode, the same in the tarball and once installed.
/// `kiosk` is the manifest's kiosk display (`None`: no kiosk).
pub fn release_files(service: &str, kiosk: Option<KioskDisplay>) -> Vec<(String, u32)> {
    let mut files = vec![
        (BIN.into(), 0o755),
        (MODEL.into(), 0o644),
        (unit_file(service), 0o644),
        (INSTALL_SH.into(), 0o755),
        (MANIFEST.into(), 0o644),
    ];
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub board: String,
    pub version: String,
    pub target: String,
    pub libc: Libc,
    pub target_cpu: String,
    pub created: String,
    pub install: ManifestInstall,
    pub binary: FileDigest,
    pub model: FileDigest,
    /// Present when the release runs the kiosk; absent (not `null`) otherwise, so bundles
    /// without it keep the manifest they had before the kiosk existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kiosk: Option<ManifestKiosk>,
}

impl Manifest {
    /// The kiosk display of this release, `None` when it has no kiosk.
    pub fn kiosk_display(&self) -> Option<KioskDisplay> {
        self.kiosk.as_ref().map(|k| k.display)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestKiosk {
    pub listen: String,
    pub display: KioskDisplay,
    pub browser: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub token_env: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestInstall {
    pub prefix: String,
    pub service: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

impl FileDigest {
    fn of(path: &str, data: &[u8]) -> FileDigest {
        FileDigest {
            path: path.into(),
            bytes: data.len() as u64,
            sha256: sha256_hex(data),
        }
    }
}

/// Staging names (`<v>.partial`, `<v>.replaced`) live beside the releases, so a version may
/// not end like one.
const RESERVED_SUFFIXES: [&str; 2] = [".partial", ".replaced"];

/// Makes `raw` usable as a file and folder name: characters outside `[A-Za-z0-9._+-]` become
/// '-', and it must start with a letter or digit.
pub fn sanitize_version(raw: &str) -> Result<String> {
    let v: String = raw
        .chars()
        .map(|c| if is_version_char(c) { c } else { '-' })
        .collect();
    let v = v.trim_start_matches(['.', '-', '+']).to_owned();
    check_version(&v).map_err(|reason| Error::Version {
        version: raw.into(),
        reason,
    })?;
    Ok(v)
}

fn is_version_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-')
}

pub fn check_version(v: &str) -> Result<(), String> {
    if !v.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) {
        return Err("must start with a letter or digit".into());
    }
    if v.len() > 100 || !v.chars().all(is_version_char) {
        return Err("must be at most 100 characters of [A-Za-z0-9._+-]".into());
    }
    if let Some(s) = RESERVED_SUFFIXES.iter().find(|s| v.ends_with(*s)) {
        return Err(format!("may not end in `{s}` (used while installing)"));
    }
    Ok(())
}

/// `<workspace version>+g<short hash>[.dirty]`, or the bare workspace version outside git.
pub fn default_version(workspace: &Path) -> String {
    let base = env!("CARGO_PKG_VERSION");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(workspace)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short=7", "HEAD"]) {
        Some(hash) if !hash.is_empty() => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            format!("{base}+g{hash}{}", if dirty { ".dirty" } else { "" })
        }
        _ => base.into(),
    }
}

/// The unit's command line: edge-runtime `run`, or `kiosk` (the same model and camera flags,
/// plus `--listen`) when the profile's kiosk is on. The token never appears here: the unit
/// passes it in the environment (see [`render_unit`]).
pub fn exec_start(board: &Board) -> String {
    let prefix = &board.install.prefix;
    let cam = &board.camera;
    let wrapper = match cam.path {
        CameraPath::Uvc => "",
        CameraPath::Libcamerify => "/usr/bin/libcamerify ",
    };
    let (command, listen) = if board.kiosk.enabled {
        ("kiosk", format!(" --listen {}", board.kiosk.listen_addr()))
    } else {
        ("run", String::new())
    };
    format!(
        "{wrapper}{prefix}/current/bin/edge-runtime {command} --model \
         {prefix}/current/model/model.onnx --source v4l:{} --camera-format {} --width {} \
         --height {} --fps {}{listen}",
        cam.device, cam.format, cam.width, cam.height, cam.fps
    )
}

pub fn render_unit(board: &Board, version: &str) -> String {
    let mut account = String::new();
    if board.install.user == DYNAMIC_USER {
        account.push_str(
            "# No account in /etc/passwd: systemd allocates an unprivileged user for each start;\n\
             # the camera is reachable through the supplementary group(s).\n\
             DynamicUser=yes\n",
        );
    } else {
        account.push_str(&format!("User={}\n", board.install.user));
    }
    if !board.install.groups.is_empty() {
        account.push_str(&format!(
            "SupplementaryGroups={}\n",
            board.install.groups.join(" ")
        ));
    }
    let mut devices = String::from("DeviceAllow=char-video4linux rw\n");
    if board.camera.path == CameraPath::Libcamerify {
        // libcamera drives the sensor through the media controller and allocates frame
        // buffers from DMA heaps (kernel device names; not yet tried on a board).
        devices.push_str("DeviceAllow=char-media rw\nDeviceAllow=char-dma_heap rw\n");
    }
    let mut unit_description = format!("HydraNet edge runtime ({})", board.name);
    let mut after = String::from("After=local-fs.target\n");
    let mut kiosk_lines = String::new();
    let k = &board.kiosk;
    if k.enabled {
        let addr = k.listen_addr();
        unit_description = format!("HydraNet edge kiosk on {addr} ({})", board.name);
        if !addr.ip().is_loopback() && !addr.ip().is_unspecified() {
            // One address of one interface: it must be up before the kiosk can bind it.
            after.push_str("Wants=network-online.target\nAfter=network-online.target\n");
        }
        kiosk_lines.push_str(&format!(
            "# kiosk: the camera page on http://{addr}/ (/healthz, /metrics), shown full screen\n\
             # by the browser autostart in {prefix}/current/kiosk/.\n",
            prefix = board.install.prefix
        ));
        if k.token_env {
            kiosk_lines.push_str(&format!(
                "# The token is never on the command line: {TOKEN_VAR}=... in {TOKEN_FILE}\n\
                 # (root-only is fine: systemd reads it; without the file the kiosk runs open).\n\
                 EnvironmentFile=-{TOKEN_FILE}\n"
            ));
        }
    }
    format!(
        "# HydraNet edge runtime for {name}, release {version}: {description}.\n\
         # Made by `cargo xtask bundle`; installed by install.sh or `cargo xtask flash`.\n\
         [Unit]\n\
         Description={unit_description}\n\
         {after}\
         \n\
         [Service]\n\
         # edge-runtime sends READY=1 once frames flow, then WATCHDOG=1 while its loop runs:\n\
         # a hung process is killed and restarted.\n\
         Type=notify\n\
         {kiosk_lines}\
         ExecStart={exec}\n\
         Restart=on-failure\n\
         RestartSec=2\n\
         WatchdogSec=10\n\
         {account}\
         NoNewPrivileges=yes\n\
         ProtectSystem=strict\n\
         ProtectHome=yes\n\
         PrivateTmp=yes\n\
         {devices}\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        name = board.name,
        description = board.description,
        exec = exec_start(board),
    )
}

/// install.sh, with the release's identity baked in. `cargo xtask flash --rootfs` does the
/// same steps in Rust (flash.rs); a test runs both and compares the trees.
pub fn render_install_sh(m: &Manifest) -> String {
    INSTALL_SH_TEMPLATE
        .replace("@BOARD@", &m.board)
        .replace("@VERSION@", &m.version)
        .replace("@PREFIX@", &m.install.prefix)
        .replace("@SERVICE@", &m.install.service)
        .replace("@BIN_SHA256@", &m.binary.sha256)
        .replace("@MODEL_SHA256@", &m.model.sha256)
        .replace("@AUTOSTART_DIR@", kiosk::AUTOSTART_DIR)
        .replace("@KIOSK_DESKTOP@", kiosk::DESKTOP_NAME)
        .replace("@KIOSK_UNIT@", kiosk::UNIT_NAME)
        .replace("@KIOSK_WANTED_BY@", kiosk::UNIT_WANTED_BY)
}

const INSTALL_SH_TEMPLATE: &str = include_str!("install.sh.in");

pub struct BundleSpec<'a> {
    pub board: &'a Board,
    pub libc: Libc,
    pub binary: &'a Path,
    pub model: &'a Path,
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
    };
    let display = manifest.kiosk_display();
    let mut manifest_json =
        serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Usage(e.to_string()))?;
    manifest_json.push(b'\n');
    let unit = render_unit(board, &version);
    let install_sh = render_install_sh(&manifest);

    let service = &board.install.service;
    let mut contents: BTreeMap<String, Vec<u8>> = [
        (BIN.to_owned(), binary),
        (MODEL.to_owned(), model),
        (unit_file(service), unit.into_bytes()),
        (INSTALL_SH.to_owned(), install_sh.into_bytes()),
        (MANIFEST.to_owned(), manifest_json),
    ]
    .into();
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
    // Written beside the final name and renamed, so a failed run never leaves a tarball
    // that looks complete.
    let partial = spec.out_dir.join(format!(".{top}.tar.gz.partial"));
    let write = || -> io::Result<()> {
        let file = File::create(&partial)?;
        let gz = GzEncoder::new(BufWriter::new(file), Compression::default());
        let mut tar = tar::Builder::new(gz);
        let mut add = |path: String, mode: u32, data: &[u8]| -> io::Result<()> {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(if path.ends_with('/') {
                tar::EntryType::Directory
            } else {
                tar::EntryType::Regular
            });
            h.set_mode(mode);
            h.set_size(data.len() as u64);
            h.set_mtime(spec.created_unix);
            h.set_uid(0);
            h.set_gid(0);
            h.set_username("root")?;
            h.set_groupname("root")?;
            tar.append_data(&mut h, path, data)
        };
        add(format!("{top}/"), 0o755, &[])?;
        for dir in release_dirs(display) {
            add(format!("{top}/{dir}/"), 0o755, &[])?;
        }
        for (path, mode) in release_files(service, display) {
            add(format!("{top}/{path}"), mode, &contents[&path])?;
        }
        let gz = tar.into_inner()?;
        let file = gz.finish()?.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&partial);
        return Err(io_err("writing bundle", &tarball)(e));
    }
    fs::rename(&partial, &tarball).map_err(io_err("renaming into place", &tarball))?;
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

/// A bundle read back and checked: the exact file set, the manifest, the checksums.
#[derive(Debug)]
pub struct Bundle {
    pub path: PathBuf,
    pub manifest: Manifest,
    /// Release-relative path (e.g. `bin/edge-runtime`) to contents.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Bundle {
    pub fn read(path: &Path) -> Result<Bundle> {
        match fs::metadata(path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(Error::BadBundle {
                    path: path.into(),
                    reason: "is not a file".into(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::MissingBundle { path: path.into() })
            }
            Err(e) => return Err(io_err("reading bundle", path)(e)),
        }
        let bad = |reason: String| Error::BadBundle {
            path: path.into(),
            reason,
        };
        let file = File::open(path).map_err(io_err("opening bundle", path))?;
        let mut archive = tar::Archive::new(GzDecoder::new(BufReader::new(file)));
        let mut top: Option<String> = None;
        let mut dirs = Vec::new();
        let mut files = BTreeMap::new();
        let entries = archive
            .entries()
            .map_err(|e| bad(format!("not a gzip'd tar file ({e})")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| bad(format!("not a gzip'd tar file ({e})")))?;
            let name = entry
                .path()
                .map_err(|e| bad(format!("entry with an unreadable name ({e})")))?
                .into_owned();
            let mut parts = Vec::new();
            for c in name.components() {
                match c {
                    Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
                    _ => return Err(bad(format!("entry `{}` leaves its folder", name.display()))),
                }
            }
            let Some((first, rest)) = parts.split_first() else {
                continue;
            };
            match &top {
                None => top = Some(first.clone()),
                Some(t) if t == first => {}
                Some(t) => {
                    return Err(bad(format!(
                        "more than one top folder (`{t}` and `{first}`)"
                    )))
                }
            }
            let rel = rest.join("/");
            match entry.header().entry_type() {
                tar::EntryType::Directory => dirs.push(rel),
                tar::EntryType::Regular => {
                    let mut data = Vec::new();
                    entry
                        .read_to_end(&mut data)
                        .map_err(|e| bad(format!("reading `{}` ({e})", name.display())))?;
                    if files.insert(rel.clone(), data).is_some() {
                        return Err(bad(format!("`{rel}` appears twice")));
                    }
                }
                other => {
                    return Err(bad(format!(
                        "`{}` is a {other:?}; a bundle holds only files and folders",
                        name.display()
                    )))
                }
            }
        }
        let top = top.ok_or_else(|| bad("is empty".into()))?;
        let raw = files
            .get(MANIFEST)
            .ok_or_else(|| bad(format!("has no {MANIFEST}")))?;
        let manifest: Manifest = serde_json::from_slice(raw)
            .map_err(|e| bad(format!("{MANIFEST} does not parse ({e})")))?;
        if manifest.format != FORMAT {
            return Err(bad(format!(
                "manifest format {} (this xtask reads format {FORMAT})",
                manifest.format
            )));
        }
        // These end up in paths and symlinks on the board.
        check_version(&manifest.version)
            .map_err(|r| bad(format!("version `{}` {r}", manifest.version)))?;
        if !is_simple_name(&manifest.board)
            || !is_simple_name(&manifest.install.service)
            || !manifest.install.prefix.starts_with('/')
            || !is_safe_path(&manifest.install.prefix)
        {
            return Err(bad(format!(
                "manifest names board `{}`, service `{}`, prefix `{}`: not plain names",
                manifest.board, manifest.install.service, manifest.install.prefix
            )));
        }
        let want_top = top_folder(&manifest.board, &manifest.version);
        if top != want_top {
            return Err(bad(format!(
                "top folder `{top}` does not match the manifest (`{want_top}`)"
            )));
        }
        let display = manifest.kiosk_display();
        let want: Vec<String> = release_files(&manifest.install.service, display)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        let have: Vec<&String> = files.keys().collect();
        let mut want_sorted: Vec<&String> = want.iter().collect();
        want_sorted.sort();
        if have != want_sorted {
            return Err(bad(format!(
                "holds {have:?}, expected exactly {want_sorted:?}"
            )));
        }
        let allowed = release_dirs(display);
        if let Some(d) = dirs
            .iter()
            .find(|d| !d.is_empty() && !allowed.contains(&d.as_str()))
        {
            return Err(bad(format!("unexpected folder `{d}`")));
        }
        for digest in [&manifest.binary, &manifest.model] {
            let data = files
                .get(&digest.path)
                .ok_or_else(|| bad(format!("manifest names `{}`, not in it", digest.path)))?;
            if sha256_hex(data) != digest.sha256 || data.len() as u64 != digest.bytes {
                return Err(bad(format!(
                    "`{}` does not match its sha256 in {MANIFEST} (corrupt or edited)",
                    digest.path
                )));
            }
        }
        Ok(Bundle {
            path: path.into(),
            manifest,
            files,
        })
    }

    /// The tar's single top folder.
    pub fn top(&self) -> String {
        top_folder(&self.manifest.board, &self.manifest.version)
    }

    pub fn check_board(&self, board: &str) -> Result<()> {
        if self.manifest.board != board {
            return Err(Error::BoardMismatch {
                path: self.path.clone(),
                bundle_board: self.manifest.board.clone(),
                board: board.into(),
            });
        }
        Ok(())
    }
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
        let unit = render_unit(&board("rpi4"), "1.0");
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
        let unit = render_unit(&b, "1.0");
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
        let unit = render_unit(&b, "1.0");
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
        let unit = render_unit(&b, "1.0");
        has_lines(
            &unit,
            &["Wants=network-online.target", "After=network-online.target"],
        );
    }

    #[test]
    fn libcamerify_wraps_the_runtime() {
        let mut b = board("rpi5");
        b.camera.path = CameraPath::Libcamerify;
        let unit = render_unit(&b, "1.0");
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
