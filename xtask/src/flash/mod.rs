//! Installing a bundle: into a board's root file system here (`--rootfs`), or on a running
//! board over ssh (`--ssh`, which runs the bundle's install.sh there; `ssh`).
//!
//! The rootfs install mirrors install.sh step by step (same names, modes, temporary names
//! and order), so that either leaves the same tree; xtask/tests/flash.rs compares them.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{symlink, DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::board::Board;
use crate::bundle::mender::{MODULES_DIR, MODULE_TYPE};
use crate::bundle::{
    check_version, release_dirs, release_files, Bundle, Manifest, MANIFEST, UPDATE_MODULE,
};
use crate::error::{io_err, Error, Result};
use crate::kiosk;

mod ssh;

pub use ssh::{sh_quote, Ssh};

/// Where a release lives under a root: `<root><prefix>`, `<root>/etc/systemd/system`, and
/// the kiosk's `<root>/etc/xdg/autostart`.
#[derive(Debug, Clone)]
pub struct Layout {
    pub base: PathBuf,
    pub units: PathBuf,
    pub wants: PathBuf,
    pub autostart: PathBuf,
    pub kiosk_wants: PathBuf,
    /// Where the board's Mender client looks for update modules.
    pub modules: PathBuf,
    pub service: String,
}

const MODULE_TMP: &str = ".hydranet-release.new";

impl Layout {
    pub fn new(root: &Path, prefix: &str, service: &str) -> Layout {
        let base = root.join(prefix.trim_start_matches('/'));
        let units = root.join("etc/systemd/system");
        let wants = units.join("multi-user.target.wants");
        let kiosk_wants = units.join(format!("{}.wants", kiosk::UNIT_WANTED_BY));
        Layout {
            base,
            units,
            wants,
            autostart: root.join(kiosk::AUTOSTART_DIR),
            kiosk_wants,
            modules: root.join(MODULES_DIR),
            service: service.into(),
        }
    }

    pub fn unit(&self) -> PathBuf {
        self.units.join(self.unit_name())
    }

    fn unit_name(&self) -> String {
        format!("{}.service", self.service)
    }

    /// Where `<base>/<name>` points (`releases/<version>`), or `None` if it does not exist.
    pub fn link_target(&self, name: &str) -> Result<Option<String>> {
        let path = self.base.join(name);
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("reading", &path)(e)),
        };
        let bad = |reason: String| Error::Install {
            path: path.clone(),
            reason,
        };
        if !meta.file_type().is_symlink() {
            return Err(bad("is not a symlink".into()));
        }
        let target = fs::read_link(&path).map_err(io_err("reading the symlink", &path))?;
        let target = target.to_string_lossy().into_owned();
        match target.strip_prefix("releases/") {
            Some(v) if check_version(v).is_ok() => Ok(Some(target)),
            _ => Err(bad(format!(
                "points to `{target}`, not to releases/<version>"
            ))),
        }
    }
}

/// What a rootfs install did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub base: PathBuf,
    pub version: String,
    /// The release `current` pointed to before, now `previous` (`None` on a first install
    /// or when this version already was current).
    pub previous: Option<String>,
}

/// Refuses anything but an existing directory this process can create files in.
pub fn check_rootfs(path: &Path) -> Result<()> {
    let err = |reason: String| Error::Rootfs {
        path: path.into(),
        reason,
    };
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(err("is not a directory".into())),
        Err(e) => return Err(err(format!("is not an existing directory ({e})"))),
    }
    // Permission bits do not stop root, so the only real test is to write.
    tempfile::Builder::new()
        .prefix(".hydranet-write-probe")
        .tempfile_in(path)
        .map_err(|e| err(format!("is not writable ({e})")))?;
    Ok(())
}

