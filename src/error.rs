//! The facade's error type: file-level failures, each naming the file or argument.

use std::path::PathBuf;

/// What can go wrong reading inputs, running a model or writing results.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("{}: {}", path.display(), weights_convert::error::clean(&source.to_string()))]
    Io { path: PathBuf, source: std::io::Error },
    /// A `.npy` file is not what was expected.
    #[error("{}: {}", path.display(), weights_convert::error::clean(reason))]
    Npy { path: PathBuf, reason: String },
    /// An image file is not usable.
    #[error("{}: {}", path.display(), weights_convert::error::clean(reason))]
    Image { path: PathBuf, reason: String },
    /// A mask file is not usable.
    #[error("{}: {}", path.display(), weights_convert::error::clean(reason))]
    Mask { path: PathBuf, reason: String },
    /// A weights file does not hold the expected model.
    #[error("{}: {}", path.display(), weights_convert::error::clean(reason))]
    Model { path: PathBuf, reason: String },
    /// A result could not be written.
    #[error(transparent)]
    Output(#[from] weights_convert::ConvertError),
    /// The generator refused its inputs.
    #[error(transparent)]
    Sean(#[from] steex_sean::SeanError),
    /// A command-line argument is invalid.
    #[error("{0}")]
    Argument(String),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;
