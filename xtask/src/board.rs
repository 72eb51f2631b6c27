//! Board profiles: one TOML file per board under `boards/` (fields in boards/README.md).

use std::fmt;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
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
    /// The on-screen kiosk; a profile without `[kiosk]` has none.
    #[serde(default)]
    pub kiosk: Kiosk,
    /// Over-the-air releases through Mender; a profile without `[mender]` makes tarballs
    /// only.
    #[serde(default)]
    pub mender: Option<Mender>,
}

/// `[mender]`: how the board's Mender client is installed and configured
/// (boards/mender/README.md).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Mender {
    /// Mender's device type; the client refuses an artifact made for another.
    pub device_type: String,
    /// The Debian package that brings the client (3.x, update modules v3).
    #[serde(default = "default_mender_package")]
    pub package: String,
    /// `standalone` (`mender install` on the board, by hand or over ssh) or `managed` (the
    /// client's daemon polls a Mender server; boards/mender/mender.conf.managed).
    #[serde(default)]
    pub mode: MenderMode,
    /// Where the board keeps the public key artifacts must be signed with; when the file
    /// exists, the client refuses unsigned and wrongly signed artifacts.
    #[serde(default = "default_verify_key")]
    pub verify_key: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MenderMode {
    #[default]
    Standalone,
    Managed,
}

fn default_mender_package() -> String {
    "mender-client".into()
}

fn default_verify_key() -> String {
    "/etc/mender/artifact-verify-key.pem".into()
}

impl Mender {
    fn validate(&self) -> Result<(), String> {
        let t = &self.device_type;
        if t.is_empty()
            || !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "mender device_type `{t}` must be letters, digits, '-', '_' and '.'"
            ));
        }
        if !is_account_name(&self.package) {
            return Err(format!(
                "mender package `{}` is not a Debian package name",
                self.package
            ));
        }
        if !self.verify_key.starts_with('/') || !is_safe_path(&self.verify_key) {
            return Err(format!(
                "mender verify_key `{}` must be an absolute path",
                self.verify_key
            ));
        }
        Ok(())
    }
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

/// `[kiosk]`: edge-runtime's `kiosk` command instead of `run`, and a browser that shows its
/// page full screen on the board's display.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Kiosk {
    pub enabled: bool,
    /// `--listen` of edge-runtime kiosk: an IP address and a port.
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default)]
    pub display: KioskDisplay,
    /// The Chromium executable: a name looked up in PATH, or an absolute path.
    #[serde(default = "default_browser")]
    pub browser: String,
    /// The account the browser runs as under cage (ignored by `desktop`, where the browser
    /// runs in whoever's desktop session starts it).
    #[serde(default)]
    pub user: Option<String>,
    /// The unit reads HYDRANET_KIOSK_TOKEN from [`TOKEN_FILE`]; required when `listen`
    /// reaches beyond loopback.
    #[serde(default)]
    pub token_env: bool,
}

/// Where the kiosk's token lives on the board (`HYDRANET_KIOSK_TOKEN=...`).
pub const TOKEN_FILE: &str = "/etc/hydranet/kiosk.env";
pub const TOKEN_VAR: &str = "HYDRANET_KIOSK_TOKEN";

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

fn default_browser() -> String {
    "chromium-browser".into()
}

impl Default for Kiosk {
    fn default() -> Self {
        Kiosk {
            enabled: false,
            listen: default_listen(),
            display: KioskDisplay::default(),
            browser: default_browser(),
            user: None,
            token_env: false,
        }
    }
}

/// Who starts the browser.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KioskDisplay {
    /// The board's desktop session, through an XDG autostart entry.
    #[default]
    Desktop,
    /// No desktop: a systemd unit runs the cage compositor on tty1 with the browser in it.
    Cage,
}

impl fmt::Display for KioskDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KioskDisplay::Desktop => "desktop",
            KioskDisplay::Cage => "cage",
        })
    }
}

