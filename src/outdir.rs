//! Result folders written atomically: everything goes into a temporary sibling folder that
//! replaces the target in one rename, so a reader never sees a half-written result.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A result folder being written.
pub struct OutDir {
    target: PathBuf,
    tmp: tempfile::TempDir,
}

impl OutDir {
    /// Checks `target` can be (re)placed, before any work: a non-empty existing folder needs
    /// `force`; a file in its place is an error. Creates the temporary folder beside it.
    pub fn create(target: &Path, force: bool) -> Result<Self> {
        let arg = |m: String| Error::Argument(format!("--out {}: {m}", target.display()));
        if target.exists() {
            if !target.is_dir() {
                return Err(arg("exists and is not a folder".into()));
            }
            let non_empty = std::fs::read_dir(target).map_err(|e| arg(e.to_string()))?.next().is_some();
            if non_empty && !force {
                return Err(arg("exists and is not empty (use --force to replace it)".into()));
            }
        }
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(arg(format!("its parent folder {} does not exist", parent.display())));
        }
        let name = target.file_name().ok_or_else(|| arg("has no folder name".into()))?.to_string_lossy().into_owned();
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}.tmp-"))
            .tempdir_in(&parent)
            .map_err(|e| arg(format!("cannot create a temporary folder: {e}")))?;
        Ok(OutDir { target: target.to_path_buf(), tmp })
    }

    /// Path of a file inside the folder being written.
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Writes a file into the folder.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        std::fs::write(self.path(name), bytes).map_err(|source| Error::Io { path: self.path(name), source })
    }

    /// Puts the folder in place: an existing target is swapped out and removed.
    pub fn commit(self) -> Result<()> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        let tmp = self.tmp.keep();
        if self.target.exists() {
            let old = tmp.with_extension("old");
            std::fs::rename(&self.target, &old).map_err(io(&self.target))?;
            if let Err(e) = std::fs::rename(&tmp, &self.target) {
                let _ = std::fs::rename(&old, &self.target);
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(Error::Io { path: self.target.clone(), source: e });
            }
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(&tmp, &self.target).map_err(io(&self.target))?;
        }
        Ok(())
    }
}
