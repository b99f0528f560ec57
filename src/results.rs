//! The result schema, one type per file: `result.json` of one explanation
//! ([`ResultJson`]), a line of `results.jsonl` ([`ResultLine`]), `summary.json`
//! ([`Summary`]) and `plan.json` ([`Plan`]). `steex explain`, `explain-dir`, `merge` and
//! `metrics` write and read them through these types only.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use steex_explain::{ExplainSettings, ImageResult};

use crate::dataset::Shard;
use crate::record::mean_region_share;
pub use crate::record::{Goal, NamedTarget, RegionChange, RegionShare};

/// Name of the append-only file of result lines in an output folder.
pub const RESULTS_FILE: &str = "results.jsonl";
/// Name of the summary in an output folder.
pub const SUMMARY_FILE: &str = "summary.json";
/// Name of the run's plan (shard, images, settings) in an output folder.
pub const PLAN_FILE: &str = "plan.json";
/// Name of the file whose presence marks a per-image result folder complete.
pub const RESULT_FILE: &str = "result.json";

/// Outcome of one image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Explained; its result folder is complete.
    #[default]
    Ok,
    /// Not explained (unreadable file, wrong size, missing mask, non-finite optimisation).
    Failed,
}

/// One line of `results.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultLine {
    /// The image's file stem.
    pub image: String,
    /// Outcome.
    pub status: Status,
    /// Why it failed (`None` when ok).
    #[serde(default)]
    pub reason: Option<String>,
    /// Whether the decision flipped (`None` when not explained).
    #[serde(default)]
    pub success: Option<bool>,
    /// Scores on the query.
    #[serde(default)]
    pub initial_scores: Option<Vec<f32>>,
    /// Scores on the counterfactual.
    #[serde(default)]
    pub final_scores: Option<Vec<f32>>,
    /// Adam updates applied.
    #[serde(default)]
    pub steps_run: Option<usize>,
    /// Seconds spent on this image (its batch's time divided by the batch's images).
    #[serde(default)]
    pub seconds: f64,
    /// Decision loss at the final codes.
    #[serde(default)]
    pub loss_decision: Option<f32>,
    /// Proximity loss at the final codes.
    #[serde(default)]
    pub loss_proximity: Option<f32>,
    /// The image file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The result folder (`steex merge` adds it: the shard's folder joined with the stem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Per region: its share of the pixel change and its code distance, as in
    /// `result.json` (absent in lines from older versions and for failed images).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub region_change: Vec<RegionChange>,
}

impl ResultLine {
    /// A failed image.
    pub fn failed(stem: &str, file: Option<&Path>, reason: String) -> Self {
        ResultLine {
            image: stem.to_string(),
            status: Status::Failed,
            reason: Some(reason),
            success: None,
            initial_scores: None,
            final_scores: None,
            steps_run: None,
            seconds: 0.0,
            loss_decision: None,
            loss_proximity: None,
            file: file.map(|p| p.display().to_string()),
            dir: None,
            region_change: Vec::new(),
        }
    }

    /// The line of an image from its `result.json` (as `steex explain-dir` writes it):
    /// status `failed` when the optimisation stopped on a non-finite value.
    pub fn from_result(stem: &str, r: &ResultJson) -> Self {
        ResultLine {
            image: stem.to_string(),
            status: if r.explanation.failure.is_some() { Status::Failed } else { Status::Ok },
            reason: r.explanation.failure.clone(),
            success: Some(r.explanation.success),
            initial_scores: Some(r.explanation.initial_scores.clone()),
            final_scores: Some(r.explanation.final_scores.clone()),
            steps_run: Some(r.explanation.steps_run),
            seconds: r.seconds,
            loss_decision: Some(r.explanation.loss_decision),
            loss_proximity: Some(r.explanation.loss_proximity),
            file: r.inputs.image.as_ref().map(|p| p.display().to_string()),
            dir: None,
            region_change: r.region_change.clone(),
        }
    }