impl Kiosk {
    /// The address edge-runtime listens on, in its canonical form.
    ///
    /// # Panics
    /// If `listen` does not parse, which [`Board::load`] has already refused.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
            .parse()
            .expect("kiosk.listen is checked when the profile loads")
    }

    /// Where the board's own browser reaches the kiosk: the listen address, or loopback
    /// when it listens on every address (Chromium refuses 0.0.0.0 as a destination).
    pub fn browse_addr(&self) -> SocketAddr {
        let addr = self.listen_addr();
        match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => {
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
            }
            IpAddr::V6(ip) if ip.is_unspecified() => {
                SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
            }
            _ => addr,
        }
    }

    fn validate(&self) -> Result<(), String> {
        let addr: SocketAddr = self.listen.parse().map_err(|_| {
            format!(
                "kiosk listen `{}` is not a socket address (IP:port, e.g. 127.0.0.1:8080 \
                 or [::1]:8080)",
                self.listen
            )
        })?;
        if addr.port() == 0 {
            return Err(format!(
                "kiosk listen `{}` needs a fixed port: the browser must know where to go",
                self.listen
            ));
        }
        // Written into the unit, where '%' starts a systemd specifier.
        if addr.to_string().contains('%') {
            return Err(format!(
                "kiosk listen `{}`: an IPv6 scope id is not supported",
                self.listen
            ));
        }
        if !addr.ip().is_loopback() && !self.token_env {
            return Err(format!(
                "kiosk listen `{}` reaches beyond loopback: set `token_env = true` so that \
                 the unit reads {TOKEN_VAR} from {TOKEN_FILE} (anyone on the network could \
                 otherwise read the predictions)",
                self.listen
            ));
        }
        let b = &self.browser;
        let plain = !b.is_empty()
            && !b.starts_with('-')
            && b.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'));
        let absolute = b.starts_with('/') && is_safe_path(b);
        if !plain && !absolute {
            return Err(format!(
                "kiosk browser `{b}` must be a command name or an absolute path"
            ));
        }
        match (&self.user, self.display) {
            (Some(u), _) if !is_account_name(u) => {
                return Err(format!("kiosk user `{u}` is not an account name"));
            }
            // Chromium refuses to run as root without --no-sandbox.
            (Some(u), _) if u == "root" => {
                return Err("kiosk user may not be root: Chromium's sandbox refuses it".into());
            }
            (None, KioskDisplay::Cage) => {
                return Err(
                    "kiosk display = \"cage\" needs `user`, the account the browser runs as".into(),
                );
            }
            _ => {}
        }
        Ok(())
    }
}

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
        self.kiosk.validate()?;
        match &self.mender {
            Some(m) => m.validate(),
            None => Ok(()),
        }
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
        for b in &boards {
            let k = &b.kiosk;
            assert!(k.enabled, "{}", b.name);
            assert_eq!(k.listen_addr().to_string(), "127.0.0.1:8080");
            assert_eq!(k.display, KioskDisplay::Desktop);
            assert_eq!(k.browser, "chromium-browser");
            assert!(!k.token_env);
            let user = if b.name.starts_with("rpi") {
                Some("pi")
            } else {
                None
            };
            assert_eq!(k.user.as_deref(), user, "{}", b.name);
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
                good.replace("enabled = true", "enabled = true\nautostart = true"),
                "not valid TOML",
            ),
            (
                "rpi4",
                good.replace("\"desktop\"", "\"x11\""),
                "not valid TOML",
            ),
            (
                "rpi4",
                good.replace("\"127.0.0.1:8080\"", "\"localhost:8080\""),
                "kiosk listen `localhost:8080` is not a socket address",
            ),
            (
                "rpi4",
                good.replace("\"127.0.0.1:8080\"", "\"127.0.0.1:0\""),
                "needs a fixed port",
            ),
            (
                "rpi4",
                good.replace("\"127.0.0.1:8080\"", "\"0.0.0.0:8080\""),
                "kiosk listen `0.0.0.0:8080` reaches beyond loopback: set `token_env = true`",
            ),
            (
                "rpi4",
                good.replace("\"127.0.0.1:8080\"", "\"[::]:8080\""),
                "reaches beyond loopback",
            ),
            (
                "rpi4",
                good.replace("\"chromium-browser\"", "\"chromium --no-sandbox\""),
                "kiosk browser",
            ),
            (
                "rpi4",
                good.replace("user = \"pi\"", "user = \"root\""),
                "may not be root",
            ),
            (
                "rpi4",
                good.replace("\"desktop\"", "\"cage\"")
                    .replace("user = \"pi\"", ""),
                "needs `user`",
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
    fn kiosk_variants_that_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = fs::read_to_string(boards_dir().join("rpi4.toml")).expect("rpi4.toml");
        let load = |text: String| {
            let path = dir.path().join("rpi4.toml");
            fs::write(&path, text).expect("write");
            Board::load(&path).expect("loads")
        };
        // Beyond loopback with the token in the environment file.
        let b = load(good.replace(
            "listen = \"127.0.0.1:8080\"",
            "listen = \"0.0.0.0:8080\"\ntoken_env = true",
        ));
        assert!(b.kiosk.token_env);
        assert_eq!(b.kiosk.browse_addr().to_string(), "127.0.0.1:8080");
        // IPv6 loopback and an absolute browser path need no token.
        let b = load(
            good.replace("\"127.0.0.1:8080\"", "\"[::1]:8080\"")
                .replace("\"chromium-browser\"", "\"/usr/lib/chromium/chromium\""),
        );
        assert_eq!(b.kiosk.listen_addr().to_string(), "[::1]:8080");
        // No [kiosk] at all: no kiosk. `enabled = false` alone is enough to turn it off.
        let start = good.find("[kiosk]").expect("[kiosk]");
        let b = load(good[..start].to_owned());
        assert!(!b.kiosk.enabled);
        let b = load(format!("{}[kiosk]\nenabled = false\n", &good[..start]));
        assert!(!b.kiosk.enabled);
        assert_eq!(b.kiosk.listen, "127.0.0.1:8080");
        assert_eq!(b.kiosk.display, KioskDisplay::Desktop);
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
