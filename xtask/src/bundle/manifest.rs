//! manifest.json (what a release holds, with the checksums) and release versions.
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::board::{KioskDisplay, Libc};
use crate::error::{Error, Result};
use crate::util::sha256_hex;

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
    /// The face detector and its licence, when the release ships one (absent otherwise,
    /// as for bundles made before there was one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<ManifestDetector>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestDetector {
    pub model: FileDigest,
    pub licence: FileDigest,
}

impl Manifest {
    /// The kiosk display of this release, `None` when it has no kiosk.
    pub fn kiosk_display(&self) -> Option<KioskDisplay> {
        self.kiosk.as_ref().map(|k| k.display)
    }

    /// Every file the manifest carries a checksum for.
    pub fn digests(&self) -> Vec<&FileDigest> {
        let mut d = vec![&self.binary, &self.model];
        if let Some(det) = &self.detector {
            d.extend([&det.model, &det.licence]);
        }
        d
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
    pub(crate) fn of(path: &str, data: &[u8]) -> FileDigest {
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
