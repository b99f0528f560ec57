//! What the demo writes: `summary.json` ([`DemoSummary`]), `scenes.jsonl` ([`SceneResult`]
//! lines), `report.png`, and the table it prints.

use serde::Serialize;
use steex_synth::scene::{HEIGHT, WIDTH};

use super::DemoOptions;
use super::score::Scores;

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

impl DemoSummary {
    /// The figures of the scored explanations; `explain_seconds` is the wall time of all
    /// of them.
    pub(super) fn new(scores: &Scores, options: &DemoOptions, explain_seconds: f64) -> Self {
        let px = HEIGHT * WIDTH;
        let n = scores.results.len() as f64;
        let rate = |f: &dyn Fn(&SceneResult) -> bool| scores.results.iter().filter(|r| f(r)).count() as f64 / n;
        // Mean of a share over the successful general explanations that changed something.
        let mean_share = |f: fn(&ModeResult) -> Option<f64>| {
            let v: Vec<f64> =
                scores.results.iter().filter(|r| r.general.success).filter_map(|r| f(&r.general)).collect();
            v.iter().sum::<f64>() / v.len().max(1) as f64
        };
        let n_unchanged =
            scores.results.iter().filter(|r| r.general.success && r.general.causal_change_fraction.is_none()).count();
        DemoSummary {
            n_scenes: scores.results.len(),
            success_rate: scores.success.rate().unwrap_or(0.0),
            causal_change_fraction: mean_share(|m| m.causal_change_fraction),
            lens_change_fraction: mean_share(|m| m.lens_change_fraction),
            n_unchanged,
            targeted_success_causal: rate(&|r| r.causal_only.success),
            targeted_success_noncausal: rate(&|r| r.noncausal_only.success),
            mean_steps: scores.results.iter().map(|r| r.general.steps as f64).sum::<f64>() / n,
            seconds_per_explanation: explain_seconds / (3.0 * n),
            proximity_l1: scores.prox.l1(),
            proximity_l2: scores.prox.l2(),
            code_distance: scores.prox.code_distance(),
            regions_changed: scores.prox.regions_changed(),
            classifier_accuracy: scores.correct_real as f64 / n,
            classifier_accuracy_reconstructed: scores.correct_rec as f64 / n,
            reconstruction_mae: scores.mae / n,
            segmenter_pixel_accuracy: scores.seg_right as f64 / (n * px as f64),
            n_failed: scores.n_failed,
            settings: options.clone(),
            metrics_table: steex_metrics::Summary::from_tallies(scores.results.len(), &scores.success, &scores.prox)
                .table(),
        }
    }
}

pub(super) fn upscale(img: &image::RgbImage, k: u32) -> image::RgbImage {
    image::imageops::resize(img, img.width() * k, img.height() * k, image::imageops::FilterType::Nearest)
}

/// Rows stacked vertically on white.
pub(super) fn stack(rows: &[image::RgbImage]) -> image::RgbImage {
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
