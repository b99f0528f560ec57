//! The figures `steex metrics` reports, and their table.

use crate::{ProximityTally, SuccessTally};

// Summary

/// The figures `steex metrics` reports; `None` where not computed (model not given, no
/// `result.json`, ...).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Pairs (query, counterfactual) evaluated.
    pub n_pairs: usize,
    /// Share of flipped decisions.
    pub success_rate: Option<f64>,
    /// Per attribute name: share of flipped decisions.
    pub success_per_attribute: Vec<(String, f64)>,
    /// Mean L1 pixel distance (images in [0, 1]).
    pub l1: Option<f64>,
    /// Mean L2 (RMS) pixel distance.
    pub l2: Option<f64>,
    /// Mean style-code distance.
    pub code_distance: Option<f64>,
    /// Mean number of regions whose code changed.
    pub regions_changed: Option<f64>,
    /// FID between counterfactuals and real images.
    pub fid: Option<f64>,
    /// Face verification accuracy.
    pub fva: Option<f64>,
    /// Mean number of attribute changes.
    pub mnac: Option<f64>,
}

impl Summary {
    /// Fills success and proximity figures from the tallies.
    pub fn from_tallies(n_pairs: usize, success: &SuccessTally, prox: &ProximityTally) -> Self {
        Summary {
            n_pairs,
            success_rate: success.rate(),
            success_per_attribute: success.per_attribute_rates(),
            l1: prox.l1(),
            l2: prox.l2(),
            code_distance: prox.code_distance(),
            regions_changed: prox.regions_changed(),
            ..Default::default()
        }
    }

    /// A plain-text table, one figure per line (`-` where not computed).
    pub fn table(&self) -> String {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
        let mut rows =
            vec![("pairs".to_string(), self.n_pairs.to_string()), ("success rate".to_string(), f(self.success_rate))];
        if self.success_per_attribute.len() > 1 {
            for (a, r) in &self.success_per_attribute {
                rows.push((format!("  success ({a})"), format!("{r:.4}")));
            }
        }
        rows.extend([
            ("L1 (pixels, [0,1])".to_string(), f(self.l1)),
            ("L2 (pixels, RMS)".to_string(), f(self.l2)),
            ("code distance".to_string(), f(self.code_distance)),
            ("regions changed".to_string(), f(self.regions_changed)),
            ("FID".to_string(), f(self.fid)),
            ("FVA".to_string(), f(self.fva)),
            ("MNAC".to_string(), f(self.mnac)),
        ]);
        let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter().map(|(k, v)| format!("{k:<w$}  {v}\n")).collect()
    }
}
