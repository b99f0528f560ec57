//! Face verification accuracy.

use crate::error::{MetricsError, Result, finite, same};

// FVA

/// Cosine similarity of two vectors (0 when either is zero).
pub fn cosine_similarity(a: &[f32], b: &[f32]) -> Result<f64> {
    same("cosine similarity", a.len(), b.len())?;
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    let den = (aa * bb).sqrt();
    Ok(if den > 0.0 { ab / den } else { 0.0 })
}

/// Threshold on the cosine similarity above which a pair counts as the same face.
pub const FVA_THRESHOLD: f64 = 0.5;

/// Face verification accuracy: share of (query, counterfactual) pairs whose embeddings
/// (`n` rows of `dim` values each, row `i` of both forming pair `i`) have cosine similarity
/// strictly above [`FVA_THRESHOLD`].
pub fn fva(query: &[f32], counterfactual: &[f32], dim: usize) -> Result<f64> {
    fva_at(query, counterfactual, dim, FVA_THRESHOLD)
}

/// [`fva`] with another similarity threshold (pairs strictly above it count).
pub fn fva_at(query: &[f32], counterfactual: &[f32], dim: usize, threshold: f64) -> Result<f64> {
    same("FVA: query and counterfactual embeddings", query.len(), counterfactual.len())?;
    if dim == 0 || !query.len().is_multiple_of(dim) || query.is_empty() {
        return Err(MetricsError::TooFew { what: "FVA: embedding pairs".into(), need: 1, got: 0 });
    }
    finite("FVA: query embeddings", query)?;
    finite("FVA: counterfactual embeddings", counterfactual)?;
    let mut same_face = 0;
    let n = query.len() / dim;
    for (a, b) in query.chunks_exact(dim).zip(counterfactual.chunks_exact(dim)) {
        same_face += usize::from(cosine_similarity(a, b)? > threshold);
    }
    Ok(same_face as f64 / n as f64)
}
