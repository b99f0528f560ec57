//! The facade's error type: file-level failures, each naming the file or argument.

use std::path::PathBuf;

pub use steex_io::IoError;

/// What can go wrong reading inputs, running a model or writing results.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file (image, mask, `.npy`, JSON, output) could not be read or written.
    #[error(transparent)]
    File(#[from] IoError),
    /// A weights file does not hold the expected model.
    #[error("{}: {}", path.display(), steex_io::clean(reason))]
    Model { path: PathBuf, reason: String },
    /// The generator refused its inputs.
    #[error(transparent)]
    Sean(#[from] steex_sean::SeanError),
    /// A command-line argument is invalid.
    #[error("{0}")]
    Argument(String),
    /// Training could not start or stopped (`steex train`).
    #[error(transparent)]
    Train(#[from] steex_train::TrainError),
    /// A dataset download cannot be prepared (`steex prepare`).
    #[error(transparent)]
    Dataset(#[from] crate::prepare::DatasetError),
}

impl Error {
    /// An unusable image file.
    pub fn image(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::File(IoError::Image { path: path.into(), reason: reason.into() })
    }

    /// An unusable mask file.
    pub fn mask(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::File(IoError::Mask { path: path.into(), reason: reason.into() })
    }

    /// An unusable `.npy` file.
    pub fn npy(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::File(IoError::Npy { path: path.into(), reason: reason.into() })
    }

    /// A file that could not be read.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::File(IoError::Io { path: path.into(), source })
    }
}

/// An invalid command-line argument (the message names it).
pub fn bad(message: String) -> Error {
    Error::Argument(message)
}

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;
