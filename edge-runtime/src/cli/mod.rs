//! One file per subcommand: its arguments and its handler.
pub mod bench;
pub mod eval;
pub mod info;
#[cfg(feature = "kiosk")]
pub mod kiosk;
pub mod predict;
pub mod run;
pub mod sources;

/// Sets tract's executor to `n` threads (1 = tract's default, single-threaded).
pub fn set_threads(n: usize) -> anyhow::Result<()> {
    use tract_linalg::multithread::{set_default_executor, Executor};
    anyhow::ensure!(n >= 1, "--threads must be at least 1");
    set_default_executor(if n == 1 {
        Executor::SingleThread
    } else {
        Executor::multithread(n)
    });
    Ok(())
}
