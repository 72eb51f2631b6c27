//! Cross-building edge-runtime for a board.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::board::{Board, Libc};
use crate::error::{Error, Result};

pub const PACKAGE: &str = "edge-runtime";

/// `CARGO_TARGET_<TRIPLE>_RUSTFLAGS`, the one place that reaches only this target's
/// artifacts: build scripts and proc macros (host) stay generic.
pub fn target_rustflags_var(triple: &str) -> String {
    format!(
        "CARGO_TARGET_{}_RUSTFLAGS",
        triple.to_ascii_uppercase().replace(['-', '.'], "_")
    )
}

/// The `cargo build` that makes the board's binary. `env` reads the caller's environment
/// (a parameter so that tests can pass their own).
pub fn build_command(
    board: &Board,
    libc: Libc,
    profile: &str,
    workspace: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Command> {
    board.check_libc(libc).map_err(Error::Usage)?;
    let triple = board.target(libc);
    let var = target_rustflags_var(triple);
    if env("CARGO_ENCODED_RUSTFLAGS").is_some() {
        // It would replace our per-target flags outright, and its \x1f-separated form does
        // not merge into a space-separated variable.
        return Err(Error::Usage(
            "CARGO_ENCODED_RUSTFLAGS is set and would drop the board's target-cpu: \
             unset it or move its flags into RUSTFLAGS"
                .into(),
        ));
    }
    // RUSTFLAGS takes precedence over the per-target variable, so it is folded into ours
    // (it reaches only target artifacts anyway once --target is given) and removed.
    let mut flags: Vec<String> = [env("RUSTFLAGS"), env(&var)]
        .into_iter()
        .flatten()
        .flat_map(|s| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    flags.extend(["-C".into(), format!("target-cpu={}", board.target_cpu)]);
    if libc == Libc::Musl {
        // Already the musl target's default; stated so the shipped binary is static even if
        // that default ever changes.
        flags.extend(["-C".into(), "target-feature=+crt-static".into()]);
    }

    let cargo = env("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "-p",
            PACKAGE,
            "--target",
            triple,
            "--profile",
            profile,
        ])
        .arg("--message-format=json-render-diagnostics")
        .env(&var, flags.join(" "))
        .env_remove("RUSTFLAGS");
    Ok(cmd)
}

/// Runs [`build_command`] and returns the path of the executable cargo reports.
pub fn build(board: &Board, libc: Libc, profile: &str, workspace: &Path) -> Result<PathBuf> {
    let mut cmd = build_command(board, libc, profile, workspace, |k| std::env::var(k).ok())?;
    let triple = board.target(libc).to_owned();
    eprintln!(
        "building {PACKAGE} for {} ({triple}, {}, profile {profile})",
        board.name, board.target_cpu
    );
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            program: "cargo".into(),
            source,
        })?;
    let mut exe = None;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(path) = artifact_executable(&line) {
                exe = Some(path);
            }
        }
    }
    let status = child.wait().map_err(|source| Error::Spawn {
        program: "cargo".into(),
        source,
    })?;
    if !status.success() {
        return Err(Error::Command {
            what: format!("cargo build -p {PACKAGE} --target {triple}"),
            status,
            stderr: String::new(),
        });
    }
    exe.ok_or(Error::NoArtifact { target: triple })
}

/// The executable of edge-runtime's binary target in one line of cargo's JSON messages.
fn artifact_executable(line: &str) -> Option<PathBuf> {
    let msg: serde_json::Value = serde_json::from_str(line).ok()?;
    if msg["reason"] != "compiler-artifact" || msg["target"]["name"] != PACKAGE {
        return None;
    }
    let kinds = msg["target"]["kind"].as_array()?;
    if !kinds.iter().any(|k| k == "bin") {
        return None;
    }
    msg["executable"].as_str().map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::ffi::OsStr;

    fn board(name: &str) -> Board {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../boards");
        Board::find(&dir, name).expect("board")
    }

    fn envs(cmd: &Command) -> HashMap<String, Option<String>> {
        cmd.get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect()
    }

    fn args(cmd: &Command) -> Vec<String> {
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn musl_build_for_rpi4() {
        let cmd = build_command(
            &board("rpi4"),
            Libc::Musl,
            "release",
            Path::new("/ws"),
            |_| None,
        )
        .expect("command");
        assert_eq!(cmd.get_program(), OsStr::new("cargo"));
        assert_eq!(cmd.get_current_dir(), Some(Path::new("/ws")));
        assert_eq!(
            args(&cmd),
            [
                "build",
                "-p",
                "edge-runtime",
                "--target",
                "aarch64-unknown-linux-musl",
                "--profile",
                "release",
                "--message-format=json-render-diagnostics"
            ]
        );
        let envs = envs(&cmd);
        assert_eq!(
            envs["CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUSTFLAGS"].as_deref(),
            Some("-C target-cpu=cortex-a72 -C target-feature=+crt-static")
        );
        assert_eq!(envs["RUSTFLAGS"], None, "RUSTFLAGS is removed");
    }

    #[test]
    fn gnu_build_for_jetson_keeps_the_callers_flags() {
        let caller: HashMap<&str, &str> = [
            ("RUSTFLAGS", "-D warnings"),
            (
                "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
                "-C link-arg=-s",
            ),
            ("CARGO", "/opt/cargo"),
        ]
        .into();
        let cmd = build_command(
            &board("jetson-orin-nano"),
            Libc::Gnu,
            "dev",
            Path::new("/ws"),
            |k| caller.get(k).map(|v| v.to_string()),
        )
        .expect("command");
        assert_eq!(cmd.get_program(), OsStr::new("/opt/cargo"));
        let a = args(&cmd);
        assert_eq!(a[4], "aarch64-unknown-linux-gnu");
        assert_eq!(a[6], "dev");
        assert_eq!(
            envs(&cmd)["CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS"].as_deref(),
            Some("-D warnings -C link-arg=-s -C target-cpu=cortex-a78ae")
        );
    }

    #[test]
    fn encoded_rustflags_are_refused() {
        let err = build_command(&board("rpi5"), Libc::Musl, "release", Path::new("."), |k| {
            (k == "CARGO_ENCODED_RUSTFLAGS").then(|| "-Dwarnings".into())
        })
        .unwrap_err();
        assert!(err.to_string().contains("CARGO_ENCODED_RUSTFLAGS"), "{err}");
    }

    #[test]
    fn artifact_line_is_parsed() {
        let line = r#"{"reason":"compiler-artifact","target":{"name":"edge-runtime","kind":["bin"]},"executable":"/t/aarch64-unknown-linux-musl/release/edge-runtime"}"#;
        assert_eq!(
            artifact_executable(line),
            Some(PathBuf::from(
                "/t/aarch64-unknown-linux-musl/release/edge-runtime"
            ))
        );
        let lib = r#"{"reason":"compiler-artifact","target":{"name":"edge-runtime","kind":["lib"]},"executable":null}"#;
        assert_eq!(artifact_executable(lib), None);
        assert_eq!(artifact_executable("not json"), None);
    }
}
