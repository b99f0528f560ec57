//! The one-command demo: explain held-out scenes of the synthetic world (`steex_synth`) with
//! the bundled models, and score the explanations against the known cause.
//!
//! The world's decision `stop` depends on the lamp's colour alone, so a faithful explainer
//! (i) flips the decision, (ii) puts the change in the lamp, (iii) succeeds when only the
//! lamp may change and fails when only the other regions may.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use burn::tensor::{Device, Tensor};
use serde::Serialize;
use steex_classifier::{AnyClassifier, DecisionModel};
use steex_deeplab::{DeepLabConfig, DeepLabV3, argmax_classes};
use steex_explain::{AdamConfig, ExplainSettings, Explanation, explain};
use steex_metrics::{ProximityTally, SuccessTally, code_change, proximity};
use steex_nn::Weights;
use steex_sean::{NoiseMode, SeanGenerator, SemanticMask};
use steex_synth::scene::{ATTRIBUTE, CAUSAL, HEIGHT, HELD_OUT_SEED, REGIONS, Scene, WIDTH, scene};
use steex_synth::train::batch_of;

use crate::error::{Error, Result};
use crate::outdir::OutDir;
use crate::render;

/// The bundled generator (trained by `cargo run --release --example train_synthetic`).
pub const GENERATOR: &[u8] = include_bytes!("../assets/synthetic/generator.safetensors");
/// The bundled decision model.
pub const CLASSIFIER: &[u8] = include_bytes!("../assets/synthetic/classifier.safetensors");
/// The bundled segmenter.
pub const SEGMENTER: &[u8] = include_bytes!("../assets/synthetic/segmenter.safetensors");

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
        ExplainSettings {
            attribute: 0,
            steps: self.steps,
            adam: AdamConfig { lr: self.lr, eps: self.adam_eps, ..AdamConfig::default() },
            lambda_prox: self.lambda_prox,
            noise: NoiseMode::Off,
            early_stop: Some(self.early_stop),
            target: None,
            regions,
        }
    }
}

/// The figures `summary.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DemoSummary {
    /// Held-out scenes explained.
    pub n_scenes: usize,
    /// Share of general explanations (all regions free) that flip the decision.
    pub success_rate: f64,
    /// Share of the total absolute pixel change (counterfactual minus reconstruction) that
    /// lies in the causal region (the lamp, true label map), averaged over successful
    /// general explanations that changed something (see `n_unchanged`).
    pub causal_change_fraction: f64,
    /// The same share for the lamp's lit lens alone (the lamp without its dark housing rim,
    /// [`steex_synth::scene::HOUSING_RIM`] pixels wide): what the change is when the
    /// generator's spread across the lens's border is not counted as inside the cause.
    pub lens_change_fraction: f64,
    /// Successful general explanations that changed nothing: the decision model already
    /// gave the reconstruction the target decision, so no step was taken.
    pub n_unchanged: usize,
    /// Success when only the causal region's code may change.
    pub targeted_success_causal: f64,
    /// Success when only the non-causal regions' codes may change.
    pub targeted_success_noncausal: f64,
    /// Mean Adam steps of the general explanations (early stopping).
    pub mean_steps: f64,
    /// Wall time of all explanations (run by `settings.workers` threads) divided by their
    /// number (3 per scene).
    pub seconds_per_explanation: f64,
    /// General explanations: mean L1 / L2 pixel distance query to counterfactual, mean
    /// style-code distance and regions changed (the `steex metrics` code; pixels in [0, 1]).
    pub proximity_l1: Option<f64>,
    pub proximity_l2: Option<f64>,
    pub code_distance: Option<f64>,
    pub regions_changed: Option<f64>,
    /// Decision model accuracy on the real held-out scenes.
    pub classifier_accuracy: f64,
    /// Decision model agreement with the rule on the generator's reconstructions.
    pub classifier_accuracy_reconstructed: f64,
    /// Mean absolute reconstruction error, images in [-1, 1].
    pub reconstruction_mae: f64,
    /// Segmenter pixel accuracy on the held-out scenes.
    pub segmenter_pixel_accuracy: f64,
    /// Images whose optimisation stopped on a non-finite value.
    pub n_failed: usize,
    /// The settings.
    pub settings: DemoOptions,
    /// Success and proximity as `steex metrics` prints them (same code).
    #[serde(skip)]
    pub metrics_table: String,
}

