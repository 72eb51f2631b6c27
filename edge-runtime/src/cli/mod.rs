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

/// `--int8-kernel`, for the commands that measure (`bench`, `eval`).
#[derive(clap::Args, Debug)]
pub struct Int8KernelArg {
    /// Who runs an int8 file's convolutions (for side-by-side measurements).
    #[arg(long, value_enum, default_value_t = edge_runtime::Int8Kernel::Edge)]
    int8_kernel: edge_runtime::Int8Kernel,
}

impl Int8KernelArg {
    pub fn kernel(&self) -> edge_runtime::Int8Kernel {
        self.int8_kernel
    }

    /// Loads `model` for batches of `batch` with this choice.
    pub fn load(
        &self,
        model: &std::path::Path,
        batch: usize,
    ) -> anyhow::Result<edge_runtime::Engine> {
        let options = edge_runtime::LoadOptions {
            int8_kernel: self.int8_kernel,
        };
        Ok(edge_runtime::Engine::load_with(model, batch, options)?)
    }
}
