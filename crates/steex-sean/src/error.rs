//! The SEAN crate's error type.

use steex_nn::WeightsError;

/// What can go wrong building or running a SEAN generator.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SeanError {
    /// The weights do not fit the configuration.
    #[error("generator weights: {0}")]
    Weights(#[from] WeightsError),
    /// The configuration is not a model.
    #[error("generator configuration: {0}")]
    Config(String),
    /// A mask does not fit the model.
    #[error("mask: {0}")]
    Mask(String),
    /// An image or style codes tensor does not fit the model.
    #[error("{0}")]
    Input(String),
}