/// One scene's results (a line of `scenes.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SceneResult {
    /// Scene seed.
    pub seed: u64,
    /// The rule's decision.
    pub stop: bool,
    /// Score of `stop` on the query (the real scene): the decision explained.
    pub initial_score: f32,
    /// Score of `stop` on the query's reconstruction (where the optimisation starts).
    pub reconstruction_score: f32,
    /// General explanation: success, steps, final score, causal change fraction.
    pub general: ModeResult,
    /// Only the lamp may change.
    pub causal_only: ModeResult,
    /// Everything but the lamp may change.
    pub noncausal_only: ModeResult,
}

/// One explanation's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModeResult {
    /// The decision flipped.
    pub success: bool,
    /// Adam updates.
    pub steps: usize,
    /// Score of `stop` on the counterfactual.
    pub final_score: f32,
    /// Share of the pixel change (counterfactual minus reconstruction) inside the lamp;
    /// `null` when the counterfactual is the reconstruction (no step was needed).
    pub causal_change_fraction: Option<f64>,
    /// The share inside the lamp's lit lens alone; `null` as above.
    pub lens_change_fraction: Option<f64>,
    /// Why the optimisation stopped on a non-finite value, if it did.
    pub failure: Option<String>,
}

/// The bundled models on `device`.
pub struct DemoModels {
    pub generator: SeanGenerator,
    pub classifier: AnyClassifier,
    pub segmenter: DeepLabV3,
}

fn bundled_error(what: &str, reason: String) -> Error {
    Error::Model { path: PathBuf::from(format!("<bundled {what}>")), reason }
}

fn bundled(bytes: &[u8], what: &str) -> Result<Weights> {
    Weights::from_safetensors(bytes.to_vec()).map_err(|e| bundled_error(what, e.to_string()))
}

impl DemoModels {
    /// Loads the bundled models.
    pub fn load(device: &Device) -> Result<Self> {
        let m = bundled_error;
        let w = bundled(GENERATOR, "generator")?;
        let generator = SeanGenerator::from_weights(&w, device).map_err(|e| m("generator", e.to_string()))?;
        let w = bundled(CLASSIFIER, "classifier")?;
        let classifier = AnyClassifier::from_weights(&w, device).map_err(|e| m("classifier", e.to_string()))?;
        let w = bundled(SEGMENTER, "segmenter")?;
        let config = DeepLabConfig::from_metadata(&w).map_err(|e| m("segmenter", e.to_string()))?;
        let segmenter = DeepLabV3::load(&w, config, device).map_err(|e| m("segmenter", e.to_string()))?;
        Ok(DemoModels { generator, classifier, segmenter })
    }

    /// Loads the three models from `dir` (the files `train_synthetic --out DIR` writes).
    pub fn load_dir(dir: &std::path::Path, device: &Device) -> Result<Self> {
        let generator = crate::io::load_generator(&dir.join("generator.safetensors"), device)?;
        let classifier = crate::io::load_classifier(&dir.join("classifier.safetensors"), device)?;
        let (segmenter, _) = crate::io::load_segmenter(&dir.join("segmenter.safetensors"), device)?;
        Ok(DemoModels { generator, classifier, segmenter })
    }
}

/// A tensor's values on the host (the crate's one conversion).
fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    crate::io::Array::from_tensor(t).data
}

/// Share of `sum |a - b|` over the pixels where `inside` holds; `None` when nothing changed.
fn change_share(a: &[f32], b: &[f32], inside: &[bool]) -> Option<f64> {
    let n = HEIGHT * WIDTH;
    let (mut within, mut total) = (0f64, 0f64);
    for c in 0..3 {
        for (i, &keep) in inside.iter().enumerate().take(n) {
            let d = (a[c * n + i] - b[c * n + i]).abs() as f64;
            total += d;
            if keep {
                within += d;
            }
        }
    }
    (total > 0.0).then(|| within / total)
}

fn upscale(img: &image::RgbImage, k: u32) -> image::RgbImage {
    image::imageops::resize(img, img.width() * k, img.height() * k, image::imageops::FilterType::Nearest)
}

/// A batch of held-out scenes, ready for the explainer (built once, shared by its jobs).
struct Chunk<'a> {
    seeds: &'a [u64],
    scenes: Vec<Scene>,
    /// Images `[B, 3, H, W]` in [-1, 1].
    images: Tensor<4>,
    /// The true label maps, as the generator's mask.
    mask: SemanticMask,
}

