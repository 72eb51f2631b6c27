//! Releases as Mender artifacts: one payload of type `hydranet-release` (the release
//! tarball), for the board profile's device type, optionally signed. The update module that
//! installs it on the board is update-module.sh, which every release carries (install.sh
//! and `flash --rootfs` put it in [`MODULES_DIR`]).
//!
//! The artifact is written by Debian's `mender-artifact` (3.9), not by hand: its format
//! (nested tars, header checksums, signatures) is the client's to define.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::board::Board;
use crate::error::{Error, Result};

/// The payload type, and the update module's file name on the board.
pub const MODULE_TYPE: &str = "hydranet-release";
/// Where Mender's client (3.x) looks for update modules; its `ModulesPath` is fixed there.
pub const MODULES_DIR: &str = "usr/share/mender/modules/v3";
pub const UPDATE_MODULE_SH: &str = include_str!("../update-module.sh");
/// The tool that writes artifacts, looked up in PATH unless MENDER_ARTIFACT names it.
pub const TOOL_ENV: &str = "MENDER_ARTIFACT";

/// The artifact name: what `mender show-artifact` prints on the board once it is installed.
pub fn artifact_name(board: &str, version: &str) -> String {
    format!("hydranet-edge-{board}-{version}")
}

/// The arguments of `mender-artifact write module-image` for `tarball`.
pub fn write_args(
    board: &Board,
    version: &str,
    tarball: &Path,
    out: &Path,
    sign_key: Option<&Path>,
) -> Result<Vec<std::ffi::OsString>> {
    let m = board.mender.as_ref().ok_or_else(|| {
        Error::Usage(format!(
            "board `{}` has no [mender] section (device_type) in its profile: add one to \
             make Mender artifacts (boards/README.md)",
            board.name
        ))
    })?;
    let mut args: Vec<std::ffi::OsString> = [
        "write",
        "module-image",
        "--type",
        MODULE_TYPE,
        "--device-type",
        &m.device_type,
        "--artifact-name",
        &artifact_name(&board.name, version),
        "--software-name",
        "hydranet-edge",
        "--software-version",
        version,
        "--compression",
        // The payload is a .tar.gz already: compressing it again only costs time.
        "none",
    ]
    .iter()
    .map(Into::into)
    .collect();
    args.push("--file".into());
    args.push(tarball.into());
    args.push("--output-path".into());
    args.push(out.into());
    if let Some(key) = sign_key {
        args.push("--key".into());
        args.push(key.into());
    }
    Ok(args)
}

/// Wraps the release tarball into `<out_dir>/<artifact name>.mender`.
pub fn write_artifact(
    board: &Board,
    version: &str,
    tarball: &Path,
    sign_key: Option<&Path>,
) -> Result<PathBuf> {
    if let Some(key) = sign_key {
        if !key.is_file() {
            return Err(Error::Usage(format!(
                "signing key {} does not exist (make one: openssl ecparam -genkey \
                 -name prime256v1 -noout -out key.pem; boards/mender/README.md)",
                key.display()
            )));
        }
    }
    let dir = tarball.parent().unwrap_or(Path::new("."));
    let out = dir.join(format!("{}.mender", artifact_name(&board.name, version)));
    let partial = dir.join(format!(
        ".{}.mender.partial",
        artifact_name(&board.name, version)
    ));
    let tool = std::env::var_os(TOOL_ENV).unwrap_or_else(|| "mender-artifact".into());
    let output = Command::new(&tool)
        .args(write_args(board, version, tarball, &partial, sign_key)?)
        .output()
        .map_err(|source| Error::Spawn {
            program: format!(
                "{} (Debian package mender-artifact: apt-get install mender-artifact, or scripts/setup.sh test)",
                tool.to_string_lossy()
            ),
            source,
        })?;
    if !output.status.success() {
        let _ = std::fs::remove_file(&partial);
        return Err(Error::Command {
            what: format!("mender-artifact write for {}", tarball.display()),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    std::fs::rename(&partial, &out).map_err(crate::error::io_err("renaming into place", &out))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_module_speaks_protocol_v3() {
        let sh = UPDATE_MODULE_SH;
        assert!(sh.starts_with("#!/bin/sh\n"));
        for state in [
            "NeedsArtifactReboot)",
            "SupportsRollback)",
            "ArtifactInstall)",
            "ArtifactCommit)",
            "ArtifactRollback)",
        ] {
            assert!(sh.contains(state), "no {state}");
        }
        // Not a template: the same file on every board.
        assert!(
            !sh.replace("\"$@\"", "").contains('@'),
            "placeholders in the module"
        );
    }

    #[test]
    fn artifact_names_follow_the_tarball() {
        assert_eq!(artifact_name("rpi4", "1.2"), "hydranet-edge-rpi4-1.2");
    }
}
