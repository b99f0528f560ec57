//! Mean number of attribute changes.

use crate::error::{MetricsError, Result, finite, same};

// MNAC

/// Attributes whose decision (`logit > 0`, i.e. probability above 0.5) differs between the
/// query's and the counterfactual's oracle logits, not counting `exclude` (the target).
pub fn attribute_changes(query_logits: &[f32], cf_logits: &[f32], exclude: Option<usize>) -> Result<usize> {
    same("MNAC: query and counterfactual logits", query_logits.len(), cf_logits.len())?;
    finite("MNAC: query logits", query_logits)?;
    finite("MNAC: counterfactual logits", cf_logits)?;
    Ok(query_logits
        .iter()
        .zip(cf_logits)
        .enumerate()
        .filter(|&(i, (&q, &c))| Some(i) != exclude && (q > 0.0) != (c > 0.0))
        .count())
}

/// Mean number of attribute changes over pairs: rows of `k` oracle logits each (row `i` of
/// both forming pair `i`), `exclude[i]` the target attribute of pair `i` (not counted).
pub fn mnac(query_logits: &[f32], cf_logits: &[f32], k: usize, exclude: &[Option<usize>]) -> Result<f64> {
    same("MNAC: query and counterfactual logits", query_logits.len(), cf_logits.len())?;
    if k == 0 || !query_logits.len().is_multiple_of(k) || query_logits.is_empty() {
        return Err(MetricsError::TooFew { what: "MNAC: logit pairs".into(), need: 1, got: 0 });
    }
    let n = query_logits.len() / k;
    same("MNAC: pairs and target attributes", n, exclude.len())?;
    let mut total = 0;
    for ((q, c), &e) in query_logits.chunks_exact(k).zip(cf_logits.chunks_exact(k)).zip(exclude) {
        total += attribute_changes(q, c, e)?;
    }
    Ok(total as f64 / n as f64)
}
