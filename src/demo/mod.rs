//! The one-command demo: explain held-out scenes of the synthetic world (`steex_synth`) with
//! the bundled models, and score the explanations against the known cause.
//!
//! The world's decision `stop` depends on the lamp's colour alone, so a faithful explainer
//! (i) flips the decision, (ii) puts the change in the lamp, (iii) succeeds when only the
//! lamp may change and fails when only the other regions may.
//!
//! - [`models`]: the bundled models (or a folder of them);
//! - `schedule`: the batches and the worker threads that explain them;
//! - `score`: each explanation scored against the cause;
//! - [`report`]: `summary.json`, `scenes.jsonl`, `report.png` and the printed table.

pub mod models;
pub mod report;
mod schedule;
mod score;

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::Device;
use serde::Serialize;
use steex_explain::{ExplainSettings, Optimisation};
use steex_sean::NoiseMode;
use steex_synth::scene::{CAUSAL, HELD_OUT_SEED, REGIONS};

pub use models::{CLASSIFIER, DemoModels, GENERATOR, SEGMENTER};
use report::stack;
pub use report::{DemoSummary, ModeResult, SceneResult, table};
use schedule::{Chunk, explain_all};
use score::Scores;

use crate::error::{Error, Result};
use crate::outdir::OutDir;
use crate::render::png;

/// What the demo runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DemoOptions {
    /// Result folder (replaced atomically; a non-empty one needs `force`).
    pub out: PathBuf,
    /// Replace a non-empty `out`.
    #[serde(skip)]
    pub force: bool,
    /// Held-out scenes explained (each three times: general, lamp only, all but the lamp).
    pub scenes: usize,
    /// Index of the first held-out scene explained (0: the demo's scenes; seeds
    /// `HELD_OUT_SEED + first_scene ..`).
    pub first_scene: usize,
    /// Scenes optimised together.
    pub batch: usize,
    /// Batches optimised at the same time, each on its own thread (on these small models
    /// the CPU backend keeps only about 1.3 of 2 cores busy with one).
    pub workers: usize,
    /// Step budget per explanation.
    pub steps: usize,
    /// Stop an image once flipped for this many steps.
    pub early_stop: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Adam's denominator epsilon. Above the published 1e-8, coordinates whose gradient is
    /// far below it (the regions the decision model hardly reads) take steps in proportion
    /// to their gradient instead of steps of about `lr`.
    pub adam_eps: f64,
    /// Weight of the proximity term.
    pub lambda_prox: f64,
    /// Scenes shown in `report.png`.
    pub report_scenes: usize,
    /// A folder with `generator.safetensors`, `classifier.safetensors` and
    /// `segmenter.safetensors` (as `train_synthetic --out` writes them) to use instead of the
    /// bundled models.
    pub models: Option<PathBuf>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            out: PathBuf::from("steex-demo"),
            force: false,
            scenes: 200,
            first_scene: 0,
            batch: 100,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            steps: 40,
            early_stop: 25,
            lr: 0.3,
            adam_eps: 0.3,
            lambda_prox: 0.5,
            report_scenes: 12,
            models: None,
        }
    }
}

impl DemoOptions {
    /// The explainer's settings for the world's one attribute (`stop`), with these options'
    /// steps, Adam, lambda and early stop, noise off, and `regions` free (`None`: all).
    pub fn explain_settings(&self, regions: Option<Vec<usize>>) -> ExplainSettings {
        self.optimisation().settings(0, regions)
    }

    /// How the codes are optimised: these options' steps, Adam, lambda and early stop,
    /// noise off, the target the opposite of the query's decision.
    pub fn optimisation(&self) -> Optimisation {
        Optimisation {
            steps: self.steps,
            lr: self.lr,
            adam_eps: Some(self.adam_eps),
            lambda_prox: self.lambda_prox,
            noise: NoiseMode::Off,
            early_stop: Some(self.early_stop),
            target: None,
        }
    }
}

/// Runs the demo, writing `summary.json`, `scenes.jsonl` and `report.png` into
/// `options.out`; `progress` is told the explanations finished and their total (three per
/// scene): with 0 once the output is locked and the models loaded, then as they finish.
pub fn run(options: &DemoOptions, device: &Device, progress: &mut dyn FnMut(usize, usize)) -> Result<DemoSummary> {
    if options.scenes == 0 || options.batch == 0 || options.workers == 0 || options.steps == 0 {
        return Err(Error::Argument("--scenes, --batch, --workers and --steps must be positive".into()));
    }
    let out = OutDir::create(&options.out, options.force)?;
    // Gradients reach the style codes only.
    let device = &device.clone().autodiff();
    let models = match &options.models {
        Some(dir) => DemoModels::load_dir(dir, device)?,
        None => DemoModels::load(device)?,
    };
    let noncausal: Vec<usize> = (0..REGIONS.len()).filter(|k| !CAUSAL.contains(k)).collect();
    let modes = [
        options.explain_settings(None),
        options.explain_settings(Some(CAUSAL.to_vec())),
        options.explain_settings(Some(noncausal)),
    ];

    let first = HELD_OUT_SEED + options.first_scene as u64;
    let seeds: Vec<u64> = (0..options.scenes as u64).map(|i| first + i).collect();
    let chunks: Vec<Chunk> =
        seeds.chunks(options.batch).map(|s| Chunk::new(s, &models.generator, device)).collect::<Result<_>>()?;
    progress(0, 3 * options.scenes);
    let t = Instant::now();
    let mut outcomes = explain_all(&models, &chunks, &modes, options.workers, progress)?;
    let explain_seconds = t.elapsed().as_secs_f64();

    let mut scores = Scores::default();
    for (chunk, outcomes) in chunks.iter().zip(outcomes.drain(..)) {
        scores.add_chunk(&models, chunk, &outcomes, options.report_scenes);
    }
    let summary = DemoSummary::new(&scores, options, explain_seconds);

    out.write("summary.json", (steex_io::json::to_pretty(&summary) + "\n").as_bytes())?;
    let lines: Vec<String> = scores.results.iter().map(steex_io::json::to_line).collect();
    out.write("scenes.jsonl", (lines.join("\n") + "\n").as_bytes())?;
    out.write("report.png", &png(&stack(&scores.report_rows)))?;
    out.commit()?;
    Ok(summary)
}
