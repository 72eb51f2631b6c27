//! The kiosk's browser autostart: `kiosk/` in a release, and where its files go on the board.
//!
//! - `display = "desktop"`: an XDG autostart entry (`/etc/xdg/autostart/hydranet-kiosk.desktop`)
//!   runs `<prefix>/current/kiosk/browser.sh` when the desktop session starts.
//! - `display = "cage"`: a systemd unit (`hydranet-kiosk-browser.service`, wanted by
//!   multi-user.target) runs `cage -- <prefix>/current/kiosk/browser.sh` on tty1.
//!
//! browser.sh waits for edge-runtime's /healthz, then execs Chromium full screen.
//! install.sh and `flash --rootfs` install whichever of the two files the release holds and
//! remove the other, so the board always follows the current release (rollback included).

use crate::board::{Board, KioskDisplay, TOKEN_FILE};

pub const DIR: &str = "kiosk";
pub const BROWSER_SH: &str = "kiosk/browser.sh";
/// The XDG autostart entry: `kiosk/<name>` in a release, `<root>/etc/xdg/autostart/<name>`.
pub const DESKTOP_NAME: &str = "hydranet-kiosk.desktop";
pub const DESKTOP_FILE: &str = "kiosk/hydranet-kiosk.desktop";
pub const AUTOSTART_DIR: &str = "etc/xdg/autostart";
/// The cage unit: `kiosk/<name>` in a release, `<root>/etc/systemd/system/<name>`.
pub const UNIT_NAME: &str = "hydranet-kiosk-browser.service";
pub const UNIT_FILE: &str = "kiosk/hydranet-kiosk-browser.service";
/// The cage unit is wanted by this target: reached on a board without a desktop (whose
/// default target is multi-user) and on one with a desktop (graphical pulls it in too).
pub const UNIT_WANTED_BY: &str = "multi-user.target";
/// How long browser.sh waits for the kiosk to answer.
pub const WAIT_S: u32 = 60;
/// The console cage takes over.
pub const TTY: &str = "tty1";

/// The kiosk's files in a release, with their modes (none when the kiosk is off).
pub fn release_files(display: Option<KioskDisplay>) -> Vec<(String, u32)> {
    match display {
        None => Vec::new(),
        Some(KioskDisplay::Desktop) => {
            vec![(BROWSER_SH.into(), 0o755), (DESKTOP_FILE.into(), 0o644)]
        }
        Some(KioskDisplay::Cage) => {
            vec![(BROWSER_SH.into(), 0o755), (UNIT_FILE.into(), 0o644)]
        }
    }
}

/// `<prefix>/current/kiosk/browser.sh`: always the current release's script.
pub fn browser_sh_path(board: &Board) -> String {
    format!("{}/current/{BROWSER_SH}", board.install.prefix)
}

pub fn page_url(board: &Board) -> String {
    format!("http://{}/", board.kiosk.browse_addr())
}

pub fn health_url(board: &Board) -> String {
    format!("http://{}/healthz", board.kiosk.browse_addr())
}

const BROWSER_SH_TEMPLATE: &str = include_str!("kiosk-browser.sh.in");

pub fn render_browser_sh(board: &Board, version: &str) -> String {
    let k = &board.kiosk;
    let started_by = match k.display {
        KioskDisplay::Desktop => {
            format!("/{AUTOSTART_DIR}/{DESKTOP_NAME} when a desktop session starts")
        }
        KioskDisplay::Cage => format!("{UNIT_NAME} (cage on {TTY})"),
    };
    BROWSER_SH_TEMPLATE
        .replace("@BOARD@", &board.name)
        .replace("@VERSION@", version)
        .replace("@STARTED_BY@", &started_by)
        .replace("@PAGE_URL@", &page_url(board))
        .replace("@HEALTH_URL@", &health_url(board))
        .replace("@BROWSER@", &k.browser)
        .replace("@WAIT@", &WAIT_S.to_string())
        .replace("@TOKEN_ENV@", if k.token_env { "1" } else { "0" })
        .replace("@TOKEN_FILE@", TOKEN_FILE)
}

/// The XDG autostart entry (desktop entry spec; `#` lines are comments).
pub fn render_desktop_entry(board: &Board, version: &str) -> String {
    format!(
        "# HydraNet kiosk for {name}, release {version}: made by `cargo xtask bundle`, installed\n\
         # to /{AUTOSTART_DIR}/ by install.sh or `cargo xtask flash`. Every desktop session\n\
         # that starts runs the browser full screen on {url}.\n\
         [Desktop Entry]\n\
         Type=Application\n\
         Name=HydraNet kiosk\n\
         Comment=HydraNet camera page, full screen\n\
         Exec={script}\n\
         Terminal=false\n\
         NoDisplay=true\n\
         X-GNOME-Autostart-enabled=true\n",
        name = board.name,
        url = page_url(board),
        script = browser_sh_path(board),
    )
}