    /// The line of an image from a `result.json` read as a JSON value (fields it lacks take
    /// their defaults); a value that is not a result gives a failed line saying why.
    pub fn from_result_json(stem: &str, v: &serde_json::Value) -> Self {
        match ResultJson::deserialize(v) {
            Ok(r) => Self::from_result(stem, &r),
            Err(e) => Self::failed(stem, None, format!("{RESULT_FILE} is not a result: {e}")),
        }
    }
}

/// An `{id, name}` pair (an attribute, a region).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Named {
    /// Output or label id.
    pub id: usize,
    /// Its name.
    pub name: String,
}

/// The files an explanation was made from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Inputs {
    /// Generator weights.
    pub generator: PathBuf,
    /// Decision model weights.
    pub classifier: PathBuf,
    /// The query image (`None` only in files from elsewhere).
    pub image: Option<PathBuf>,
    /// The label map, when given as a file.
    pub mask: Option<PathBuf>,
    /// The segmenter, when the label map was computed.
    pub segmenter: Option<PathBuf>,
}

/// The batch an image of `steex explain-dir` was optimised in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchInfo {
    /// Batch number in the shard.
    pub index: usize,
    /// Stems of the images optimised together.
    pub images: Vec<String>,
}

/// What `result.json` holds: written last into a result folder by `steex explain` and
/// `steex explain-dir`, read back by `explain-dir --resume` and `steex metrics`. Written
/// through [`steex_io::json::to_pretty_sorted`] (keys sorted); read with every field
/// defaulted, so a file from an older version still reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResultJson {
    /// Scores, logits, target, success, losses, steps and failure of the explanation.
    #[serde(flatten)]
    pub explanation: ImageResult,
    /// `failed` when `failure` is set, else `ok`.
    pub status: Status,
    /// The same as `failure`.
    pub reason: Option<String>,
    /// The attribute explained (the class, for a class goal; the first attribute, for
    /// several).
    pub attribute: Named,
    /// What was asked of the decision model (absent in files from older versions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goal: Option<Goal>,
    /// Per region: its share of the pixel change and its code distance (absent in files
    /// from older versions and where no picture was made).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub region_change: Vec<RegionChange>,
    /// The regions that could change (`None`: all).
    pub regions: Option<Vec<Named>>,
    /// Name of every decision output.
    pub names: Vec<String>,
    /// The preset the names come from.
    pub preset: Option<String>,
    /// The explainer's settings.
    pub settings: ExplainSettings,
    /// The files it was made from.
    pub inputs: Inputs,
    /// Seconds spent (`explain-dir`: the batch's time divided by its images).
    pub seconds: f64,
    /// The image's stem (`explain-dir`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The batch it was optimised in (`explain-dir`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchInfo>,
}

impl ResultJson {
    /// The record of explanation `r` of output `attribute` (`names[attribute]`), with the
    /// names of every output and label, the preset, the settings and the inputs.
    pub fn new(
        r: &ImageResult,
        settings: &ExplainSettings,
        names: &[String],
        regions_all: &[String],
        preset: Option<&str>,
        inputs: Inputs,
    ) -> Self {
        let attribute = settings.attribute;
        ResultJson {
            explanation: r.clone(),
            status: if r.failure.is_some() { Status::Failed } else { Status::Ok },
            reason: r.failure.clone(),
            attribute: Named { id: attribute, name: names[attribute].clone() },
            goal: Some(Goal::of(settings, r.target, names)),
            regions: settings
                .regions
                .as_ref()
                .map(|v| v.iter().map(|&j| Named { id: j, name: regions_all[j].clone() }).collect()),
            names: names.to_vec(),
            preset: preset.map(str::to_string),
            settings: settings.clone(),
            inputs,
            ..Default::default()
        }
    }

    /// The file's text (pretty JSON, keys sorted).
    pub fn to_json(&self) -> String {
        steex_io::json::to_pretty_sorted(self)
    }
}

