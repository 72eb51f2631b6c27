//! A running board reached over ssh: the bundle copied with scp and its own install.sh
//! run there as root (`--ssh`), or its rollback.
use std::process::{Command, Stdio};

use crate::board::Board;
use crate::bundle::Bundle;
use crate::error::{Error, Result};

/// A board reached with the system's ssh client, never prompting.
#[derive(Debug, Clone)]
pub struct Ssh {
    pub dest: String,
    pub port: Option<u16>,
    /// Passed to install.sh as `--root`: install below this folder on the board instead of /.
    pub remote_root: Option<String>,
}

impl Ssh {
    fn host(&self) -> String {
        match self.port {
            Some(p) => format!("{} (port {p})", self.dest),
            None => self.dest.clone(),
        }
    }

    /// BatchMode: fail instead of asking for a password or a host key; ConnectTimeout: a
    /// board that is off fails in seconds, not minutes.
    fn options(&self, port_flag: &str) -> Vec<String> {
        let mut o: Vec<String> = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]
            .map(String::from)
            .into();
        if let Some(p) = self.port {
            o.extend([port_flag.into(), p.to_string()]);
        }
        o
    }

    fn root_arg(&self) -> String {
        self.remote_root
            .as_deref()
            .map(|r| format!(" --root {}", sh_quote(r)))
            .unwrap_or_default()
    }

    pub fn command(&self, remote: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(self.options("-p")).arg(&self.dest).arg(remote);
        c
    }

    pub fn check_reachable(&self) -> Result<()> {
        let out = self
            .command("true")
            .stdin(Stdio::null())
            .output()
            .map_err(|source| Error::Spawn {
                program: "ssh".into(),
                source,
            })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let detail = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("ssh failed")
                .trim()
                .to_owned();
            return Err(Error::SshUnreachable {
                host: self.host(),
                detail,
            });
        }
        Ok(())
    }

    fn run(&self, what: String, mut cmd: Command) -> Result<()> {
        let status = cmd
            .stdin(Stdio::null())
            .status()
            .map_err(|source| Error::Spawn {
                program: what.clone(),
                source,
            })?;
        if !status.success() {
            return Err(Error::Command {
                what,
                status,
                stderr: String::new(),
            });
        }
        Ok(())
    }

    /// Copies the bundle to /tmp on the board, unpacks it and runs its install.sh as root.
    pub fn install(&self, bundle: &Bundle) -> Result<()> {
        self.check_reachable()?;
        let top = bundle.top();
        let remote_tar = format!("/tmp/{top}.tar.gz");
        let mut scp = Command::new("scp");
        scp.args(self.options("-P"))
            .arg(&bundle.path)
            .arg(format!("{}:{remote_tar}", self.dest));
        self.run(format!("scp to {}", self.host()), scp)?;
        let (top, tar) = (sh_quote(&top), sh_quote(&remote_tar));
        let remote = format!(
            "{RUN_ROOT} cd /tmp && rm -rf {top} && tar xzf {tar} && \
             {{ s=0; run_root {top}/install.sh{} || s=$?; rm -rf {top} {tar}; exit $s; }}",
            self.root_arg()
        );
        self.run(
            format!("install.sh on {}", self.host()),
            self.command(&remote),
        )
    }

    pub fn rollback(&self, board: &Board) -> Result<()> {
        self.check_reachable()?;
        let script = format!(
            "{}{}/current/install.sh",
            self.remote_root
                .as_deref()
                .unwrap_or("")
                .trim_end_matches('/'),
            board.install.prefix
        );
        let remote = format!(
            "{RUN_ROOT} run_root {} --rollback{}",
            sh_quote(&script),
            self.root_arg()
        );
        self.run(
            format!("install.sh --rollback on {}", self.host()),
            self.command(&remote),
        )
    }
}

/// `s` as one word for a POSIX shell.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A remote shell function running `sh ARGS...` as root. `sudo -n` fails at once where a
/// password would be needed (BatchMode leaves no terminal to ask on).
const RUN_ROOT: &str =
    "run_root() { if [ \"$(id -u)\" -eq 0 ]; then sh \"$@\"; else sudo -n sh \"$@\"; fi; };";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_the_shell() {
        for s in ["plain", "with space", "it's", "$(reboot)", "a\"b", ""] {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", sh_quote(s)))
                .output()
                .expect("sh");
            assert_eq!(String::from_utf8_lossy(&out.stdout), s);
        }
    }

    #[test]
    fn ssh_never_prompts() {
        let ssh = Ssh {
            dest: "pi@board".into(),
            port: Some(2222),
            remote_root: None,
        };
        let c = ssh.command("true");
        let args: Vec<_> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=5",
                "-p",
                "2222",
                "pi@board",
                "true"
            ]
        );
    }
}
