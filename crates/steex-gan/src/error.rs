//! The GAN crate's error type.

use steex_nn::WeightsError;

/// What can go wrong building or training the discriminator and its losses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GanError {
    /// The weights do not fit the configuration (the message names the tensor).
    #[error("discriminator weights: {0}")]
    Weights(#[from] WeightsError),
    /// The configuration is not a network.
    #[error("discriminator configuration: {0}")]
    Config(String),
    /// The generator does not fit its weights or inputs.
    #[error("{0}")]
    Sean(#[from] steex_sean::SeanError),
    /// An input tensor does not fit the network (the message names it).
    #[error("{0}")]
    Input(String),
}
