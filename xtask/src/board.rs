//! Board profiles: one TOML file per board under `boards/` (fields in boards/README.md).

use std::fmt;
use std::fs;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{io_err, Error, Result};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    pub name: String,
    pub description: String,
    /// An LLVM CPU name, passed as `-C target-cpu` for this board's builds only.
    pub target_cpu: String,
    pub targets: Targets,
    pub camera: Camera,
    pub install: Install,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// The libc a release ships with unless `--libc` says otherwise.
    pub default: Libc,
    pub gnu: String,
    pub musl: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Libc {
    Gnu,
    Musl,
}

impl fmt::Display for Libc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Libc::Gnu => "gnu",
            Libc::Musl => "musl",
        })
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Camera {
    pub device: String,
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub path: CameraPath,
    #[serde(default)]
    pub note: String,
}

/// Written into the unit as `--camera-format <lowercase name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    #[serde(alias = "YUYV")]
    Yuyv,
    #[serde(alias = "MJPEG", alias = "MJPG", alias = "mjpg")]
    Mjpeg,
    #[serde(alias = "RGB24", alias = "RGB3")]
    Rgb24,
    Auto,
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PixelFormat::Yuyv => "yuyv",
            PixelFormat::Mjpeg => "mjpeg",
            PixelFormat::Rgb24 => "rgb24",
            PixelFormat::Auto => "auto",
        })
    }
}

/// How the camera reaches V4L2 on this board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CameraPath {
    /// A USB (UVC) camera: plain V4L2 on every board.
    Uvc,
    /// A Raspberry Pi CSI camera through libcamera's V4L2 compatibility layer. The layer is
    /// an LD_PRELOAD library, so the binary must be dynamically linked (gnu).
    Libcamerify,
}

impl fmt::Display for CameraPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CameraPath::Uvc => "uvc",
            CameraPath::Libcamerify => "libcamerify",
        })
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Install {
    pub prefix: String,
    pub service: String,
    /// `dynamic` (systemd's DynamicUser=yes) or an existing account name.
    pub user: String,
    /// Supplementary groups of the service; `video` opens /dev/video*.
    pub groups: Vec<String>,
}

pub const DYNAMIC_USER: &str = "dynamic";

impl Board {
    pub fn load(path: &Path) -> Result<Board> {
        let text = fs::read_to_string(path).map_err(io_err("reading board profile", path))?;
        let board: Board = toml::from_str(&text).map_err(|e| Error::ProfileSyntax {
            path: path.to_owned(),
            source: Box::new(e),
        })?;
        board.validate().map_err(|reason| Error::Profile {
            path: path.to_owned(),
            reason,
        })?;
        // The file name is what `--board` looks up, so it must agree with the name inside.
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if stem != board.name {
            return Err(Error::Profile {
                path: path.to_owned(),
                reason: format!(
                    "name `{}` differs from the file name `{stem}.toml`",
                    board.name
                ),
            });
        }
        Ok(board)
    }

    /// Every `*.toml` in `dir`, sorted by name.
    pub fn list(dir: &Path) -> Result<Vec<Board>> {
        let mut paths = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err("listing board profiles in", dir))? {
            let path = entry
                .map_err(io_err("listing board profiles in", dir))?
                .path();
            if path.extension().is_some_and(|e| e == "toml") {
                paths.push(path);
            }
        }
        paths.sort();
        paths.iter().map(|p| Board::load(p)).collect()
    }

    pub fn find(dir: &Path, name: &str) -> Result<Board> {
        let path = dir.join(format!("{name}.toml"));
        if is_simple_name(name) && path.is_file() {
            return Board::load(&path);
        }
        let available = Board::list(dir)?
            .iter()
            .map(|b| b.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        Err(Error::UnknownBoard {
            name: name.to_owned(),
            dir: dir.to_owned(),
            available,
        })
    }

    pub fn target(&self, libc: Libc) -> &str {
        match libc {
            Libc::Gnu => &self.targets.gnu,
            Libc::Musl => &self.targets.musl,
        }
    }

    /// Checks the libc choice against the camera path; see [`CameraPath::Libcamerify`].
    pub fn check_libc(&self, libc: Libc) -> Result<(), String> {
        if self.camera.path == CameraPath::Libcamerify && libc == Libc::Musl {
            return Err(format!(
                "board `{}` captures through libcamerify, an LD_PRELOAD library that a static \
                 musl binary never loads: use --libc gnu",
                self.name
            ));
        }
        Ok(())
    }

    /// Everything here ends up in a systemd unit or in install.sh (single-quoted), so the
    /// values are held to characters that need no escaping in either.
    fn validate(&self) -> Result<(), String> {
        if !is_simple_name(&self.name) {
            return Err(format!(
                "name `{}` must be lowercase letters, digits and '-'",
                self.name
            ));
        }
        if self.target_cpu.is_empty() || !self.target_cpu.chars().all(is_name_char) {
            return Err(format!(
                "target_cpu `{}` is not an LLVM CPU name",
                self.target_cpu
            ));
        }
        for triple in [&self.targets.gnu, &self.targets.musl] {
            if triple.is_empty()
                || !triple
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            {
                return Err(format!("target `{triple}` is not a target triple"));
            }
        }
        let cam = &self.camera;
        if !cam.device.starts_with("/dev/") || !is_safe_path(&cam.device) {
            return Err(format!(
                "camera device `{}` must be an absolute path under /dev",
                cam.device
            ));
        }
        if cam.width == 0 || cam.height == 0 || cam.fps == 0 {
            return Err("camera width, height and fps must be positive".into());
        }
        let inst = &self.install;
        if !inst.prefix.starts_with('/') || inst.prefix == "/" || !is_safe_path(&inst.prefix) {
            return Err(format!(
                "install prefix `{}` must be an absolute path below / without '..', \
                 a trailing '/' or special characters",
                inst.prefix
            ));
        }
        if !is_simple_name(&inst.service) {
            return Err(format!(
                "service name `{}` is not a plain name",
                inst.service
            ));
        }
        if inst.user != DYNAMIC_USER && !is_account_name(&inst.user) {
            return Err(format!(
                "user `{}` must be `{DYNAMIC_USER}` or an account name",
                inst.user
            ));
        }
        if let Some(g) = inst.groups.iter().find(|g| !is_account_name(g)) {
            return Err(format!("group `{g}` is not an account name"));
        }
        Ok(())
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

/// Lowercase letters, digits and '-', starting with a letter or digit.
pub fn is_simple_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c != '-') && s.chars().all(is_name_char)
}

