//! Parts of `result.json` beyond the explainer's own record: what was asked of the
//! decision model, named ([`Goal`]), and where the explanation changed the image
//! ([`RegionChange`], [`region_change`]).

use serde::{Deserialize, Serialize};
use steex_explain::{ExplainSettings, Objective};

/// One decision asked of the model, named: an attribute to 0 or 1, a class to reach (1) or
/// to leave (0).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NamedTarget {
    /// Output or class id.
    pub id: usize,
    /// Its name.
    pub name: String,
    /// 1: reach it (the attribute's decision 1, the class the argmax); 0: leave it.
    pub target: u8,
}

/// What an explanation asked of the decision model, with names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Goal {
    /// `attribute` (published), `attributes`, `class` or `away_from_class`.
    pub kind: String,
    /// The decisions asked for.
    pub targets: Vec<NamedTarget>,
}

impl Goal {
    /// The goal of `settings` for an explanation whose recorded target is `target`.
    pub fn of(settings: &ExplainSettings, target: u8, names: &[String]) -> Self {
        let named =
            |id: usize, target: u8| NamedTarget { id, name: names.get(id).cloned().unwrap_or_default(), target };
        let (kind, targets) = match &settings.objective {
            Objective::Attribute => ("attribute", vec![named(settings.attribute, target)]),
            Objective::Attributes { targets } => {
                ("attributes", targets.iter().map(|t| named(t.output, t.target)).collect())
            }
            Objective::Class { class } => ("class", vec![named(*class, 1)]),
            Objective::AwayFromClass { class } => ("away_from_class", vec![named(*class, 0)]),
        };
        Goal { kind: kind.into(), targets }
    }
}

/// How much one region changed in an explanation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegionChange {
    /// Label id.
    pub id: usize,
    /// Its name.
    pub name: String,
    /// Pixels of the label map with this label.
    pub pixels: usize,
    /// Its share of the absolute pixel change, counterfactual against reconstruction
    /// (the shares sum to 1 when anything changed).
    pub share: f32,
    /// `||z_j - z0_j||`: how far its style code moved.
    pub code_distance: f32,
}

/// Per-region change of one explanation: `counterfactual` and `reconstruction` `[3, H, W]`
/// (flat), `labels` `[H, W]` (255: unknown, counted in no region), codes `[L, S]` (flat),
/// `names` one per label. Every label is listed, in id order.
pub fn region_change(
    counterfactual: &[f32],
    reconstruction: &[f32],
    labels: &[u8],
    z_initial: &[f32],
    z_final: &[f32],
    names: &[String],
) -> Vec<RegionChange> {
    let l = names.len();
    let n = labels.len();
    let s = z_initial.len().checked_div(l).unwrap_or(0);
    let mut change = vec![0f64; l];
    let mut pixels = vec![0usize; l];
    for (i, &lab) in labels.iter().enumerate() {
        let j = lab as usize;
        if j >= l {
            continue;
        }
        pixels[j] += 1;
        change[j] += (0..3).map(|c| (counterfactual[c * n + i] - reconstruction[c * n + i]).abs() as f64).sum::<f64>();
    }
    let total: f64 = change.iter().sum();
    (0..l)
        .map(|j| {
            let d: f32 = (0..s).map(|k| (z_final[j * s + k] - z_initial[j * s + k]).powi(2)).sum::<f32>().sqrt();
            RegionChange {
                id: j,
                name: names[j].clone(),
                pixels: pixels[j],
                share: if total > 0.0 { (change[j] / total) as f32 } else { 0.0 },
                code_distance: d,
            }
        })
        .collect()
}

/// One region's change averaged over explanations (`summary.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegionShare {
    /// Label id.
    pub id: usize,
    /// Its name.
    pub name: String,
    /// Mean of its [`RegionChange::share`].
    pub mean_share: f64,
    /// Mean of its [`RegionChange::code_distance`].
    pub mean_code_distance: f64,
    /// Explanations averaged (those that recorded their region change).
    pub images: usize,
}

/// The mean change per region (by id, in id order) over `records`, one [`RegionChange`]
/// list per explanation; empty lists (older results) are left out, and an empty result
/// means none recorded it.
pub fn mean_region_share<'a>(records: impl IntoIterator<Item = &'a [RegionChange]>) -> Vec<RegionShare> {
    let mut acc: std::collections::BTreeMap<usize, RegionShare> = Default::default();
    for record in records {
        for r in record {
            let e =
                acc.entry(r.id).or_insert_with(|| RegionShare { id: r.id, name: r.name.clone(), ..Default::default() });
            e.mean_share += r.share as f64;
            e.mean_code_distance += r.code_distance as f64;
            e.images += 1;
        }
    }
    acc.into_values()
        .map(|mut e| {
            e.mean_share /= e.images as f64;
            e.mean_code_distance /= e.images as f64;
            e
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_follow_the_labels_and_distances_the_codes() {
        // 2 labels on 4 pixels; only pixel 3 (label 1) changes; code 1 moves by (3, 4).
        let rec = vec![0f32; 12];
        let mut cf = rec.clone();
        cf[3] = 0.5;
        cf[4 + 3] = 0.5;
        let names = vec!["a".to_string(), "b".to_string()];
        let r = region_change(&cf, &rec, &[0, 0, 255, 1], &[0.0; 4], &[0.0, 0.0, 3.0, 4.0], &names);
        assert_eq!((r[0].pixels, r[1].pixels), (2, 1));
        assert_eq!((r[0].share, r[1].share), (0.0, 1.0));
        assert_eq!((r[0].code_distance, r[1].code_distance), (0.0, 5.0));
    }

    #[test]
    fn mean_share_averages_per_region_and_skips_empty_records() {
        let rc = |id: usize, share: f32, d: f32| RegionChange {
            id,
            name: format!("r{id}"),
            pixels: 1,
            share,
            code_distance: d,
        };
        let a = vec![rc(0, 0.25, 1.0), rc(1, 0.75, 3.0)];
        let b = vec![rc(0, 0.75, 2.0), rc(1, 0.25, 0.0)];
        let m = mean_region_share([a.as_slice(), &[], b.as_slice()]);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].name.as_str(), m[0].mean_share, m[0].mean_code_distance, m[0].images), ("r0", 0.5, 1.5, 2));
        assert_eq!((m[1].mean_share, m[1].mean_code_distance), (0.5, 1.5));
        assert!(mean_region_share(std::iter::empty()).is_empty());
    }
}
