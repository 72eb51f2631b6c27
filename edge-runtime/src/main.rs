//! `edge-runtime`: run an exported HydraNet on the board.
use std::{io::IsTerminal, process::ExitCode};

use clap::{Parser, Subcommand};

mod cli;

#[derive(Parser)]
#[command(
    name = "edge-runtime",
    version,
    about = "Run an exported HydraNet ONNX file with tract"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Predict age, gender and ethnicity for images: one JSON line each.
    Predict(cli::predict::Args),
    /// Score the model on a UTKFace-named folder or a CSV manifest.
    Eval(cli::eval::Args),
    /// Latency percentiles and throughput.
    Bench(cli::bench::Args),
    /// Time the integer convolution's tiles (each this CPU runs) on the body's layers.
    Kernels(cli::kernels::Args),
    /// Print the model's contract.
    Info(cli::info::Args),
    /// Camera (or folder, or pattern) → model → one JSON line per steady prediction.
    Run(cli::run::Args),
    /// List cameras and the formats each offers.
    Sources(cli::sources::Args),
    /// Camera → model → a full-screen web page (live video, answers, health, metrics).
    #[cfg(feature = "kiosk")]
    Kiosk(cli::kiosk::Args),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_target(false)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Predict(a) => cli::predict::run(a),
        Command::Eval(a) => cli::eval::run(a),
        Command::Bench(a) => cli::bench::run(a),
        Command::Kernels(a) => cli::kernels::run(a),
        Command::Info(a) => cli::info::run(a),
        Command::Run(a) => cli::run::run(a),
        Command::Sources(a) => cli::sources::run(a),
        #[cfg(feature = "kiosk")]
        Command::Kiosk(a) => cli::kiosk::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
