//! Result folders written atomically: everything goes into a temporary sibling folder that
//! replaces the target in one rename, so a reader never sees a half-written result.
//!
//! The temporary folder (`.<name>.tmp-<pid>-<random>`) is removed when the result is
//! abandoned (an error), when the process is interrupted ([`crate::interrupt`]), and, for a
//! process killed outright (SIGKILL), by the next run writing the same target, which
//! removes siblings whose process is gone.

use std::path::{Path, PathBuf};

use crate::atomic::{Stale, Tracked, parent_dir, remove_stale_temporaries, with_temporaries_locked};
use crate::error::{IoError, Result};

/// A result folder being written.
pub struct OutDir {
    target: PathBuf,
    tmp: tempfile::TempDir,
    _tracked: Tracked,
}

impl OutDir {
    /// Checks `target` can be (re)placed, before any work: a non-empty existing folder needs
    /// `force`; a file in its place is an error. Creates the temporary folder beside it.
    pub fn create(target: &Path, force: bool) -> Result<Self> {
        let arg = |m: String| IoError::Argument(format!("--out {}: {m}", target.display()));
        if target.exists() {
            if !target.is_dir() {
                return Err(arg("exists and is not a folder".into()));
            }
            let non_empty = std::fs::read_dir(target).map_err(|e| arg(e.to_string()))?.next().is_some();
            if non_empty && !force {
                return Err(arg("exists and is not empty (use --force to replace it)".into()));
            }
        }
        let parent = parent_dir(target);
        if !parent.is_dir() {
            return Err(arg(format!("its parent folder {} does not exist", parent.display())));
        }
        let name = target.file_name().ok_or_else(|| arg("has no folder name".into()))?.to_string_lossy().into_owned();
        remove_stale_temporaries(&parent, Stale::OfDeadProcesses(&name));
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}.tmp-{}-", std::process::id()))
            .tempdir_in(&parent)
            .map_err(|e| arg(format!("cannot create a temporary folder: {e}")))?;
        let _tracked = Tracked::new(tmp.path());
        Ok(OutDir { target: target.to_path_buf(), tmp, _tracked })
    }

    /// Path of a file inside the folder being written.
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Writes a file into the folder.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        std::fs::write(self.path(name), bytes).map_err(|source| IoError::Io { path: self.path(name), source })
    }

    /// Puts the folder in place: an existing target is swapped out and removed.
    pub fn commit(self) -> Result<()> {
        let tmp = self.tmp.keep();
        // The interrupt handler waits while the folder is put in place.
        let target = self.target.clone();
        with_temporaries_locked(|| swap_in(&tmp, &target))
    }
}

/// Renames the finished folder `tmp` onto `target`, swapping out an existing one.
fn swap_in(tmp: &Path, target: &Path) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| IoError::Io { path, source }
    };
    if target.exists() {
        let mut old = tmp.as_os_str().to_owned();
        old.push(".old");
        let old = PathBuf::from(old);
        std::fs::rename(target, &old).map_err(io(target))?;
        if let Err(e) = std::fs::rename(tmp, target) {
            let _ = std::fs::rename(&old, target);
            let _ = std::fs::remove_dir_all(tmp);
            return Err(IoError::Io { path: target.to_path_buf(), source: e });
        }
        let _ = std::fs::remove_dir_all(&old);
    } else if let Err(e) = std::fs::rename(tmp, target) {
        let _ = std::fs::remove_dir_all(tmp);
        return Err(IoError::Io { path: target.to_path_buf(), source: e });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_appears_whole_or_not_at_all() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("res");
        let o = OutDir::create(&target, false).unwrap();
        o.write("a.txt", b"1").unwrap();
        assert!(!target.exists());
        o.commit().unwrap();
        assert_eq!(std::fs::read(target.join("a.txt")).unwrap(), b"1");
        let e = OutDir::create(&target, false).err().unwrap().to_string();
        assert!(e.contains("--force"), "{e}");
        // Abandoned: the earlier result stays, no temporary is left.
        let o = OutDir::create(&target, true).unwrap();
        o.write("b.txt", b"2").unwrap();
        drop(o);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        assert!(target.join("a.txt").is_file());
    }
}