impl<'a> Chunk<'a> {
    fn new(seeds: &'a [u64], generator: &SeanGenerator, device: &Device) -> Result<Self> {
        let scenes: Vec<Scene> = seeds.iter().map(|&s| scene(s)).collect();
        let batch = batch_of(&scenes, device);
        let (images, mask) = (batch.images, generator.mask(batch.labels)?);
        Ok(Chunk { seeds, scenes, images, mask })
    }
}

/// Explains every chunk in every mode, on `workers` threads that take the (chunk, mode)
/// jobs in turn, the all-but-the-lamp ones (never stopped early, so the longest) first.
/// Each job's result depends on its chunk and mode only, so the figures do not depend on
/// `workers`. `progress` (called on this thread) is told the explanations finished so far,
/// and their total, after every optimisation step of any job. Returns, per chunk, its
/// explanations in the order of `modes`.
fn explain_all(
    models: &DemoModels,
    chunks: &[Chunk],
    modes: &[ExplainSettings],
    workers: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Vec<Explanation>>> {
    let jobs: Vec<(usize, usize)> =
        (0..modes.len()).rev().flat_map(|m| (0..chunks.len()).map(move |k| (k, m))).collect();
    let total: usize = chunks.iter().map(|c| c.scenes.len()).sum::<usize>() * modes.len();
    let (next, failed) = (AtomicUsize::new(0), AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<usize>();
    let finished: Vec<(usize, Result<Explanation>)> = std::thread::scope(|scope| {
        let (jobs, next, failed) = (&jobs, &next, &failed);
        let handles: Vec<_> = (0..workers.min(jobs.len()))
            .map(|_| {
                let tx = tx.clone();
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let j = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(k, m)) = jobs.get(j) else { break };
                        let c = &chunks[k];
                        let mut stopped = 0;
                        let r = explain(
                            &models.generator,
                            &models.classifier,
                            c.images.clone(),
                            &c.mask,
                            &modes[m],
                            &mut |r| {
                                let now = r.active.iter().filter(|a| !**a).count();
                                let _ = tx.send(now - stopped);
                                stopped = now;
                            },
                        )
                        .map_err(|e| bundled_error("models", e.to_string()));
                        // Images still active after the last step are finished too.
                        let _ = tx.send(c.scenes.len() - stopped);
                        failed.fetch_or(r.is_err(), Ordering::Relaxed);
                        mine.push((j, r));
                    }
                    mine
                })
            })
            .collect();
        drop(tx);
        let mut done = 0;
        for n in rx {
            done += n;
            progress(done.min(total), total);
        }
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    let mut per_chunk: Vec<Vec<Option<Explanation>>> =
        chunks.iter().map(|_| modes.iter().map(|_| None).collect()).collect();
    for (j, r) in finished {
        let (k, m) = jobs[j];
        per_chunk[k][m] = Some(r?);
    }
    per_chunk
        .into_iter()
        .map(|c| c.into_iter().collect::<Option<Vec<_>>>())
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bundled_error("models", "an explanation job did not run".into()))
}

