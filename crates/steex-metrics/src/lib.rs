//! Evaluation metrics for counterfactual explanations (spec section 6), with no file I/O:
//!
//! - success rate, overall and per attribute ([`SuccessTally`]);
//! - proximity: mean L1 / L2 pixel distance, style-code distance and regions changed
//!   ([`proximity`], [`code_change`], [`ProximityTally`]);
//! - the Frechet distance between two feature sets, as `pytorch_fid.fid_score` computes it
//!   ([`frechet_distance`], [`fid_from_features`], [`mean_and_covariance`]);
//! - face verification accuracy ([`fva`]: share of pairs whose embeddings have cosine
//!   similarity above 0.5; the published script tests the cosine *distance*, which inverts it);
//! - mean number of attribute changes ([`attribute_changes`], [`mnac`]).
//!
//! Everything takes plain slices, so callers (the `steex metrics` command, the demo) decide
//! where the numbers come from. [`Summary`] gathers the final figures.

use nalgebra::{DMatrix, DVector, SymmetricEigen};

/// What can go wrong computing a metric.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetricsError {
    /// Two inputs that must have the same size do not.
    #[error("{what}: sizes differ ({left} vs {right})")]
    Size { what: String, left: usize, right: usize },
    /// Not enough samples for the statistic.
    #[error("{what}: needs at least {need} samples, got {got}")]
    TooFew { what: String, need: usize, got: usize },
    /// A value is NaN or infinite.
    #[error("{what}: value at index {index} is not finite")]
    NotFinite { what: String, index: usize },
}

/// Result alias.
pub type Result<T> = std::result::Result<T, MetricsError>;

fn same(what: &str, left: usize, right: usize) -> Result<()> {
    if left != right {
        return Err(MetricsError::Size { what: what.into(), left, right });
    }
    Ok(())
}

fn finite(what: &str, v: &[f32]) -> Result<()> {
    match v.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(MetricsError::NotFinite { what: what.into(), index }),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------
// Success

/// Counts explanations and flips, overall and per attribute name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SuccessTally {
    /// Explanations counted.
    pub total: usize,
    /// Explanations whose decision flipped.
    pub flipped: usize,
    /// Per attribute name: `(total, flipped)`, sorted by name.
    pub per_attribute: std::collections::BTreeMap<String, (usize, usize)>,
}

impl SuccessTally {
    /// Adds one explanation's outcome (`attribute`: its name, if known).
    pub fn add(&mut self, success: bool, attribute: Option<&str>) {
        self.total += 1;
        self.flipped += usize::from(success);
        if let Some(a) = attribute {
            let e = self.per_attribute.entry(a.to_string()).or_default();
            e.0 += 1;
            e.1 += usize::from(success);
        }
    }

    /// Share of flipped decisions, `None` when nothing was counted.
    pub fn rate(&self) -> Option<f64> {
        (self.total > 0).then(|| self.flipped as f64 / self.total as f64)
    }

    /// Per attribute: `(name, rate)`.
    pub fn per_attribute_rates(&self) -> Vec<(String, f64)> {
        self.per_attribute.iter().map(|(k, &(t, f))| (k.clone(), f as f64 / t as f64)).collect()
    }
}

// ---------------------------------------------------------------------------------------
// Proximity

/// Pixel distances between a query and its counterfactual.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Proximity {
    /// Mean absolute difference per value.
    pub l1: f64,
    /// Root of the mean squared difference per value.
    pub l2: f64,
}

/// Pixel distances between `query` and `counterfactual` (same layout, any value range; the
/// `steex metrics` command passes images in [0, 1]): `l1 = mean |q - c|`,
/// `l2 = sqrt(mean (q - c)^2)`.
pub fn proximity(query: &[f32], counterfactual: &[f32]) -> Result<Proximity> {
    same("proximity: query and counterfactual", query.len(), counterfactual.len())?;
    if query.is_empty() {
        return Err(MetricsError::TooFew { what: "proximity: pixel values".into(), need: 1, got: 0 });
    }
    finite("proximity: query", query)?;
    finite("proximity: counterfactual", counterfactual)?;
    let (mut s1, mut s2) = (0f64, 0f64);
    for (&q, &c) in query.iter().zip(counterfactual) {
        let d = (q - c) as f64;
        s1 += d.abs();
        s2 += d * d;
    }
    let n = query.len() as f64;
    Ok(Proximity { l1: s1 / n, l2: (s2 / n).sqrt() })
}

