//! The trainer's error type.

use std::path::PathBuf;

/// What can go wrong before or while training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] steex_io::IoError),
    /// The label file is in none of the known formats, or malformed.
    #[error("label file {path}: {reason}")]
    Labels { path: PathBuf, reason: String },
    /// An attribute name the label file does not have.
    #[error("unknown attribute `{name}` in {path}; available: {available}")]
    UnknownAttribute { name: String, path: PathBuf, available: String },
    /// Images named in the label file are not in the image folder.
    #[error("{count} image(s) named in {labels} are missing from {dir}, first `{first}`")]
    MissingImages { labels: PathBuf, dir: PathBuf, first: String, count: usize },
    /// An image cannot be read.
    #[error("image {path}: {reason}")]
    Image { path: PathBuf, reason: String },
    /// Nothing to train on.
    #[error("{0}")]
    Empty(String),
    /// An argument is not usable.
    #[error("{0}")]
    Argument(String),
    /// Weights that do not make the model (a bug, or a changed layout).
    #[error("weights: {0}")]
    Weights(#[from] steex_nn::WeightsError),
    /// A model refused its input.
    #[error("{0}")]
    Model(String),
    /// A checkpoint folder cannot be used.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    /// The loss is not finite.
    #[error("training diverged at epoch {epoch}, step {step}: loss {loss}")]
    Diverged { epoch: usize, step: usize, loss: f32 },
    /// Training stopped on request (Ctrl-C) after a checkpoint was written.
    #[error("interrupted; checkpoint in {0}")]
    Interrupted(PathBuf),
}