fn is_account_name(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Absolute, normal components only, no trailing '/', and nothing a shell or systemd would
/// interpret.
pub(crate) fn is_safe_path(s: &str) -> bool {
    let p = PathBuf::from(s);
    !s.ends_with('/')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'))
        && p.components().enumerate().all(|(i, c)| match c {
            Component::RootDir => i == 0,
            Component::Normal(_) => true,
            _ => false,
        })
        && !s.contains("//")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn boards_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../boards")
    }

    #[test]
    fn shipped_profiles_load() {
        let boards = Board::list(&boards_dir()).expect("boards/ loads");
        let names: Vec<_> = boards.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["jetson-orin-nano", "rpi4", "rpi5"]);
        for b in &boards {
            assert_eq!(b.targets.default, Libc::Musl, "{}", b.name);
            assert_eq!(b.target(Libc::Gnu), "aarch64-unknown-linux-gnu");
            assert_eq!(b.target(Libc::Musl), "aarch64-unknown-linux-musl");
            assert_eq!(b.install.prefix, "/opt/hydranet");
            assert_eq!(b.install.service, "hydranet-edge");
            assert_eq!(b.install.groups, ["video"]);
            assert_eq!(b.camera.device, "/dev/video0");
            assert!(b.check_libc(b.targets.default).is_ok());
        }
        let cpu = |n: &str| Board::find(&boards_dir(), n).expect(n).target_cpu;
        assert_eq!(cpu("rpi4"), "cortex-a72");
        assert_eq!(cpu("rpi5"), "cortex-a76");
        assert_eq!(cpu("jetson-orin-nano"), "cortex-a78ae");
    }

    /// A misspelt CPU only warns in rustc ("not a recognized processor") and builds generic
    /// code, so the names are checked against LLVM's list here.
    #[test]
    fn target_cpus_are_known_to_rustc() {
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        let out = Command::new(&rustc)
            .args([
                "--print",
                "target-cpus",
                "--target",
                "aarch64-unknown-linux-gnu",
            ])
            .output()
            .expect("rustc runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = String::from_utf8_lossy(&out.stdout);
        let known: Vec<&str> = listing
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        for b in Board::list(&boards_dir()).expect("boards/ loads") {
            assert!(
                known.contains(&b.target_cpu.as_str()),
                "{}: {} not in rustc's list",
                b.name,
                b.target_cpu
            );
        }
    }

    #[test]
    fn unknown_board_lists_the_available_ones() {
        let err = Board::find(&boards_dir(), "rpi3").unwrap_err().to_string();
        assert!(
            err.contains("`rpi3`") && err.contains("rpi4, rpi5"),
            "{err}"
        );
        let err = Board::find(&boards_dir(), "../Cargo")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no board profile"), "{err}");
    }

    #[test]
    fn bad_profiles_are_refused_with_the_file_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = fs::read_to_string(boards_dir().join("rpi4.toml")).expect("rpi4.toml");
        let cases = [
            (
                "rpi4",
                good.replace("/opt/hydranet", "/opt/hydra net"),
                "install prefix",
            ),
            (
                "rpi4",
                good.replace("/opt/hydranet", "/opt/../x"),
                "install prefix",
            ),
            (
                "rpi4",
                good.replace("/dev/video0", "video0"),
                "camera device",
            ),
            ("rpi4", good.replace("fps = 30", "fps = 0"), "positive"),
            (
                "rpi4",
                good.replace("\"uvc\"", "\"argus\""),
                "not valid TOML",
            ),
            (
                "rpi4",
                good.replace("groups = [\"video\"]", "groups = [\"vi deo\"]"),
                "group",
            ),
            (
                "rpi4",
                good.replace("[install]", "[kiosk]\n[install]"),
                "not valid TOML",
            ),
            ("other", good.clone(), "differs from the file name"),
        ];
        for (stem, text, want) in cases {
            let path = dir.path().join(format!("{stem}.toml"));
            fs::write(&path, text).expect("write");
            let err = Board::load(&path).unwrap_err().to_string();
            assert!(
                err.contains(want) && err.contains(&*path.to_string_lossy()),
                "{want}: {err}"
            );
        }
    }

    #[test]
    fn libcamerify_needs_gnu() {
        let mut b = Board::find(&boards_dir(), "rpi4").expect("rpi4");
        b.camera.path = CameraPath::Libcamerify;
        assert!(b.check_libc(Libc::Musl).unwrap_err().contains("--libc gnu"));
        assert!(b.check_libc(Libc::Gnu).is_ok());
    }

    #[test]
    fn pixel_format_accepts_upper_case() {
        #[derive(Deserialize)]
        struct T {
            f: PixelFormat,
        }
        let t: T = toml::from_str("f = \"MJPEG\"").expect("parses");
        assert_eq!(t.f, PixelFormat::Mjpeg);
        assert_eq!(t.f.to_string(), "mjpeg");
    }
}