/// Change of the style codes of one explanation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CodeChange {
    /// L2 (Frobenius) norm of `z_final - z_initial`.
    pub distance: f64,
    /// Regions (rows) whose code moved: L2 norm of the row's change above `tolerance`.
    pub regions_changed: usize,
}

/// The change between initial and final style codes, both `[regions, style_length]` row-major
/// (`z_initial.npy` / `z_final.npy` of `steex explain`, batch dimension dropped).
pub fn code_change(z_initial: &[f32], z_final: &[f32], style_length: usize, tolerance: f64) -> Result<CodeChange> {
    same("style codes: initial and final", z_initial.len(), z_final.len())?;
    if style_length == 0 || !z_initial.len().is_multiple_of(style_length) {
        return Err(MetricsError::Size {
            what: "style codes: length is not a multiple of the style length".into(),
            left: z_initial.len(),
            right: style_length,
        });
    }
    finite("style codes: initial", z_initial)?;
    finite("style codes: final", z_final)?;
    let mut total = 0f64;
    let mut regions = 0;
    for (a, b) in z_initial.chunks_exact(style_length).zip(z_final.chunks_exact(style_length)) {
        let s: f64 = a.iter().zip(b).map(|(&x, &y)| ((y - x) as f64).powi(2)).sum();
        total += s;
        regions += usize::from(s.sqrt() > tolerance);
    }
    Ok(CodeChange { distance: total.sqrt(), regions_changed: regions })
}

/// Running means of the proximity figures over pairs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProximityTally {
    n_pixels: usize,
    l1: f64,
    l2: f64,
    n_codes: usize,
    code: f64,
    regions: f64,
}

impl ProximityTally {
    /// Adds one pair's pixel distances.
    pub fn add_pixels(&mut self, p: Proximity) {
        self.n_pixels += 1;
        self.l1 += p.l1;
        self.l2 += p.l2;
    }
    /// Adds one explanation's code change.
    pub fn add_codes(&mut self, c: CodeChange) {
        self.n_codes += 1;
        self.code += c.distance;
        self.regions += c.regions_changed as f64;
    }
    /// Mean L1 over pairs.
    pub fn l1(&self) -> Option<f64> {
        (self.n_pixels > 0).then(|| self.l1 / self.n_pixels as f64)
    }
    /// Mean L2 over pairs.
    pub fn l2(&self) -> Option<f64> {
        (self.n_pixels > 0).then(|| self.l2 / self.n_pixels as f64)
    }
    /// Mean code distance over explanations with codes.
    pub fn code_distance(&self) -> Option<f64> {
        (self.n_codes > 0).then(|| self.code / self.n_codes as f64)
    }
    /// Mean number of regions changed.
    pub fn regions_changed(&self) -> Option<f64> {
        (self.n_codes > 0).then(|| self.regions / self.n_codes as f64)
    }
}

// ---------------------------------------------------------------------------------------
// Frechet distance

/// Mean and unbiased covariance (`np.cov(x, rowvar=False)`) of `n` feature rows of length
/// `dim` (row-major `features`), in f64. Needs at least 2 rows.
pub fn mean_and_covariance(features: &[f32], dim: usize) -> Result<(DVector<f64>, DMatrix<f64>)> {
    if dim == 0 || !features.len().is_multiple_of(dim) {
        return Err(MetricsError::Size {
            what: "features: length is not a multiple of the feature size".into(),
            left: features.len(),
            right: dim,
        });
    }
    let n = features.len() / dim;
    if n < 2 {
        return Err(MetricsError::TooFew { what: "covariance of features".into(), need: 2, got: n });
    }
    finite("features", features)?;
    let x = DMatrix::<f64>::from_row_iterator(n, dim, features.iter().map(|&v| v as f64));
    let mean = DVector::<f64>::from_iterator(dim, (0..dim).map(|j| x.column(j).sum() / n as f64));
    let mut centred = x;
    for j in 0..dim {
        let m = mean[j];
        centred.column_mut(j).iter_mut().for_each(|v| *v -= m);
    }
    let cov = centred.transpose() * &centred / (n as f64 - 1.0);
    Ok((mean, cov))
}

