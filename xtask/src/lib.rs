//! Board tasks for HydraNet edge: board profiles, cross-building edge-runtime, release
//! bundles, and installing them into a board's root file system or over ssh.
//! The command line is in main.rs; boards/README.md documents both.
//!
//! - [`board`]: the board profiles (`boards/*.toml`);
//! - [`build`]: cross-building edge-runtime for a board;
//! - [`bundle`]: the release tarball (layout, manifest, systemd unit, install.sh);
//! - [`kiosk`]: the kiosk's browser autostart files in a release;
//! - [`flash`]: installing a release into a root file system or over ssh, and rollback;
//! - [`onnx`]: the shallow check that a model file is a HydraNet ONNX file;
//! - [`util`], [`error`]: checksums, times, sizes; the error type.

pub mod board;
pub mod build;
pub mod bundle;
pub mod error;
pub mod flash;
pub mod kiosk;
pub mod onnx;
pub mod util;

pub use error::{Error, Result};

use std::path::{Path, PathBuf};

/// The workspace this xtask belongs to (xtask/..). `cargo run` sets CARGO_MANIFEST_DIR at
/// run time too, and that one wins: a binary built from another checkout (cargo shares a
/// target folder between clones) still works on the checkout that runs it.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let manifest_dir = manifest_dir.as_path();
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.join(".."), Path::to_path_buf)
}