/// Installs `bundle` under `rootfs` and makes it current (see install.sh for the layout).
pub fn install_rootfs(bundle: &Bundle, rootfs: &Path) -> Result<Installed> {
    check_rootfs(rootfs)?;
    let m = &bundle.manifest;
    let l = Layout::new(rootfs, &m.install.prefix, &m.install.service);
    let releases = l.base.join("releases");
    ensure_dir(&releases)?;
    ensure_dir(&l.wants)?;

    let name = format!("releases/{}", m.version);
    let dest = l.base.join(&name);
    let cur = l.link_target("current")?;
    let same = dest.is_dir()
        && fs::read(dest.join(MANIFEST)).ok().as_deref() == Some(&bundle.files[MANIFEST][..]);
    if !same {
        if exists(&dest)? && cur.as_deref() == Some(name.as_str()) {
            return Err(Error::Install {
                path: dest,
                reason: format!(
                    "release {} is the current install and differs from {}: bundle it \
                     under a new version",
                    m.version,
                    bundle.path.display()
                ),
            });
        }
        let partial = releases.join(format!("{}.partial", m.version));
        remove_all(&partial)?;
        if let Err(e) = stage_release(bundle, &partial) {
            let _ = fs::remove_dir_all(&partial);
            return Err(e);
        }
        let replaced = releases.join(format!("{}.replaced", m.version));
        if exists(&dest)? {
            remove_all(&replaced)?;
            fs::rename(&dest, &replaced).map_err(io_err("moving aside", &dest))?;
        }
        if let Err(e) = fs::rename(&partial, &dest) {
            // Put the old copy back: `previous` may point to it.
            let _ = fs::rename(&replaced, &dest);
            return Err(io_err("renaming into place", &dest)(e));
        }
        remove_all(&replaced)?;
    }

    stage_unit(&l, &dest)?;
    stage_kiosk(&l, &dest)?;
    stage_module(&l, &dest)?;
    let is_current = cur.as_deref() == Some(name.as_str());
    if !is_current {
        if let Some(c) = &cur {
            flip(&l.base, "previous", c)?;
        }
        flip(&l.base, "current", &name)?;
    }
    finish_unit(&l)?;
    finish_kiosk(&l, &dest)?;
    finish_module(&l, &dest)?;
    Ok(Installed {
        base: l.base,
        version: m.version.clone(),
        previous: cur
            .filter(|_| !is_current)
            .map(|p| p.trim_start_matches("releases/").to_owned()),
    })
}

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolledBack {
    pub base: PathBuf,
    pub from: String,
    pub to: String,
}

/// Swaps `current` and `previous` under `rootfs`, and puts back the unit of the release that
/// becomes current.
pub fn rollback_rootfs(board: &Board, rootfs: &Path) -> Result<RolledBack> {
    check_rootfs(rootfs)?;
    let l = Layout::new(rootfs, &board.install.prefix, &board.install.service);
    let cur = l.link_target("current")?.ok_or_else(|| Error::Install {
        path: l.base.clone(),
        reason: "no current install".into(),
    })?;
    let prev = l
        .link_target("previous")?
        .ok_or_else(|| Error::NoPrevious {
            path: l.base.clone(),
        })?;
    let prev_dir = l.base.join(&prev);
    if !prev_dir.is_dir() {
        return Err(Error::Install {
            path: l.base.join("previous"),
            reason: format!("points to {prev}, which is missing"),
        });
    }
    let installed = read_manifest(&l.base.join(&cur).join(MANIFEST))?;
    if installed.board != board.name {
        return Err(Error::Install {
            path: l.base.clone(),
            reason: format!(
                "holds a release for board `{}`, not for `{}`",
                installed.board, board.name
            ),
        });
    }
    stage_unit(&l, &prev_dir)?;
    stage_kiosk(&l, &prev_dir)?;
    stage_module(&l, &prev_dir)?;
    flip(&l.base, "previous", &cur)?;
    flip(&l.base, "current", &prev)?;
    finish_unit(&l)?;
    finish_kiosk(&l, &prev_dir)?;
    finish_module(&l, &prev_dir)?;
    Ok(RolledBack {
        base: l.base,
        from: cur.trim_start_matches("releases/").into(),
        to: prev.trim_start_matches("releases/").into(),
    })
}

fn read_manifest(path: &Path) -> Result<Manifest> {
    let raw = fs::read(path).map_err(io_err("reading", path))?;
    serde_json::from_slice(&raw).map_err(|e| Error::Install {
        path: path.into(),
        reason: format!("does not parse ({e})"),
    })
}

/// Writes the release's files into `dir` (created afresh) with their fixed modes.
fn stage_release(bundle: &Bundle, dir: &Path) -> Result<()> {
    let m = &bundle.manifest;
    make_dir(dir)?;
    for sub in release_dirs(m.kiosk_display()) {
        make_dir(&dir.join(sub))?;
    }
    for (rel, mode) in release_files(&m.install.service, m.kiosk_display(), m.detector.is_some()) {
        crate::bundle::write_file(&dir.join(&rel), &bundle.files[&rel], mode)?;
    }
    Ok(())
}

/// Copies the release's unit beside its final name; [`finish_unit`] renames it after the
/// flip, so that a failure before leaves the old unit in place.
fn stage_unit(l: &Layout, release: &Path) -> Result<()> {
    let src = release.join("systemd").join(l.unit_name());
    let data = fs::read(&src).map_err(io_err("reading", &src))?;
    let tmp = l.units.join(format!(".{}.new", l.unit_name()));
    crate::bundle::write_file(&tmp, &data, 0o644)
}

fn finish_unit(l: &Layout) -> Result<()> {
    let tmp = l.units.join(format!(".{}.new", l.unit_name()));
    let unit = l.unit();
    fs::rename(&tmp, &unit).map_err(io_err("renaming into place", &unit))?;
    // Relative, like the other links: it resolves both on the board and in a rootfs
    // inspected from the host.
    flip(&l.wants, &l.unit_name(), &format!("../{}", l.unit_name()))
}