/// Symmetric square root of a symmetric positive semi-definite matrix (eigenvalues below zero,
/// from rounding, are clamped to zero).
fn sqrt_psd(m: &DMatrix<f64>) -> DMatrix<f64> {
    let sym = (m + m.transpose()) * 0.5;
    let e = SymmetricEigen::new(sym);
    let d = DMatrix::from_diagonal(&e.eigenvalues.map(|l| l.max(0.0).sqrt()));
    &e.eigenvectors * d * e.eigenvectors.transpose()
}

/// The Frechet distance between N(mu1, sigma1) and N(mu2, sigma2):
/// `|mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr(sqrt(sigma1 sigma2))`, as
/// `pytorch_fid.fid_score.calculate_frechet_distance`. `tr(sqrt(sigma1 sigma2))` is computed
/// as `tr(sqrt(s1 sigma2 s1))` with `s1 = sqrt(sigma1)` (the same eigenvalues, for positive
/// semi-definite covariances), through two symmetric eigendecompositions in f64.
pub fn frechet_distance(
    mu1: &DVector<f64>,
    sigma1: &DMatrix<f64>,
    mu2: &DVector<f64>,
    sigma2: &DMatrix<f64>,
) -> Result<f64> {
    let d = mu1.len();
    same("Frechet distance: means", d, mu2.len())?;
    same("Frechet distance: covariance 1", d, sigma1.nrows())?;
    same("Frechet distance: covariance 1", d, sigma1.ncols())?;
    same("Frechet distance: covariance 2", d, sigma2.nrows())?;
    same("Frechet distance: covariance 2", d, sigma2.ncols())?;
    let s1 = sqrt_psd(sigma1);
    let inner = &s1 * sigma2 * &s1;
    let inner = (&inner + inner.transpose()) * 0.5;
    let tr_covmean: f64 = SymmetricEigen::new(inner).eigenvalues.iter().map(|l| l.max(0.0).sqrt()).sum();
    let diff = mu1 - mu2;
    let fd = diff.dot(&diff) + sigma1.trace() + sigma2.trace() - 2.0 * tr_covmean;
    if !fd.is_finite() {
        return Err(MetricsError::NotFinite { what: "Frechet distance".into(), index: 0 });
    }
    Ok(fd)
}

/// FID between two feature sets (rows of `dim` values each): mean and covariance of each,
/// then [`frechet_distance`], as pytorch-fid does with its activations.
pub fn fid_from_features(a: &[f32], b: &[f32], dim: usize) -> Result<f64> {
    let (m1, s1) = mean_and_covariance(a, dim)?;
    let (m2, s2) = mean_and_covariance(b, dim)?;
    frechet_distance(&m1, &s1, &m2, &s2)
}

