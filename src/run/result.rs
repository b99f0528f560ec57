//! The result folder of one explanation: what `steex explain` writes, and
//! `steex explain-dir` for each image.

use steex_explain::{Explanation, ImageResult};

use super::Models;
use crate::error::Error;
use crate::io::{Array, LabelMap, write_npy};
use crate::outdir::OutDir;
use crate::record::{RegionChange, region_change};
use crate::render::{difference_map, panel_row, png, to_rgb};
use crate::results::{Inputs, RESULT_FILE, ResultJson};

/// Image `i` of a batched [`Explanation`]: counterfactual and reconstruction `[1, 3, H, W]`,
/// codes `[1, L, S]`.
pub struct ImageArrays {
    /// The generator on the final codes.
    pub counterfactual: Array,
    /// The generator on the initial codes.
    pub reconstruction: Array,
    /// Encoded codes.
    pub z_initial: Array,
    /// Optimised codes.
    pub z_final: Array,
}

/// Splits a batched explanation into one [`ImageArrays`] per image.
pub fn split_explanation(e: &Explanation) -> Vec<ImageArrays> {
    let cf = Array::from_tensor(e.counterfactual.clone());
    let rec = Array::from_tensor(e.reconstruction.clone());
    let [b, l, s] = e.codes_shape;
    let img = cf.data.len() / b.max(1);
    let one = |a: &Array, i: usize| {
        let mut shape = a.shape.clone();
        shape[0] = 1;
        Array { shape, data: a.data[i * img..(i + 1) * img].to_vec() }
    };
    let codes = |v: &[f32], i: usize| Array { shape: vec![1, l, s], data: v[i * l * s..(i + 1) * l * s].to_vec() };
    (0..b)
        .map(|i| ImageArrays {
            counterfactual: one(&cf, i),
            reconstruction: one(&rec, i),
            z_initial: codes(&e.z_initial, i),
            z_final: codes(&e.z_final, i),
        })
        .collect()
}

impl Models {
    /// The record of explanation `r` by these models, from `inputs`.
    pub fn result_json(&self, r: &ImageResult, inputs: Inputs) -> ResultJson {
        ResultJson::new(r, &self.settings, &self.attrs, &self.regions_all, self.preset_name.as_deref(), inputs)
    }
}

/// Writes what `steex explain` writes for one image into `out` (`result.json` last) and
/// puts the folder in place. `result` is the record of the explanation (the inputs and
/// the command's own fields filled in); returns it.
pub fn write_result(
    out: OutDir,
    models: &Models,
    query: &Array,
    labels: &LabelMap,
    arrays: &ImageArrays,
    mut result: ResultJson,
) -> Result<ResultJson, Error> {
    let (h, w) = (query.shape[2], query.shape[3]);
    let attribute = models.settings.attribute;
    let q_img = to_rgb(&query.data, h, w);
    let rec_img = to_rgb(&arrays.reconstruction.data, h, w);
    let cf_img = to_rgb(&arrays.counterfactual.data, h, w);
    // The explanation is what the optimisation changed: counterfactual against
    // reconstruction; the generator's own error (query against reconstruction) apart.
    let (diff_img, max_diff) = difference_map(&arrays.counterfactual.data, &arrays.reconstruction.data, h, w);
    let (err_img, max_err) = difference_map(&query.data, &arrays.reconstruction.data, h, w);
    let err_small = image::imageops::resize(
        &err_img,
        (w as u32 / 2).max(1),
        (h as u32 / 2).max(1),
        image::imageops::FilterType::Triangle,
    );
    result.region_change = region_change(
        &arrays.counterfactual.data,
        &arrays.reconstruction.data,
        &labels.labels,
        &arrays.z_initial.data,
        &arrays.z_final.data,
        &models.regions_all,
    );
    let name = models.attribute_name();
    let captions = vec![
        format!(
            "{name}: p = {:.3} on the query -> {:.3} on the counterfactual ({}) {}",
            result.explanation.initial_probabilities.get(attribute).copied().unwrap_or(f32::NAN),
            result.explanation.final_probabilities.get(attribute).copied().unwrap_or(f32::NAN),
            goal_caption(&result),
            if result.explanation.success { "REACHED" } else { "not reached" }
        ),
        format!(
            "regions: {}; steps {}; cf - rec: |counterfactual - reconstruction| (the explanation), white = {:.3}; \
             q - rec (small): |query - reconstruction| (the generator's error), white = {:.3}",
            models.regions_text(),
            result.explanation.steps_run,
            max_diff,
            max_err
        ),
        change_caption(&result.region_change),
    ];
    let report = panel_row(
        &[
            ("query", &q_img),
            ("reconstruction", &rec_img),
            ("counterfactual", &cf_img),
            ("cf - rec", &diff_img),
            ("q - rec", &err_small),
        ],
        &captions,
    );
    out.write("query.png", &png(&q_img))?;
    out.write("mask.png", &labels.png())?;
    out.write("reconstruction.png", &png(&rec_img))?;
    out.write("counterfactual.png", &png(&cf_img))?;
    out.write("difference.png", &png(&diff_img))?;
    out.write("report.png", &png(&report))?;
    out.write_with("counterfactual.npy", |p| write_npy(p, &arrays.counterfactual))?;
    out.write_with("z_initial.npy", |p| write_npy(p, &arrays.z_initial))?;
    out.write_with("z_final.npy", |p| write_npy(p, &arrays.z_final))?;
    out.write(RESULT_FILE, result.to_json().as_bytes())?;
    out.commit()?;
    Ok(result)
}

/// The goal in a caption: `target 1`, `toward output_3`, `smile=1 young=0`.
fn goal_caption(result: &ResultJson) -> String {
    match &result.goal {
        Some(g) if g.kind == "class" => format!("toward class {}", g.targets[0].name),
        Some(g) if g.kind == "away_from_class" => format!("away from class {}", g.targets[0].name),
        Some(g) if g.kind == "attributes" => {
            let t: Vec<String> = g.targets.iter().map(|t| format!("{}={}", t.name, t.target)).collect();
            format!("targets {}", t.join(" "))
        }
        _ => format!("target {}", result.explanation.target),
    }
}

/// The regions that changed most: `lamp 0.90 (code 3.10), ...` (share of the pixel change,
/// code distance), up to five.
fn change_caption(changes: &[RegionChange]) -> String {
    let mut by_share: Vec<&RegionChange> = changes.iter().filter(|c| c.share > 0.0 || c.code_distance > 0.0).collect();
    by_share.sort_by(|a, b| b.share.total_cmp(&a.share));
    let parts: Vec<String> =
        by_share.iter().take(5).map(|c| format!("{} {:.2} (code {:.2})", c.name, c.share, c.code_distance)).collect();
    if parts.is_empty() {
        "region change: none".into()
    } else {
        format!("region change, share of |cf - rec| (code distance): {}", parts.join(", "))
    }
}