/// Runs the demo, writing `summary.json`, `scenes.jsonl` and `report.png` into
/// `options.out`; `progress` is told the explanations finished and their total (three per
/// scene) as they finish.
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
    let c = &models.classifier;
    let noncausal: Vec<usize> = (0..REGIONS.len()).filter(|k| !CAUSAL.contains(k)).collect();
    let modes = [
        options.explain_settings(None),
        options.explain_settings(Some(CAUSAL.to_vec())),
        options.explain_settings(Some(noncausal)),
    ];

    let seeds: Vec<u64> = (0..options.scenes as u64).map(|i| HELD_OUT_SEED + i).collect();
    let chunks: Vec<Chunk> =
        seeds.chunks(options.batch).map(|s| Chunk::new(s, &models.generator, device)).collect::<Result<_>>()?;
    let t = Instant::now();
    let mut outcomes = explain_all(&models, &chunks, &modes, options.workers, progress)?;
    let explain_seconds = t.elapsed().as_secs_f64();

    let mut results: Vec<SceneResult> = Vec::new();
    let mut report_rows = Vec::new();
    let (mut correct_real, mut correct_rec, mut mae, mut seg_right) = (0usize, 0usize, 0f64, 0usize);
    let mut success = SuccessTally::default();
    let mut prox = ProximityTally::default();
    let mut n_failed = 0;
    let px = HEIGHT * WIDTH;
    for (chunk, outcomes) in chunks.iter().zip(outcomes.drain(..)) {
        let (scenes, images) = (&chunk.scenes, &chunk.images);
        // Segmenter and classifier on the real scenes.
        let seg = host(models.segmenter.forward(images.clone().detach()));
        for (i, s) in scenes.iter().enumerate() {
            let k = REGIONS.len();
            let pred = argmax_classes(&seg[i * k * px..(i + 1) * k * px], k, HEIGHT, WIDTH);
            seg_right += pred.iter().zip(&s.labels).filter(|(p, l)| **p == **l as usize).count();
        }
        let real_logits: Vec<f32> = host(c.logits(images.clone().detach()));
        let rec = host(outcomes[0].reconstruction.clone());
        let rec_logits: Vec<f32> = host(c.logits(outcomes[0].reconstruction.clone()));
        let cfs: Vec<Vec<f32>> = outcomes.iter().map(|e| host(e.counterfactual.clone())).collect();
        let real = host(images.clone());
        let (l, s_len) = (outcomes[0].codes_shape[1], outcomes[0].codes_shape[2]);
        for (i, sc) in scenes.iter().enumerate() {
            let im = |v: &[f32]| v[i * 3 * px..(i + 1) * 3 * px].to_vec();
            correct_real += ((real_logits[i] > 0.0) == sc.stop) as usize;
            let e0 = &outcomes[0].images[i];
            correct_rec += ((rec_logits[i] > 0.0) == sc.stop) as usize;
            mae += im(&rec).iter().zip(im(&real)).map(|(a, b)| (a - b).abs() as f64).sum::<f64>() / (3 * px) as f64;
            let causal: Vec<bool> = sc.labels.iter().map(|&k| CAUSAL.contains(&(k as usize))).collect();
            let lens = sc.lens();
            let mode = |m: usize| {
                let r = &outcomes[m].images[i];
                ModeResult {
                    success: r.success,
                    steps: r.steps_run,
                    final_score: r.final_scores[0],
                    causal_change_fraction: change_share(&im(&cfs[m]), &im(&rec), &causal),
                    lens_change_fraction: change_share(&im(&cfs[m]), &im(&rec), &lens),
                    failure: r.failure.clone(),
                }
            };
            let result = SceneResult {
                seed: chunk.seeds[i],
                stop: sc.stop,
                initial_score: e0.initial_scores[0],
                reconstruction_score: 1.0 / (1.0 + (-rec_logits[i]).exp()),
                general: mode(0),
                causal_only: mode(1),
                noncausal_only: mode(2),
            };
            n_failed += [&result.general, &result.causal_only, &result.noncausal_only]
                .iter()
                .filter(|r| r.failure.is_some())
                .count();
            success.add(result.general.success, Some(ATTRIBUTE));
            // Pixels in [0, 1], as `steex metrics` reads images.
            let unit = |v: Vec<f32>| v.into_iter().map(|x| (x + 1.0) / 2.0).collect::<Vec<f32>>();
            if let Ok(p) = proximity(&unit(im(&real)), &unit(im(&cfs[0]))) {
                prox.add_pixels(p);
            }
            let z = |v: &[f32]| v[i * l * s_len..(i + 1) * l * s_len].to_vec();
            if let Ok(cc) = code_change(&z(&outcomes[0].z_initial), &z(&outcomes[0].z_final), s_len, 1e-6) {
                prox.add_codes(cc);
            }
            if report_rows.len() < options.report_scenes {
                let (q, r, f) = (
                    render::to_rgb(&im(&real), HEIGHT, WIDTH),
                    render::to_rgb(&im(&rec), HEIGHT, WIDTH),
                    render::to_rgb(&im(&cfs[0]), HEIGHT, WIDTH),
                );
                let (d, _) = render::difference_map(&im(&cfs[0]), &im(&rec), HEIGHT, WIDTH);
                let decision = |p: f32| if p > 0.5 { "STOP" } else { "go" };
                let (q, r, f, d) = (upscale(&q, 2), upscale(&r, 2), upscale(&f, 2), upscale(&d, 2));
                let caption = format!(
                    "scene {}: {} p={:.2} -> {} p={:.2}, {} steps, {:.0}% of the change in the lamp",
                    results.len(),
                    decision(result.initial_score),
                    result.initial_score,
                    decision(result.general.final_score),
                    result.general.final_score,
                    result.general.steps,
                    100.0 * result.general.causal_change_fraction.unwrap_or(0.0)
                );
                report_rows.push(render::panel_row(
                    &[("query", &q), ("reconstruction", &r), ("counterfactual", &f), ("difference", &d)],
                    &[caption],
                ));
            }
            results.push(result);
        }
    }

    let n = results.len() as f64;
    let rate = |f: &dyn Fn(&SceneResult) -> bool| results.iter().filter(|r| f(r)).count() as f64 / n;
    // Mean of a share over the successful general explanations that changed something.
    let mean_share = |f: fn(&ModeResult) -> Option<f64>| {
        let v: Vec<f64> = results.iter().filter(|r| r.general.success).filter_map(|r| f(&r.general)).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let n_unchanged =
        results.iter().filter(|r| r.general.success && r.general.causal_change_fraction.is_none()).count();
    let summary = DemoSummary {
        n_scenes: results.len(),
        success_rate: success.rate().unwrap_or(0.0),
        causal_change_fraction: mean_share(|m| m.causal_change_fraction),
        lens_change_fraction: mean_share(|m| m.lens_change_fraction),
        n_unchanged,
        targeted_success_causal: rate(&|r| r.causal_only.success),
        targeted_success_noncausal: rate(&|r| r.noncausal_only.success),
        mean_steps: results.iter().map(|r| r.general.steps as f64).sum::<f64>() / n,
        seconds_per_explanation: explain_seconds / (3.0 * n),
        proximity_l1: prox.l1(),
        proximity_l2: prox.l2(),
        code_distance: prox.code_distance(),
        regions_changed: prox.regions_changed(),
        classifier_accuracy: correct_real as f64 / n,
        classifier_accuracy_reconstructed: correct_rec as f64 / n,
        reconstruction_mae: mae / n,
        segmenter_pixel_accuracy: seg_right as f64 / (n * px as f64),
        n_failed,
        settings: options.clone(),
        metrics_table: steex_metrics::Summary::from_tallies(results.len(), &success, &prox).table(),
    };

    let json = serde_json::to_string_pretty(&summary).unwrap_or_default() + "\n";
    out.write("summary.json", json.as_bytes())?;
    let lines: Vec<String> = results.iter().map(|r| serde_json::to_string(r).unwrap_or_default()).collect();
    out.write("scenes.jsonl", (lines.join("\n") + "\n").as_bytes())?;
    out.write("report.png", &render::png(&stack(&report_rows)))?;
    out.commit()?;
    Ok(summary)
}