/// The cage unit: a PAM login session on tty1 for `kiosk.user` (so that logind hands cage
/// the seat's display and input), after the cage wiki's "Starting Cage on boot with
/// systemd" unit.
pub fn render_browser_unit(board: &Board, version: &str) -> String {
    let k = &board.kiosk;
    let service = &board.install.service;
    let user = k
        .user
        .as_deref()
        .expect("kiosk.user is required with display = \"cage\" when the profile loads");
    let token = if k.token_env {
        // Read by systemd (as root) before it switches to the user: the file may stay 0600.
        format!("EnvironmentFile=-{TOKEN_FILE}\n")
    } else {
        String::new()
    };
    format!(
        "# HydraNet kiosk browser for {name}, release {version}: made by `cargo xtask bundle`.\n\
         # cage (a Wayland kiosk compositor) runs the browser full screen on {TTY}, in a login\n\
         # session of {user}; the browser waits for the kiosk on {url}.\n\
         [Unit]\n\
         Description=HydraNet kiosk browser on {TTY} ({name})\n\
         Wants={service}.service\n\
         After={service}.service\n\
         After=systemd-user-sessions.service plymouth-quit-wait.service\n\
         Wants=dbus.socket systemd-logind.service\n\
         After=dbus.socket systemd-logind.service\n\
         # It takes the console's place.\n\
         Conflicts=getty@{TTY}.service\n\
         After=getty@{TTY}.service\n\
         ConditionPathExists=/dev/tty0\n\
         \n\
         [Service]\n\
         Type=simple\n\
         User={user}\n\
         PAMName=login\n\
         TTYPath=/dev/{TTY}\n\
         TTYReset=yes\n\
         TTYVHangup=yes\n\
         TTYVTDisallocate=yes\n\
         StandardInput=tty\n\
         StandardOutput=journal\n\
         StandardError=journal\n\
         UtmpIdentifier={TTY}\n\
         UtmpMode=user\n\
         {token}\
         ExecStart=/usr/bin/cage -- {script}\n\
         Restart=always\n\
         RestartSec=5\n\
         \n\
         [Install]\n\
         WantedBy={UNIT_WANTED_BY}\n",
        name = board.name,
        url = page_url(board),
        script = browser_sh_path(board),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::TOKEN_VAR;
    use std::path::Path;

    fn board(name: &str) -> Board {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../boards");
        Board::find(&dir, name).expect("board")
    }

    #[test]
    fn browser_sh_for_rpi4() {
        let sh = render_browser_sh(&board("rpi4"), "1.0");
        assert!(sh.starts_with("#!/bin/sh\n"));
        assert!(!sh.contains('@'), "placeholder left in\n{sh}");
        for want in [
            "PAGE_URL='http://127.0.0.1:8080/'",
            "HEALTH_URL='http://127.0.0.1:8080/healthz'",
            "BROWSER='chromium-browser'",
            "WAIT=60",
            "TOKEN_ENV=0",
            "TOKEN_FILE='/etc/hydranet/kiosk.env'",
        ] {
            assert!(sh.lines().any(|l| l == want), "missing `{want}` in\n{sh}");
        }
        assert!(sh.contains(TOKEN_VAR));
        assert!(sh.contains(
            "exec \"$b\" --kiosk --noerrdialogs --disable-infobars --no-first-run \\\n            \
             --disable-session-crashed-bubble --incognito \\\n            \
             --check-for-update-interval=31536000"
        ));
    }

    #[test]
    fn every_address_is_browsed_on_loopback() {
        let mut b = board("rpi4");
        b.kiosk.token_env = true;
        b.kiosk.listen = "0.0.0.0:9000".into();
        assert_eq!(page_url(&b), "http://127.0.0.1:9000/");
        b.kiosk.listen = "[::]:9000".into();
        assert_eq!(health_url(&b), "http://[::1]:9000/healthz");
        b.kiosk.listen = "192.168.1.20:80".into();
        assert_eq!(page_url(&b), "http://192.168.1.20:80/");
    }

    #[test]
    fn desktop_entry_runs_the_current_script() {
        let d = render_desktop_entry(&board("rpi5"), "1.0");
        let lines: Vec<&str> = d.lines().collect();
        for want in [
            "[Desktop Entry]",
            "Type=Application",
            "Exec=/opt/hydranet/current/kiosk/browser.sh",
            "Terminal=false",
        ] {
            assert!(lines.contains(&want), "missing `{want}` in\n{d}");
        }
    }

    #[test]
    fn cage_unit_logs_the_user_in_on_tty1() {
        let mut b = board("rpi4");
        b.kiosk.display = KioskDisplay::Cage;
        let u = render_browser_unit(&b, "1.0");
        let lines: Vec<&str> = u.lines().collect();
        for want in [
            "Wants=hydranet-edge.service",
            "After=hydranet-edge.service",
            "Conflicts=getty@tty1.service",
            "User=pi",
            "PAMName=login",
            "TTYPath=/dev/tty1",
            "StandardInput=tty",
            "ExecStart=/usr/bin/cage -- /opt/hydranet/current/kiosk/browser.sh",
            "Restart=always",
            "WantedBy=multi-user.target",
        ] {
            assert!(lines.contains(&want), "missing `{want}` in\n{u}");
        }
        assert!(!u.contains("EnvironmentFile"));
        b.kiosk.token_env = true;
        b.kiosk.user = Some("kiosk".into());
        let u = render_browser_unit(&b, "1.0");
        assert!(u.contains("\nEnvironmentFile=-/etc/hydranet/kiosk.env\n"));
        assert!(u.contains("\nUser=kiosk\n"));
    }
}
