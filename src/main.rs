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
    /// The one-command demo: explain held-out scenes of the synthetic world with the bundled
    /// models, scored against the known cause (writes steex-demo/).
    Demo(cli::demo::DemoArgs),
    /// Check that the chosen device works and print it.
    Device,
    /// Style codes of an image and its mask (SEAN encoder).
    Encode(cli::sean::EncodeArgs),
    /// An image from a mask and style codes (SEAN generator).
    Generate(cli::sean::GenerateArgs),
    /// Decision model logits and probabilities of an image.
    Classify(cli::classify::ClassifyArgs),
    /// The semantic label map of an image (DeepLabV3).
    Segment(cli::segment::SegmentArgs),
    /// The label maps of a folder of images (DeepLabV3): batched, resumable, sharded; masks
    /// named by stem for `explain-dir --masks`.
    SegmentDir(cli::segment_dir::SegmentDirArgs),
    /// A counterfactual explanation of one image (general or region-targeted).
    Explain(Box<cli::explain::ExplainArgs>),
    /// Counterfactual explanations of a folder of images: batched, resumable, sharded.
    ExplainDir(Box<cli::explain_dir::ExplainDirArgs>),
    /// Merge the output folders of `explain-dir --shard K/N` runs.
    Merge(cli::merge::MergeArgs),
    /// A dataset download to the folders the other commands read (label maps, crops, splits).
    Prepare(cli::prepare::PrepareArgs),
    /// Success rate, proximity, FID, FVA and MNAC of a set of counterfactuals.
    Metrics(Box<cli::metrics::MetricsArgs>),
    /// A local explorer page: pick or upload an image, choose regions, watch an explanation
    /// run (`--demo` serves the synthetic world with its bundled models).
    Serve(cli::serve::ServeArgs),
    /// Train a model on a folder of images (`steex train classifier`).
    #[command(subcommand)]
    Train(cli::train::TrainCommand),
}

fn run(cli: Cli) -> Result<(), String> {
    let device = select(cli.device)?;
    let s = |r: Result<(), steex::Error>| r.map_err(|e| e.to_string());
    match cli.command {
        Command::Demo(a) => s(cli::demo::run(a, &device)),
        Command::Encode(a) => s(cli::sean::encode(a, &device)),
        Command::Generate(a) => s(cli::sean::generate(a, &device)),
        Command::Classify(a) => s(cli::classify::classify(a, &device)),
        Command::Explain(a) => s(cli::explain::run(*a, &device)),
        Command::ExplainDir(a) => s(cli::explain_dir::run(*a, &device)),
        Command::Merge(a) => s(cli::merge::run(a)),
        Command::Metrics(a) => s(cli::metrics::run(*a, &device)),
        Command::Segment(a) => s(cli::segment::run(a, &device)),
        Command::Train(c) => {
            steex::alloc::keep_large_blocks();
            s(cli::train::run(c, &device))
        }
        Command::Prepare(a) => s(cli::prepare::run(a)),
        Command::SegmentDir(a) => s(cli::segment_dir::run(a, &device)),
        Command::Serve(a) => s(cli::serve::run(a, &device)),
        Command::Device => {
            cli::print_stdout(&format!("{}\n", steex::device::describe(&device)));
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    steex::alloc::tune_allocator();
    let cli = Cli::parse();
    // SIGINT/SIGTERM remove the outputs being written: nothing half-written is left.
    if let Err(e) = steex::outdir::install_interrupt_handler(steex::outdir::RESULTS_NOTE) {
        eprintln!("warning: no interrupt handler ({e}); an interrupted run may leave `.tmp` siblings");
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