/// Rows stacked vertically on white.
fn stack(rows: &[image::RgbImage]) -> image::RgbImage {
    let w = rows.iter().map(|r| r.width()).max().unwrap_or(1);
    let h = rows.iter().map(|r| r.height()).sum::<u32>().max(1);
    let mut out = image::RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    let mut y = 0;
    for r in rows {
        image::imageops::overlay(&mut out, r, 0, y as i64);
        y += r.height();
    }
    out
}

/// The short table the demo prints.
pub fn table(s: &DemoSummary) -> String {
    let rows = [
        ("scenes explained", format!("{}", s.n_scenes), "".to_string()),
        ("success (all regions free)", format!("{:.3}", s.success_rate), ">= 0.95".into()),
        ("change inside the cause (lamp)", format!("{:.3}", s.causal_change_fraction), ">= 0.90".into()),
        ("change inside the lamp's lit lens", format!("{:.3}", s.lens_change_fraction), "".into()),
        ("success, lamp only", format!("{:.3}", s.targeted_success_causal), "".into()),
        ("success, all but the lamp", format!("{:.3}", s.targeted_success_noncausal), "causal - this > 0.3".into()),
        ("mean steps (early stop)", format!("{:.1}", s.mean_steps), "".into()),
        ("seconds per explanation", format!("{:.3}", s.seconds_per_explanation), "".into()),
        (
            "classifier accuracy real / recon.",
            format!("{:.3} / {:.3}", s.classifier_accuracy, s.classifier_accuracy_reconstructed),
            "".into(),
        ),
        ("segmenter pixel accuracy", format!("{:.3}", s.segmenter_pixel_accuracy), "".into()),
    ];
    let mut t = String::new();
    for (k, v, target) in rows {
        t += &format!("  {k:<36} {v:>13}   {target}\n");
    }
    t += "\ngeneral explanations, through the `steex metrics` code:\n";
    t + &s.metrics_table
}
