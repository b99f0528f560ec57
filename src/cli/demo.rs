//! `steex demo`.

use std::path::PathBuf;

use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use steex::demo::{self, DemoOptions};

/// Arguments of `steex demo` (defaults: 200 scenes, the settings the README reports).
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Result folder (summary.json, scenes.jsonl, report.png).
    #[arg(long, default_value = "steex-demo")]
    pub out: PathBuf,
    /// Replace a non-empty result folder.
    #[arg(long)]
    pub force: bool,
    /// Held-out scenes to explain (each three ways: general, lamp only, all but the lamp).
    #[arg(long, default_value_t = DemoOptions::default().scenes)]
    pub scenes: usize,
    /// Start at this held-out scene (0: the demo's scenes; e.g. 200 with --scenes 400 for
    /// scenes 200-599).
    #[arg(long, default_value_t = 0)]
    pub first_scene: usize,
    /// Scenes optimised together.
    #[arg(long, default_value_t = DemoOptions::default().batch)]
    pub batch: usize,
    /// Batches optimised at the same time, each on its own thread (default: the CPU cores;
    /// each holds its batch in memory, about 0.5 GB at batch 100).
    #[arg(long, default_value_t = DemoOptions::default().workers)]
    pub workers: usize,
    /// Step budget per explanation.
    #[arg(long, default_value_t = DemoOptions::default().steps)]
    pub steps: usize,
    /// Stop an image once flipped for this many steps.
    #[arg(long, default_value_t = DemoOptions::default().early_stop)]
    pub early_stop: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = DemoOptions::default().lr)]
    pub lr: f64,
    /// Adam's denominator epsilon (the published value is 1e-8).
    #[arg(long, default_value_t = DemoOptions::default().adam_eps)]
    pub adam_eps: f64,
    /// Weight of the proximity term.
    #[arg(long, default_value_t = DemoOptions::default().lambda_prox)]
    pub lambda_prox: f64,
    /// Use the models in this folder (`generator.safetensors`, `classifier.safetensors`,
    /// `segmenter.safetensors`, as `cargo run --release --example train_synthetic -- --out
    /// DIR` writes them) instead of the bundled ones.
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// Print the summary as JSON on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// Runs the demo with a progress bar and prints the table.
pub fn run(a: DemoArgs, device: &Device) -> Result<(), steex::Error> {
    let options = DemoOptions {
        out: a.out,
        force: a.force,
        scenes: a.scenes,
        first_scene: a.first_scene,
        batch: a.batch,
        workers: a.workers,
        steps: a.steps,
        early_stop: a.early_stop,
        lr: a.lr,
        adam_eps: a.adam_eps,
        lambda_prox: a.lambda_prox,
        models: a.models,
        ..DemoOptions::default()
    };
    let banner = format!(
        "steex demo: {} held-out street scenes; the decision `stop` is true iff the lamp is red.\n\
         Explaining each three ways (all regions free, lamp only, all but the lamp) with the bundled models.",
        options.scenes
    );
    let pb = ProgressBar::new(3 * options.scenes as u64);
    pb.set_style(
        ProgressStyle::with_template("[{bar:30}] {pos}/{len} explanations ({elapsed} < {eta})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    // The banner once the demo has its output (a refused run prints only its error).
    let mut started = false;
    let summary = demo::run(&options, device, &mut |done, _total| {
        if !std::mem::replace(&mut started, true) {
            pb.suspend(|| eprintln!("{banner}"));
        }
        pb.set_position(done as u64)
    });
    pb.finish_and_clear();
    let summary = summary?;
    let table = demo::table(&summary);
    if a.json {
        eprint!("{table}");
        super::print_stdout(&(serde_json::to_string_pretty(&summary).unwrap_or_default() + "\n"));
    } else {
        super::print_stdout(&table);
    }
    eprintln!("wrote {}/ (summary.json, scenes.jsonl, report.png)", options.out.display());
    Ok(())
}