/// Copies the release's Mender update module beside its final name, like [`stage_unit`]. A
/// release without one (older than the module) leaves the installed module alone: the
/// board still needs it for the next update.
fn stage_module(l: &Layout, release: &Path) -> Result<()> {
    let src = release.join(UPDATE_MODULE);
    if !src.is_file() {
        return Ok(());
    }
    let data = fs::read(&src).map_err(io_err("reading", &src))?;
    ensure_dir(&l.modules)?;
    crate::bundle::write_file(&l.modules.join(MODULE_TMP), &data, 0o755)
}

fn finish_module(l: &Layout, release: &Path) -> Result<()> {
    if !release.join(UPDATE_MODULE).is_file() {
        return Ok(());
    }
    let dest = l.modules.join(MODULE_TYPE);
    fs::rename(l.modules.join(MODULE_TMP), &dest).map_err(io_err("renaming into place", &dest))
}

/// One of the kiosk's autostart files: where it goes on the board, and whether the release
/// holds it.
struct KioskFile {
    dir: PathBuf,
    name: &'static str,
    /// The cage unit: enabled by a link in `<wanted-by>.wants`.
    wanted: bool,
    present: bool,
}

/// The kiosk's autostart files, each marked present or not in `release`. Read from the
/// release folder itself, not its manifest, as install.sh does: a rollback to a release
/// older than the kiosk finds none, and the board's copies are removed.
fn kiosk_files(l: &Layout, release: &Path) -> [KioskFile; 2] {
    let has = |name: &str| release.join(kiosk::DIR).join(name).is_file();
    [
        KioskFile {
            dir: l.autostart.clone(),
            name: kiosk::DESKTOP_NAME,
            wanted: false,
            present: has(kiosk::DESKTOP_NAME),
        },
        KioskFile {
            dir: l.units.clone(),
            name: kiosk::UNIT_NAME,
            wanted: true,
            present: has(kiosk::UNIT_NAME),
        },
    ]
}

/// Copies the release's kiosk files beside their final names (like [`stage_unit`]).
fn stage_kiosk(l: &Layout, release: &Path) -> Result<()> {
    for f in kiosk_files(l, release).into_iter().filter(|f| f.present) {
        ensure_dir(&f.dir)?;
        if f.wanted {
            ensure_dir(&l.kiosk_wants)?;
        }
        let src = release.join(kiosk::DIR).join(f.name);
        let data = fs::read(&src).map_err(io_err("reading", &src))?;
        let tmp = f.dir.join(format!(".{}.new", f.name));
        crate::bundle::write_file(&tmp, &data, 0o644)?;
    }
    Ok(())
}

/// Renames the staged kiosk files into place (with the cage unit's wants link), and
/// removes those the release does not have (the link first).
fn finish_kiosk(l: &Layout, release: &Path) -> Result<()> {
    for f in kiosk_files(l, release) {
        let path = f.dir.join(f.name);
        if f.present {
            let tmp = f.dir.join(format!(".{}.new", f.name));
            fs::rename(&tmp, &path).map_err(io_err("renaming into place", &path))?;
            if f.wanted {
                flip(&l.kiosk_wants, f.name, &format!("../{}", f.name))?;
            }
        } else {
            if f.wanted {
                remove_file(&l.kiosk_wants.join(f.name))?;
            }
            remove_file(&path)?;
        }
    }
    Ok(())
}

/// `rm -f`: a missing file is fine.
fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("removing", path)(e)),
    }
}

/// Makes `dir/name` a symlink to `target` with one rename, so that it never goes missing.
fn flip(dir: &Path, name: &str, target: &str) -> Result<()> {
    let tmp = dir.join(format!(".{name}.new"));
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("removing", &tmp)(e)),
    }
    symlink(target, &tmp).map_err(io_err("creating the symlink", &tmp))?;
    let link = dir.join(name);
    fs::rename(&tmp, &link).map_err(io_err("replacing", &link))
}

/// `mkdir` with mode 0755 whatever the umask (install.sh sets umask 022 for the same result).
fn make_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .mode(0o755)
        .create(dir)
        .map_err(io_err("creating", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .map_err(io_err("setting the mode of", dir))
}

/// `mkdir -p`: missing folders are made 0755, existing ones are left as they are.
fn ensure_dir(dir: &Path) -> Result<()> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|p| !p.exists()).collect();
    for p in missing.into_iter().rev() {
        make_dir(p)?;
    }
    if !dir.is_dir() {
        return Err(Error::Install {
            path: dir.into(),
            reason: "is not a directory".into(),
        });
    }
    Ok(())
}

fn exists(path: &Path) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("reading", path)(e)),
    }
}

fn remove_all(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("reading", path)(e)),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(io_err("removing", path)),
        Ok(_) => fs::remove_file(path).map_err(io_err("removing", path)),
    }
}
