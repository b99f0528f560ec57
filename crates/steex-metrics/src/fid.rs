//! The Frechet distance between two feature sets, as `pytorch_fid.fid_score` computes it.

use nalgebra::{DMatrix, DVector, SymmetricEigen};

use crate::error::{MetricsError, Result, finite, same};

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
