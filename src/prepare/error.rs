//! What can go wrong preparing a dataset.

use std::path::PathBuf;

/// A dataset that cannot be prepared; every message names the file or folder concerned.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The root is not the named dataset: a file or folder it must hold is absent.
    #[error("{}: not {dataset}: expected {expected}", root.display())]
    NotDataset {
        /// The folder given.
        root: PathBuf,
        /// The dataset named.
        dataset: &'static str,
        /// What was expected in it.
        expected: String,
    },
    /// A listing file (mapping, partition, attributes) has a line that cannot be read.
    #[error("{}: line {line}: {reason}", path.display())]
    Listing {
        /// The file.
        path: PathBuf,
        /// The line number (1-based).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// One input file (a part mask, an image) is unusable; the image is skipped and counted.
    #[error("{}: {reason}", path.display())]
    Input {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The output folder is unusable (inside the input, not empty, not writable).
    #[error("--out {}: {reason}", path.display())]
    Output {
        /// The output folder.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A label file (BDD-OIA's actions) that cannot be read; the message names it.
    #[error(transparent)]
    Labels(#[from] steex_train::TrainError),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl DatasetError {
    /// An unusable input file.
    pub fn input(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        DatasetError::Input { path: path.into(), reason: reason.into() }
    }

    /// A failed read or write of `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| DatasetError::Io { path, source }
    }
}
