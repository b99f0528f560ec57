//! The `weights-convert` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use steex_classifier::OutputKind;
use weights_convert::inspect::Inspection;
use weights_convert::models::{SeanSize, convert_deeplab, convert_densenet_as, convert_resnet_as, convert_sean_file};
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
    /// Convert a SEAN generator (`latest_net_G.pth`). Labels, ngf and style length come from
    /// the tensors; the image size from --preset or --width and --aspect-ratio.
    Sean {
        /// The generator checkpoint (zip or legacy).
        #[arg(long)]
        input: PathBuf,
        /// The safetensors file to write (replaced atomically).
        #[arg(long)]
        out: PathBuf,
        /// celeba (128x128), celebamhq (256x256) or bdd (512x256).
        #[arg(long, conflicts_with_all = ["width", "aspect_ratio"], required_unless_present_all = ["width", "aspect_ratio"])]
        preset: Option<String>,
        /// Output width in pixels (a multiple of 32).
        #[arg(long, requires = "aspect_ratio")]
        width: Option<usize>,
        /// Width / height of the output.
        #[arg(long, requires = "width")]
        aspect_ratio: Option<f64>,
    },
    /// Convert a DenseNet decision model (`checkpoint.tar`); sizes come from the tensors.
    Densenet {
        /// The checkpoint (zip or legacy).
        #[arg(long)]
        input: PathBuf,
        /// The safetensors file to write (replaced atomically).
        #[arg(long)]
        out: PathBuf,
        /// Record the attribute names of a preset (celeba, celebamhq: male, smile, young;
        /// bdd: move_forward, stop, turn_left, turn_right).
        #[arg(long)]
        preset: Option<String>,
        /// How the logits become probabilities: sigmoid (independent outputs, as published)
        /// or softmax (one multi-class decision).
        #[arg(long, default_value = "sigmoid")]
        output: OutputKind,
    },
    /// Convert a ResNet-18/34/50/101/152 decision model: the published wrapper's
    /// `checkpoint.tar` or a plain torchvision classifier's state dict; depth inferred.
    Resnet {
        /// The checkpoint (zip or legacy).
        #[arg(long)]
        input: PathBuf,
        /// The safetensors file to write (replaced atomically).
        #[arg(long)]
        out: PathBuf,
        /// Record the attribute names of a preset (celeba, celebamhq, bdd).
        #[arg(long)]
        preset: Option<String>,
        /// How the logits become probabilities: sigmoid (independent outputs, as published)
        /// or softmax (one multi-class decision).
        #[arg(long, default_value = "sigmoid")]
        output: OutputKind,
    },
    /// Convert a DeepLabV3 segmenter (`checkpoint.tar`); backbone inferred from the tensors.
    Deeplab {
        /// The checkpoint (zip or legacy).
        #[arg(long)]
        input: PathBuf,
        /// The safetensors file to write (replaced atomically).
        #[arg(long)]
        out: PathBuf,
        /// Record the label convention of a preset (celeba, celebamhq: 19 classes = the
        /// generator's labels; bdd: 20 classes shifted by one).
        #[arg(long)]
        preset: Option<String>,
    },
    /// Convert pytorch-fid's FID Inception-v3 (`pt_inception-2015-12-05-*.pth`) for `steex metrics --inception`.
    Inception {
        /// The checkpoint (zip or legacy).
        #[arg(long)]
        input: PathBuf,
        /// The safetensors file to write (replaced atomically).
        #[arg(long)]
        out: PathBuf,
    },
    /// Convert a VGGFace2 face ResNet-50 in torchvision's layout for `steex metrics --face-model`.
    Face {
        /// The checkpoint (zip or legacy).
        #[arg(long)]
        input: PathBuf,
        /// The safetensors file to write (replaced atomically).
        #[arg(long)]
        out: PathBuf,
    },
    /// Convert the reference's attribute oracle (`OracleResnet` `checkpoint.tar`) for `steex metrics --oracle`.
    Oracle {
        /// The checkpoint (zip or legacy).
        #[arg(long)]
        input: PathBuf,
        /// The safetensors file to write (replaced atomically).
        #[arg(long)]
        out: PathBuf,
    },
    /// The inverse direction: a densenet, resnet or deeplab safetensors file (converted, or
    /// written by `steex train`) to a PyTorch checkpoint `{"model_state_dict": ...}` in the
    /// published key layout, for `torch.load` and `load_state_dict`; a sean generator to
    /// SEAN's `latest_net_G.pth` (the state dict, spectral norm's `weight_orig`, `weight_u`,
    /// `weight_v`).
    ToPytorch {
        /// The safetensors file.
        #[arg(long)]
        input: PathBuf,
        /// The checkpoint to write (torch.save's zip format, replaced atomically).
        #[arg(long)]
        out: PathBuf,
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
        Command::Sean { input, out, preset, width, aspect_ratio } => {
            let size = match (preset, width, aspect_ratio) {
                (Some(p), _, _) => SeanSize::Preset(p),
                (None, Some(width), Some(aspect_ratio)) => SeanSize::Explicit { width, aspect_ratio },
                _ => {
                    return Err(ConvertError::Argument("give --preset, or --width and --aspect-ratio".into()));
                }
            };
            let converted = convert_sean_file(&input, &size)?;
            converted.write(&out)?;
            eprintln!("wrote {} (SEAN generator, {} tensors)", out.display(), converted.tensors.len());
        }
        Command::Densenet { input, out, preset, output } => {
            let converted = convert_densenet_as(&Checkpoint::open(&input)?, preset.as_deref(), output)?;
            converted.write(&out)?;
            eprintln!("wrote {} (DenseNet, {} tensors)", out.display(), converted.tensors.len());
        }
        Command::Resnet { input, out, preset, output } => {
            let converted = convert_resnet_as(&Checkpoint::open(&input)?, preset.as_deref(), output)?;
            converted.write(&out)?;
            let depth = converted.metadata.get("depth").map_or("custom".to_string(), |d| format!("ResNet-{d}"));
            eprintln!("wrote {} ({depth}, {} tensors)", out.display(), converted.tensors.len());
        }
        Command::Deeplab { input, out, preset } => {
            let converted = convert_deeplab(&Checkpoint::open(&input)?, preset.as_deref())?;
            converted.write(&out)?;
            let depth = converted.metadata.get("depth").map_or("custom".to_string(), |d| format!("ResNet-{d}"));
            eprintln!("wrote {} (DeepLabV3, {depth} backbone, {} tensors)", out.display(), converted.tensors.len());
        }
        Command::Inception { input, out } => {
            let c = weights_convert::metrics_models::convert_inception(&Checkpoint::open(&input)?)?;
            c.write(&out)?;
            eprintln!("wrote {} (FID Inception-v3, {} tensors)", out.display(), c.tensors.len());
        }
        Command::Face { input, out } => {
            let c = weights_convert::metrics_models::convert_face(&Checkpoint::open(&input)?)?;
            c.write(&out)?;
            eprintln!("wrote {} (face ResNet, {} tensors)", out.display(), c.tensors.len());
        }
        Command::Oracle { input, out } => {
            let c = weights_convert::metrics_models::convert_oracle(&Checkpoint::open(&input)?)?;
            c.write(&out)?;
            eprintln!("wrote {} (attribute oracle, {} tensors)", out.display(), c.tensors.len());
        }
        Command::ToPytorch { input, out } => {
            let n = weights_convert::to_pytorch::to_pytorch(&input, &out)?;
            eprintln!("wrote {} (PyTorch checkpoint, {n} tensors)", out.display());
        }
        Command::StateDict { input, out } => {
            let ckpt = Checkpoint::open(&input)?;
            let converted = convert_state_dict(&ckpt, None)?;
            converted.write(&out)?;
            eprintln!("wrote {} ({} tensors)", out.display(), converted.tensors.len());
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
    // SIGINT/SIGTERM/SIGHUP: remove the output being written (its temporary), never leave a
    // partial file; the previous output, if any, is untouched.
    let _ = steex_io::interrupt::install_interrupt_handler("; the partial output was removed");
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
