//! The `weights-convert` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use weights_convert::inspect::Inspection;
use weights_convert::{Checkpoint, ConvertError, convert_state_dict};

/// Import PyTorch checkpoints into safetensors, safely: nothing in a checkpoint is executed.
#[derive(Parser, Debug)]
#[command(name = "weights-convert", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List a checkpoint's top-level keys and every tensor's name, shape and dtype.
    Inspect {
        /// A torch.save file (zip or legacy).
        #[arg(long)]
        input: PathBuf,
        /// Print only JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Convert any state dict without a model check (for your own models): takes
    /// `model_state_dict` when present, resolves spectral norm, drops `num_batches_tracked`.
    StateDict {
        /// A torch.save file (zip or legacy).
        #[arg(long)]
        input: PathBuf,
        /// The safetensors file to write (replaced atomically).
        #[arg(long)]
        out: PathBuf,
    },
}

fn run(cli: Cli) -> Result<(), ConvertError> {
    match cli.command {
        Command::Inspect { input, json } => {
            let ckpt = Checkpoint::open(&input)?;
            let report = Inspection::of(&ckpt);
            let text = if json {
                serde_json::to_string_pretty(&report).expect("serialisable") + "\n"
            } else {
                report.to_text()
            };
            print_stdout(&text);
        }
        Command::StateDict { input, out } => {
            let ckpt = Checkpoint::open(&input)?;
            let converted = convert_state_dict(&ckpt, None)?;
            converted.write(&out)?;
            eprintln!(
                "wrote {} ({} tensors)",
                out.display(),
                converted.tensors.len()
            );
        }
    }
    Ok(())
}

/// Writes to stdout; a closed pipe (`| head`) ends the output quietly instead of panicking.
fn print_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
