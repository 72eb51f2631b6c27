use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong in the board tasks. Each variant names the file, folder or
/// host it is about, so a message alone tells the user where to look.
#[derive(Debug, Error)]
pub enum Error {
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("board profile {} is not valid TOML", path.display())]
    ProfileSyntax {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("board profile {}: {reason}", path.display())]
    Profile { path: PathBuf, reason: String },
    #[error("no board profile `{name}` in {} (available: {available})", dir.display())]
    UnknownBoard {
        name: String,
        dir: PathBuf,
        available: String,
    },
    #[error("model {}: {reason}", path.display())]
    Model { path: PathBuf, reason: String },
    #[error("binary {}: {reason}", path.display())]
    Binary { path: PathBuf, reason: String },
    #[error("version `{version}`: {reason}")]
    Version { version: String, reason: String },
    #[error("bundle {} does not exist", path.display())]
    MissingBundle { path: PathBuf },
    #[error("bundle {}: {reason}", path.display())]
    BadBundle { path: PathBuf, reason: String },
    #[error("bundle {} was made for board `{bundle_board}`, not for `{board}`", path.display())]
    BoardMismatch {
        path: PathBuf,
        bundle_board: String,
        board: String,
    },
    #[error("rootfs {}: {reason}", path.display())]
    Rootfs { path: PathBuf, reason: String },
    #[error("install under {}: {reason}", path.display())]
    Install { path: PathBuf, reason: String },
    #[error("no previous install to roll back to under {}", path.display())]
    NoPrevious { path: PathBuf },
    #[error("cannot reach {host} over ssh: {detail}")]
    SshUnreachable { host: String, detail: String },
    #[error("could not start `{program}`")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("{what} failed ({status}){}", if stderr.is_empty() { String::new() } else { format!(": {stderr}") })]
    Command {
        what: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    /// A choice that does not fit together (libc vs camera path, environment vs build).
    #[error("{0}")]
    Usage(String),
    #[error("cargo build finished without an edge-runtime executable for {target}")]
    NoArtifact { target: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps an `io::Error` with what was being done and to which path.
pub(crate) fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}
