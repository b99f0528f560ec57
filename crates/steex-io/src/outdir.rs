//! Result folders written atomically: everything goes into a temporary sibling folder that
//! replaces the target in one rename, so a reader never sees a half-written result.
//!
//! [`OutDir::create`] first takes the target's lock ([`OutputLock`]) and holds it until the
//! folder is in place, so the "is it empty" check and the swap belong to one writer; the
//! final rename never replaces a non-empty folder without `force`, even one written by a
//! process that ignores the lock (`renameat2(RENAME_NOREPLACE)` on Linux, [`crate::rename`]).
//! The temporary folder (`.<name>.tmp-<pid>-<random>`) is removed when the result is
//! abandoned (an error), when the process is interrupted ([`crate::interrupt`]), and, for a
//! process killed outright (SIGKILL), by the next run writing the same target.

use std::path::{Path, PathBuf};

use crate::atomic::{Stale, Tracked, parent_dir, remove_stale_temporaries, with_temporaries_locked};
use crate::error::{IoError, Result};
use crate::lock::OutputLock;
use crate::rename::{exchange, rename_noreplace};

/// A result folder being written.
pub struct OutDir {
    target: PathBuf,
    force: bool,
    tmp: tempfile::TempDir,
    _tracked: Tracked,
    /// The target's lock, when this folder holds its own (not inside a locked folder).
    _lock: Option<OutputLock>,
}

impl OutDir {
    /// Locks `target` for this run (failing at once if another process writes it), checks it
    /// can be (re)placed before any work (a non-empty existing folder needs `force`; a file in
    /// its place is an error) and creates the temporary folder beside it.
    pub fn create(target: &Path, force: bool) -> Result<Self> {
        let lock = OutputLock::acquire(target)?;
        Self::prepare(target, force, Some(lock))
    }

    /// A result folder `name` inside the folder `parent` locks (a run's per-image results):
    /// the parent's lock covers it.
    pub fn create_in(parent: &OutputLock, name: &str, force: bool) -> Result<Self> {
        Self::prepare(&parent.target().join(name), force, None)
    }

    fn prepare(target: &Path, force: bool, lock: Option<OutputLock>) -> Result<Self> {
        let arg = |m: String| IoError::Argument(format!("--out {}: {m}", target.display()));
        if target.exists() {
            if !target.is_dir() {
                return Err(arg("exists and is not a folder".into()));
            }
            if !is_empty_dir(target).map_err(|e| arg(e.to_string()))? && !force {
                return Err(arg("exists and is not empty (use --force to replace it)".into()));
            }
        }
        let parent = parent_dir(target);
        if !parent.is_dir() {
            return Err(arg(format!("its parent folder {} does not exist", parent.display())));
        }
        let name = target.file_name().ok_or_else(|| arg("has no folder name".into()))?.to_string_lossy().into_owned();
        // Under the lock, every temporary of this name is a killed run's.
        remove_stale_temporaries(&parent, Stale::OfName(&name));
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}.tmp-{}-", std::process::id()))
            .tempdir_in(&parent)
            .map_err(|e| arg(format!("cannot create a temporary folder in {}: {e}", parent.display())))?;
        let _tracked = Tracked::new(tmp.path());
        Ok(OutDir { target: target.to_path_buf(), force, tmp, _tracked, _lock: lock })
    }

    /// Path of a file inside the folder being written.
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Writes a file into the folder; an error names it as `<target>/<name>`.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        std::fs::write(self.path(name), bytes).map_err(|source| IoError::Io { path: self.target.join(name), source })
    }

    /// Writes the file `name` with `write` (given its path in the folder being written); an
    /// error names it as `<target>/<name>`.
    pub fn write_with(&self, name: &str, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        write(&self.path(name)).map_err(|e| e.at(self.target.join(name)))
    }

    /// Puts the folder in place (the lock is released after): an existing target is
    /// replaced only if it is empty or `force` was given.
    pub fn commit(self) -> Result<()> {
        let OutDir { target, force, tmp, _tracked, _lock } = self;
        let tmp = tmp.keep();
        // The interrupt handler waits while the folder is put in place.
        with_temporaries_locked(|| swap_in(&tmp, &target, force)).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&tmp);
        })
    }
}

fn is_empty_dir(p: &Path) -> std::io::Result<bool> {
    Ok(std::fs::read_dir(p)?.next().is_none())
}

/// Renames the finished folder `tmp` onto `target`: never over a non-empty folder unless
/// `force`, and then by an exchange where the OS offers one (the target is never missing).
fn swap_in(tmp: &Path, target: &Path, force: bool) -> Result<()> {
    let io = |source| IoError::Io { path: target.to_path_buf(), source };
    match rename_noreplace(tmp, target) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(io(e)),
        Err(_) => {}
    }
    let arg = |m: &str| IoError::Argument(format!("--out {}: {m}", target.display()));
    if !target.is_dir() {
        return Err(arg("something other than a folder appeared there while this run wrote; nothing replaced"));
    }
    if is_empty_dir(target).map_err(io)? {
        std::fs::remove_dir(target).map_err(io)?;
        return rename_noreplace(tmp, target).map_err(io);
    }
    if !force {
        return Err(arg("a non-empty folder appeared there while this run wrote; nothing replaced (use --force)"));
    }
    if exchange(tmp, target).map_err(io)? {
        // `tmp` now holds the earlier result.
        let _ = std::fs::remove_dir_all(tmp);
        return Ok(());
    }
    let mut old = tmp.as_os_str().to_owned();
    old.push(".old");
    let old = PathBuf::from(old);
    std::fs::rename(target, &old).map_err(io)?;
    if let Err(e) = rename_noreplace(tmp, target) {
        let _ = std::fs::rename(&old, target);
        return Err(io(e));
    }
    let _ = std::fs::remove_dir_all(&old);
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
        // A second writer of the same folder is refused at once and changes nothing.
        let o = OutDir::create(&target, true).unwrap();
        let e = OutDir::create(&target, true).err().unwrap();
        assert!(matches!(e, IoError::Locked { .. }), "{e}");
        o.write("c.txt", b"3").unwrap();
        o.commit().unwrap();
        assert!(target.join("c.txt").is_file() && !target.join("a.txt").exists());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1, "a temporary or the lock file is left");
    }

    #[test]
    fn a_folder_that_appears_meanwhile_is_not_replaced_without_force() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("res");
        let o = OutDir::create(&target, false).unwrap();
        o.write("mine.txt", b"1").unwrap();
        // Written by a process that ignores the lock.
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("theirs.txt"), b"2").unwrap();
        let e = o.commit().unwrap_err().to_string();
        assert!(e.contains("res") && e.contains("appeared"), "{e}");
        assert!(target.join("theirs.txt").is_file() && !target.join("mine.txt").exists());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        // An empty folder that appeared is replaced.
        let o = OutDir::create(&d.path().join("r2"), false).unwrap();
        o.write("mine.txt", b"1").unwrap();
        std::fs::create_dir(d.path().join("r2")).unwrap();
        o.commit().unwrap();
        assert!(d.path().join("r2/mine.txt").is_file());
    }
}
