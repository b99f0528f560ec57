//! The error type of file input and output: every message names the file and what was
//! expected, on one line.

use std::path::{Path, PathBuf};

/// What can go wrong reading or writing a file.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// A file could not be read.
    #[error("{}: {}", path.display(), clean(&source.to_string()))]
    Io { path: PathBuf, source: std::io::Error },
    /// A `.npy` file is not what was expected.
    #[error("{}: {}", path.display(), clean(reason))]
    Npy { path: PathBuf, reason: String },
    /// An image file is not usable.
    #[error("{}: {}", path.display(), clean(reason))]
    Image { path: PathBuf, reason: String },
    /// A mask file is not usable.
    #[error("{}: {}", path.display(), clean(reason))]
    Mask { path: PathBuf, reason: String },
    /// An output could not be written.
    #[error("{}: cannot write the output: {}", path.display(), clean(reason))]
    Output { path: PathBuf, reason: String },
    /// Another process is writing the same output ([`crate::lock::OutputLock`]).
    #[error(
        "{}: another run ({}) is writing this output; nothing was changed (wait for it to end or stop it)",
        target.display(),
        pid.map_or("pid unknown".to_string(), |p| format!("pid {p}"))
    )]
    Locked { target: PathBuf, pid: Option<u32> },
    /// An argument (an output path, a file's contents as a value) is unusable.
    #[error("{0}")]
    Argument(String),
}

impl IoError {
    /// The same error about `path` instead (a file written under a temporary name is
    /// reported under the name it was to have).
    pub fn at(self, path: PathBuf) -> Self {
        match self {
            IoError::Io { source, .. } => IoError::Io { path, source },
            IoError::Npy { reason, .. } => IoError::Npy { path, reason },
            IoError::Image { reason, .. } => IoError::Image { path, reason },
            IoError::Mask { reason, .. } => IoError::Mask { path, reason },
            IoError::Output { reason, .. } => IoError::Output { path, reason },
            e @ (IoError::Locked { .. } | IoError::Argument(_)) => e,
        }
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, IoError>;

/// Text from a file (a tensor name, a storage key, a parser's message) made safe for a
/// one-line message: control characters such as newlines are shown escaped (`\n`).
pub fn clean(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// A parser's message on one line: the source excerpt lines of a multi-line syntax error
/// (`1 | ...`, `  | ^---`) are dropped, the rest joined, control characters replaced.
pub fn one_line(message: &str) -> String {
    let kept: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with('|')
                && !l.trim_start_matches(|c: char| c.is_ascii_digit()).trim_start().starts_with('|')
        })
        .collect();
    kept.join(" ").chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// Maps an `std::io::Error` on `path` to [`IoError::Io`].
pub fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IoError + '_ {
    move |source| IoError::Io { path: path.to_path_buf(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_stay_on_one_line() {
        assert_eq!(clean("a\nb"), "a\\nb");
        assert_eq!(one_line("bad\n1 | x\n  | ^---\nend"), "bad end");
        let e = IoError::Npy { path: "x.npy".into(), reason: "two\nlines".into() };
        assert_eq!(e.to_string(), "x.npy: two\\nlines");
    }
}