// ---------------------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------------------
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn proximity_of_known_difference() {
        let q = [0.0, 0.5, 1.0, 0.25];
        let c = [0.5, 0.5, 0.0, 0.25];
        let p = proximity(&q, &c).unwrap();
        assert!((p.l1 - 1.5 / 4.0).abs() < 1e-12);
        assert!((p.l2 - (1.25f64 / 4.0).sqrt()).abs() < 1e-12);
        assert!(matches!(proximity(&q, &c[..3]), Err(MetricsError::Size { .. })));
        assert!(matches!(proximity(&[f32::NAN], &[0.0]), Err(MetricsError::NotFinite { .. })));
    }

    #[test]
    fn code_change_counts_moved_rows() {
        let a = [0.0, 0.0, 1.0, 1.0, 2.0, 2.0];
        let b = [3.0, 4.0, 1.0, 1.0, 2.0, 2.0];
        let c = code_change(&a, &b, 2, 1e-6).unwrap();
        assert_eq!(c.regions_changed, 1);
        assert!((c.distance - 5.0).abs() < 1e-12);
        assert!(code_change(&a, &b, 4, 1e-6).is_err());
    }

    #[test]
    fn success_tally_per_attribute() {
        let mut t = SuccessTally::default();
        assert_eq!(t.rate(), None);
        t.add(true, Some("smile"));
        t.add(false, Some("smile"));
        t.add(true, Some("young"));
        assert!((t.rate().unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(t.per_attribute_rates(), vec![("smile".into(), 0.5), ("young".into(), 1.0)]);
    }

    #[test]
    fn covariance_matches_definition() {
        let x = [1.0, 2.0, 3.0, 5.0, 5.0, 11.0];
        let (m, s) = mean_and_covariance(&x, 2).unwrap();
        assert!((m[0] - 3.0).abs() < 1e-12 && (m[1] - 6.0).abs() < 1e-12);
        // var(1,3,5) = 4, var(2,5,11) = 21, cov = ((-2)(-4) + 0 + 2*5)/2 = 9.
        assert!((s[(0, 0)] - 4.0).abs() < 1e-12 && (s[(1, 1)] - 21.0).abs() < 1e-12);
        assert!((s[(0, 1)] - 9.0).abs() < 1e-12 && (s[(1, 0)] - 9.0).abs() < 1e-12);
        assert!(mean_and_covariance(&x[..2], 2).is_err());
    }

    #[test]
    fn frechet_distance_closed_forms() {
        // Identical distributions: 0.
        let f = values(300 * 5, 1);
        assert!(fid_from_features(&f, &f, 5).unwrap().abs() < 1e-9);
        // Diagonal covariances: sum (m1-m2)^2 + (sqrt(a) - sqrt(b))^2.
        let mu1 = DVector::from_vec(vec![0.0, 1.0]);
        let mu2 = DVector::from_vec(vec![1.0, 3.0]);
        let s1 = DMatrix::from_diagonal(&DVector::from_vec(vec![4.0, 9.0]));
        let s2 = DMatrix::from_diagonal(&DVector::from_vec(vec![1.0, 16.0]));
        let d = frechet_distance(&mu1, &s1, &mu2, &s2).unwrap();
        assert!((d - (1.0 + 4.0 + 1.0 + 1.0)).abs() < 1e-9, "{d}");
        // A shift of the mean by v adds |v|^2.
        let g: Vec<f32> = f.chunks(5).flat_map(|r| r.iter().enumerate().map(|(i, v)| v + i as f32)).collect();
        let d = fid_from_features(&f, &g, 5).unwrap();
        assert!((d - (0.0 + 1.0 + 4.0 + 9.0 + 16.0)).abs() < 1e-6, "{d}");
    }

    #[test]
    fn fva_counts_similar_pairs_not_distant_ones() {
        // Pairs: identical (similarity 1), opposite (-1), 1/sqrt(5) ~ 0.447 and 0.6: two above 0.5.
        let q = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0];
        let c = [2.0, 0.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0];
        assert!((fva(&q, &c, 2).unwrap() - 0.5).abs() < 1e-12);
        assert!(fva(&q, &c[..4], 2).is_err());
    }

    #[test]
    fn mnac_skips_the_target() {
        let q = [1.0, -1.0, 2.0, 0.5, 1.0, 1.0];
        let c = [-1.0, -2.0, -2.0, 0.5, 1.0, 1.0];
        assert_eq!(attribute_changes(&q[..3], &c[..3], None).unwrap(), 2);
        assert_eq!(attribute_changes(&q[..3], &c[..3], Some(0)).unwrap(), 1);
        assert!((mnac(&q, &c, 3, &[Some(2), None]).unwrap() - 0.5).abs() < 1e-12);
        assert!(mnac(&q, &c, 3, &[None]).is_err());
    }

    #[test]
    fn summary_table_marks_missing() {
        let mut s = SuccessTally::default();
        s.add(true, Some("smile"));
        let mut p = ProximityTally::default();
        p.add_pixels(Proximity { l1: 0.5, l2: 0.25 });
        let sum = Summary::from_tallies(1, &s, &p);
        let t = sum.table();
        assert!(t.contains("success rate") && t.contains("1.0000") && t.contains("0.5000"));
        assert!(t.lines().any(|l| l.starts_with("FID") && l.trim_end().ends_with('-')));
    }
}
