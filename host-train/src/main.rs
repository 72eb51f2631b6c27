//! `host-train`: train, evaluate, fine-tune, average, benchmark, report on and export the
//! HydraNet; one file per subcommand in `cli/`.
use std::{io::IsTerminal, process::ExitCode};

use clap::{Parser, Subcommand};

mod cli;

#[derive(Parser)]
#[command(
    name = "host-train",
    version,
    about = "Train the HydraNet (age, gender, ethnicity) with Candle"
)]
struct Cli {
    /// Worker threads for Candle and the input pipeline (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train on a UTKFace-named folder or a CSV manifest.
    Train(cli::train::Args),
    /// Evaluate a checkpoint: metrics, confusion matrices, breakdowns.
    Eval(cli::eval::Args),
    /// Time training steps on random data (img/s).
    Bench(cli::bench::Args),
    /// Write a procedural face-like data set with UTKFace file names.
    Synth(cli::synth::Args),
    /// Export a checkpoint to ONNX (contract in the metadata).
    Export(cli::export::Args),
    /// Train one head (existing or new) on a frozen body; the rest stays bit-identical.
    Finetune(cli::finetune::Args),
    /// Average the weights of several checkpoints of one model (SWA, model soups) and
    /// recompute the BatchNorm statistics.
    Average(cli::average::Args),
    /// Model-card material: training curves, confusion matrices, scatter (PNG), fairness
    /// table and goal checks (markdown, JSON).
    Report(cli::report::Args),
}

/// `host-train --export model.onnx [train options]` (the design card's form) is
/// `host-train train --export model.onnx [train options]`.
fn with_default_subcommand(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut i = 1;
    while i < args.len() && args[i] == "--threads" {
        i += 2;
    }
    if args
        .get(i)
        .is_some_and(|a| a == "--export" || a.to_string_lossy().starts_with("--export="))
    {
        args.insert(i, "train".into());
    }
    args
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
    let cli = Cli::parse_from(with_default_subcommand(std::env::args_os().collect()));
    if let Err(e) = cli::set_threads(cli.threads) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Train(a) => cli::train::run(a),
        Command::Eval(a) => cli::eval::run(a),
        Command::Bench(a) => cli::bench::run(a),
        Command::Synth(a) => cli::synth::run(a),
        Command::Export(a) => cli::export::run(a),
        Command::Finetune(a) => cli::finetune::run(a),
        Command::Report(a) => cli::report::run(a),
        Command::Average(a) => cli::average::run(a),
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
