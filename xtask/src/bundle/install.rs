//! install.sh: the release installing itself on a board.
use super::Manifest;
use crate::kiosk;

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
        .replace(
            "@DETECTOR_SHA256@",
            m.detector.as_ref().map_or("", |d| d.model.sha256.as_str()),
        )
        .replace(
            "@DETECTOR_LICENCE_SHA256@",
            m.detector
                .as_ref()
                .map_or("", |d| d.licence.sha256.as_str()),
        )
        .replace(
            "@LISTEN@",
            m.kiosk.as_ref().map_or("", |k| k.listen.as_str()),
        )
        .replace(
            "@TOKEN_ENV@",
            if m.kiosk.as_ref().is_some_and(|k| k.token_env) {
                "1"
            } else {
                "0"
            },
        )
        .replace("@AUTOSTART_DIR@", kiosk::AUTOSTART_DIR)
        .replace("@KIOSK_DESKTOP@", kiosk::DESKTOP_NAME)
        .replace("@KIOSK_UNIT@", kiosk::UNIT_NAME)
        .replace("@KIOSK_WANTED_BY@", kiosk::UNIT_WANTED_BY)
}

const INSTALL_SH_TEMPLATE: &str = include_str!("../install.sh.in");
