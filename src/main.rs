//! The `steex` command line.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cli::device::{DeviceArg, select};

/// Semantic counterfactual explanations (STEEX) of image classifiers, in pure Rust.
#[derive(Parser, Debug)]
#[command(name = "steex", version, about)]
struct Cli {
    /// Where to compute.
    #[arg(long, global = true, value_enum, default_value = "cpu")]
    device: DeviceArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The one-command demo (not there yet: it lands with the synthetic-world issue).
    Demo,
    /// Check that the chosen device works and print it.
    Device,
}

fn run(cli: Cli) -> Result<(), String> {
    let device = select(cli.device)?;
    match cli.command {
        Command::Demo => {
            eprintln!(
                "steex demo: not implemented yet. It arrives with the synthetic-world demo \
                 issue; see README.md, Status, for what works today."
            );
            Ok(())
        }
        Command::Device => {
            println!("{device:?}");
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