/// What `summary.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Images in the run (the shard's, or every shard's for a merge).
    pub n_images: usize,
    /// Images explained.
    pub n_ok: usize,
    /// Images that failed.
    pub n_failed: usize,
    /// Images with no result yet (an interrupted run, a missing shard).
    pub n_pending: usize,
    /// Images whose decision flipped.
    pub n_success: usize,
    /// `n_success / n_ok` (0 when nothing was explained).
    pub success_rate: f64,
    /// Mean decision loss at the final codes over the images explained.
    pub mean_loss_decision: Option<f64>,
    /// Mean proximity loss at the final codes over the images explained.
    pub mean_loss_proximity: Option<f64>,
    /// Mean seconds per explained image.
    pub seconds_per_image: Option<f64>,
    /// Whether the run was stopped before the end (Ctrl-C).
    #[serde(default)]
    pub interrupted: bool,
    /// The shard (`K/N`) or `None` for a merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// Images expected but without a result (merge).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// Images with results in more than one shard (merge).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub duplicates: Vec<String>,
    /// Shards (`K/N (M images)`) not given to a merge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_shards: Vec<String>,
    /// Per region, over the successful explanations that recorded it: the mean share of
    /// the pixel change and the mean code distance (which regions the explanations used).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub region_share: Vec<RegionShare>,
}

/// The summary of `n_images` images from their latest result lines.
pub fn summarize<'a>(n_images: usize, latest: impl IntoIterator<Item = &'a ResultLine>) -> Summary {
    let (mut ok, mut failed, mut success) = (0, 0, 0);
    let (mut ld, mut lp, mut secs) = (0f64, 0f64, 0f64);
    let latest: Vec<&ResultLine> = latest.into_iter().collect();
    for &l in &latest {
        match l.status {
            Status::Ok => {
                ok += 1;
                success += l.success.unwrap_or(false) as usize;
                ld += l.loss_decision.unwrap_or(f32::NAN) as f64;
                lp += l.loss_proximity.unwrap_or(f32::NAN) as f64;
                secs += l.seconds;
            }
            Status::Failed => failed += 1,
        }
    }
    let mean = |x: f64| (ok > 0).then(|| x / ok as f64);
    Summary {
        n_images,
        n_ok: ok,
        n_failed: failed,
        n_pending: n_images.saturating_sub(ok + failed),
        n_success: success,
        success_rate: if ok > 0 { success as f64 / ok as f64 } else { 0.0 },
        mean_loss_decision: mean(ld),
        mean_loss_proximity: mean(lp),
        seconds_per_image: mean(secs),
        interrupted: false,
        shard: None,
        missing: Vec::new(),
        duplicates: Vec::new(),
        missing_shards: Vec::new(),
        region_share: mean_region_share(
            latest
                .iter()
                .filter(|l| l.status == Status::Ok && l.success == Some(true))
                .map(|l| l.region_change.as_slice()),
        ),
    }
}

/// What a run records about itself in `plan.json`: enough for `--resume` to refuse
/// different settings and for `steex merge` to find missing images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The shard.
    pub shard: Shard,
    /// Images in the whole folder (every shard).
    pub n_total: usize,
    /// This shard's images, by stem, in order.
    pub images: Vec<String>,
    /// What determines the results (models, options), compared on `--resume`: a
    /// [`PlanSettings`] as a JSON value (keys sorted).
    pub settings: serde_json::Value,
}

/// What determines a run's results, recorded in its [`Plan`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanSettings<'a> {
    /// The explainer's settings.
    pub explain: &'a ExplainSettings,
    /// Name of the attribute explained.
    pub attribute: &'a str,
}

impl PlanSettings<'_> {
    /// As the JSON value a [`Plan`] holds.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("serialisable settings")
    }
}

