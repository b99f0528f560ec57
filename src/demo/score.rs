//! Scoring the demo's explanations against the known cause.

use steex_classifier::DecisionModel;
use steex_deeplab::argmax_classes;
use steex_explain::Explanation;
use steex_io::host;
use steex_metrics::{ProximityTally, SuccessTally, code_change, proximity};
use steex_synth::scene::{ATTRIBUTE, CAUSAL, HEIGHT, REGIONS, WIDTH};

use super::models::DemoModels;
use super::report::{ModeResult, SceneResult, upscale};
use super::schedule::Chunk;
use crate::render::{difference_map, panel_row, to_rgb};

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

/// What the scoring has gathered so far, over the chunks.
#[derive(Default)]
pub(super) struct Scores {
    /// One result per scene, in order.
    pub results: Vec<SceneResult>,
    /// The rows of `report.png`.
    pub report_rows: Vec<image::RgbImage>,
    /// Real scenes the decision model gets right.
    pub correct_real: usize,
    /// Reconstructions the decision model gets right.
    pub correct_rec: usize,
    /// Sum of the per-scene mean absolute reconstruction errors.
    pub mae: f64,
    /// Pixels the segmenter labels right.
    pub seg_right: usize,
    /// Success of the general explanations, through the `steex metrics` code.
    pub success: SuccessTally,
    /// Proximity of the general explanations, through the `steex metrics` code.
    pub prox: ProximityTally,
    /// Explanations stopped on a non-finite value.
    pub n_failed: usize,
}

impl Scores {
    /// Scores one chunk's explanations (`outcomes`, in the order general, lamp only, all
    /// but the lamp), drawing report rows until there are `report_scenes`.
    pub fn add_chunk(&mut self, models: &DemoModels, chunk: &Chunk, outcomes: &[Explanation], report_scenes: usize) {
        let c = &models.classifier;
        let px = HEIGHT * WIDTH;
        let (scenes, images) = (&chunk.scenes, &chunk.images);
        // Segmenter and classifier on the real scenes.
        let seg = host(models.segmenter.forward(images.clone().detach()));
        for (i, s) in scenes.iter().enumerate() {
            let k = REGIONS.len();
            let pred = argmax_classes(&seg[i * k * px..(i + 1) * k * px], k, HEIGHT, WIDTH);
            self.seg_right += pred.iter().zip(&s.labels).filter(|(p, l)| **p == **l as usize).count();
        }
        let real_logits: Vec<f32> = host(c.logits(images.clone().detach()));
        let rec = host(outcomes[0].reconstruction.clone());
        let rec_logits: Vec<f32> = host(c.logits(outcomes[0].reconstruction.clone()));
        let cfs: Vec<Vec<f32>> = outcomes.iter().map(|e| host(e.counterfactual.clone())).collect();
        let real = host(images.clone());
        let (l, s_len) = (outcomes[0].codes_shape[1], outcomes[0].codes_shape[2]);
        for (i, sc) in scenes.iter().enumerate() {
            let im = |v: &[f32]| v[i * 3 * px..(i + 1) * 3 * px].to_vec();
            self.correct_real += ((real_logits[i] > 0.0) == sc.stop) as usize;
            let e0 = &outcomes[0].images[i];
            self.correct_rec += ((rec_logits[i] > 0.0) == sc.stop) as usize;
            self.mae +=
                im(&rec).iter().zip(im(&real)).map(|(a, b)| (a - b).abs() as f64).sum::<f64>() / (3 * px) as f64;
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
            self.n_failed += [&result.general, &result.causal_only, &result.noncausal_only]
                .iter()
                .filter(|r| r.failure.is_some())
                .count();
            self.success.add(result.general.success, Some(ATTRIBUTE));
            // Pixels in [0, 1], as `steex metrics` reads images.
            let unit = |v: Vec<f32>| v.into_iter().map(|x| (x + 1.0) / 2.0).collect::<Vec<f32>>();
            if let Ok(p) = proximity(&unit(im(&real)), &unit(im(&cfs[0]))) {
                self.prox.add_pixels(p);
            }
            let z = |v: &[f32]| v[i * l * s_len..(i + 1) * l * s_len].to_vec();
            if let Ok(cc) = code_change(&z(&outcomes[0].z_initial), &z(&outcomes[0].z_final), s_len, 1e-6) {
                self.prox.add_codes(cc);
            }
            if self.report_rows.len() < report_scenes {
                let (q, r, f) = (
                    to_rgb(&im(&real), HEIGHT, WIDTH),
                    to_rgb(&im(&rec), HEIGHT, WIDTH),
                    to_rgb(&im(&cfs[0]), HEIGHT, WIDTH),
                );
                let (d, _) = difference_map(&im(&cfs[0]), &im(&rec), HEIGHT, WIDTH);
                let decision = |p: f32| if p > 0.5 { "STOP" } else { "go" };
                let (q, r, f, d) = (upscale(&q, 2), upscale(&r, 2), upscale(&f, 2), upscale(&d, 2));
                let caption = format!(
                    "scene {}: {} p={:.2} -> {} p={:.2}, {} steps, {:.0}% of the change in the lamp",
                    self.results.len(),
                    decision(result.initial_score),
                    result.initial_score,
                    decision(result.general.final_score),
                    result.general.final_score,
                    result.general.steps,
                    100.0 * result.general.causal_change_fraction.unwrap_or(0.0)
                );
                self.report_rows.push(panel_row(
                    &[("query", &q), ("reconstruction", &r), ("counterfactual", &f), ("difference", &d)],
                    &[caption],
                ));
            }
            self.results.push(result);
        }
    }
}
