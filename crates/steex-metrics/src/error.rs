//! The metrics' error type and input checks.

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

pub(crate) fn same(what: &str, left: usize, right: usize) -> Result<()> {
    if left != right {
        return Err(MetricsError::Size { what: what.into(), left, right });
    }
    Ok(())
}

pub(crate) fn finite(what: &str, v: &[f32]) -> Result<()> {
    match v.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(MetricsError::NotFinite { what: what.into(), index }),
        None => Ok(()),
    }
}