/// Why two plans are not of the same run.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanMismatch {
    /// Another shard (`--resume` of a folder that ran another one).
    Shard,
    /// Another split of the folder (merge: another shard count or image count).
    Split,
    /// Other settings.
    Settings,
}

impl Plan {
    /// Whether `other` is a plan of the same run as this one: the same settings and split
    /// (shard count and images), and, when `same_shard`, the same shard.
    pub fn compatible(&self, other: &Plan, same_shard: bool) -> Result<(), PlanMismatch> {
        if same_shard && self.shard != other.shard {
            return Err(PlanMismatch::Shard);
        }
        if !same_shard && (self.shard.count, self.n_total) != (other.shard.count, other.n_total) {
            return Err(PlanMismatch::Split);
        }
        if self.settings != other.settings {
            return Err(PlanMismatch::Settings);
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn line(stem: &str, ok: bool, success: bool, ld: f32) -> ResultLine {
        let mut l = ResultLine::failed(stem, None, "bad".into());
        if ok {
            l.status = Status::Ok;
            l.reason = None;
            l.success = Some(success);
            l.loss_decision = Some(ld);
            l.loss_proximity = Some(2.0 * ld);
            l.seconds = 10.0 * ld as f64;
        }
        l
    }

    #[test]
    fn summary_counts_and_means() {
        let ls = [line("a", true, true, 1.0), line("b", true, false, 3.0), line("c", false, false, 0.0)];
        let s = summarize(4, &ls);
        assert_eq!((s.n_images, s.n_ok, s.n_failed, s.n_pending, s.n_success), (4, 2, 1, 1, 1));
        assert_eq!(s.success_rate, 0.5);
        assert_eq!(s.mean_loss_decision, Some(2.0));
        assert_eq!(s.mean_loss_proximity, Some(4.0));
        assert_eq!(s.seconds_per_image, Some(20.0));
        let s = summarize(1, &ls[2..]);
        assert_eq!((s.success_rate, s.mean_loss_decision), (0.0, None));
    }

    #[test]
    fn line_from_result_json() {
        let v = serde_json::json!({"success": true, "initial_scores": [0.25, 0.5], "final_scores": [0.75, 1.0],
            "steps_run": 3, "seconds": 1.5, "loss_decision": 0.125, "loss_proximity": 0.0625, "failure": null,
            "inputs": {"image": "x/a.png"}});
        let l = ResultLine::from_result_json("a", &v);
        assert_eq!(l.status, Status::Ok);
        assert_eq!(l.final_scores, Some(vec![0.75, 1.0]));
        assert_eq!((l.steps_run, l.seconds, l.loss_proximity), (Some(3), 1.5, Some(0.0625)));
        assert_eq!(l.file.as_deref(), Some("x/a.png"));
        let v = serde_json::json!({"failure": "non-finite"});
        assert_eq!(ResultLine::from_result_json("a", &v).status, Status::Failed);
    }

    #[test]
    fn result_json_round_trips_and_plans_compare() {
        let explanation = ImageResult { success: true, steps_run: 3, final_scores: vec![0.75], ..Default::default() };
        let r = ResultJson { explanation, ..Default::default() };
        let back: ResultJson = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(back, r);
        let settings = ExplainSettings::default();
        let p = Plan {
            shard: Shard::default(),
            n_total: 2,
            images: vec!["a".into()],
            settings: PlanSettings { explain: &settings, attribute: "smile" }.to_value(),
        };
        let mut q = p.clone();
        assert_eq!(p.compatible(&q, true), Ok(()));
        q.shard = Shard { index: 1, count: 2 };
        assert_eq!(p.compatible(&q, true), Err(PlanMismatch::Shard));
        assert_eq!(p.compatible(&q, false), Err(PlanMismatch::Split));
        q.shard = p.shard;
        q.settings = PlanSettings { explain: &settings, attribute: "young" }.to_value();
        assert_eq!(p.compatible(&q, false), Err(PlanMismatch::Settings));
    }
}
