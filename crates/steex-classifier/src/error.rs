//! The classifier crate's error type.

use steex_nn::WeightsError;

/// What can go wrong building or running a decision model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClassifierError {
    /// The weights do not fit the configuration.
    #[error("classifier weights: {0}")]
    Weights(#[from] WeightsError),
    /// The configuration is not a model.
    #[error("classifier configuration: {0}")]
    Config(String),
    /// An input the model cannot take.
    #[error("{0}")]
    Input(String),
}
