//! The converter's error type: every message names the file or tensor at fault and what was
//! expected.

use std::path::PathBuf;

use crate::pickle_guard::GuardError;

/// Everything that can go wrong while reading a checkpoint or writing its conversion.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The input could not be opened or read.
    #[error("{}: cannot read the checkpoint: {}", path.display(), clean(&source.to_string()))]
    Io { path: PathBuf, source: std::io::Error },

    /// The input is not a PyTorch checkpoint in a supported container.
    #[error(
        "{}: not a PyTorch checkpoint (expected a torch.save file: zip, or legacy pickle \
         stream): {}",
        path.display(),
        clean(reason)
    )]
    NotACheckpoint { path: PathBuf, reason: String },

    /// The checkpoint's pickle failed the allow-list check.
    #[error("{}: {}", path.display(), clean(&source.to_string()))]
    Unsafe { path: PathBuf, source: GuardError },

    /// A tensor cannot be read or has an unusable type.
    #[error("{}: tensor `{}`: {}", path.display(), clean(name), clean(reason))]
    Tensor { path: PathBuf, name: String, reason: String },

    /// Spectral-norm parameters are inconsistent.
    #[error("{}: spectral norm of `{}`: {}", path.display(), clean(name), clean(reason))]
    SpectralNorm { path: PathBuf, name: String, reason: String },

    /// The checkpoint does not hold the model it was converted as.
    #[error("{}: not a {kind} checkpoint: {}", path.display(), clean(reason))]
    WrongModel { path: PathBuf, kind: String, reason: String },

    /// A command-line or configuration argument is invalid.
    #[error("{0}")]
    Argument(String),

    /// The output could not be written.
    #[error("{}: cannot write the output: {}", path.display(), clean(reason))]
    Output { path: PathBuf, reason: String },
}

pub use steex_io::clean;

impl From<steex_io::IoError> for ConvertError {
    fn from(e: steex_io::IoError) -> Self {
        match e {
            steex_io::IoError::Output { path, reason } => ConvertError::Output { path, reason },
            steex_io::IoError::Io { path, source } => ConvertError::Io { path, source },
            other => ConvertError::Argument(other.to_string()),
        }
    }
}

/// Result alias for the converter.
pub type Result<T> = std::result::Result<T, ConvertError>;
