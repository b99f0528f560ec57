//! Proximity: pixel distances, style-code distance and regions changed.

use crate::error::{MetricsError, Result, finite, same};

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
