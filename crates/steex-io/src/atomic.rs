//! Atomic file replacement and the registry of temporaries being written.
//!
//! A writer fills a temporary sibling (`.<name>.<random>.tmp` for a file,
//! `.<name>.tmp-<pid>-<random>` for a folder) and renames it over the target, so a reader
//! never sees a half-written result. Every temporary is tracked while it exists, so the
//! interrupt handler ([`crate::interrupt`]) can remove it; a sibling left by a process
//! killed outright (SIGKILL) is removed by the next run writing the same output, under its
//! lock ([`remove_stale_temporaries`]).

use std::io::{BufWriter, Write};
#[cfg(unix)]
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{IoError, Result};

/// Temporary files and folders being written, removed by [`remove_tracked_temporaries`]
/// when the process is interrupted.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn pending() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records a temporary path to remove if the process is interrupted before it is renamed
/// into place or dropped ([`untrack_temporary`]).
pub fn track_temporary(path: &Path) {
    pending().push(path.to_path_buf());
}

/// Forgets a temporary path (it was renamed into place or removed).
pub fn untrack_temporary(path: &Path) {
    pending().retain(|p| p != path);
}

/// Runs `f` (a rename of temporaries into place) with the interrupt handler held off, so an
/// interruption never lands between the steps of a replacement.
pub fn with_temporaries_locked<T>(f: impl FnOnce() -> T) -> T {
    let _g = pending();
    f()
}

/// Removes every tracked temporary (files and folders) and keeps the lock, so no new
/// replacement starts: for an interrupt handler that then exits the process.
pub fn remove_tracked_temporaries() -> usize {
    let mut g = pending();
    let n = g.len();
    for p in g.drain(..) {
        if p.is_dir() {
            let _ = std::fs::remove_dir_all(&p);
        } else {
            let _ = std::fs::remove_file(&p);
        }
    }
    std::mem::forget(g);
    n
}

/// A tracked temporary path, forgotten on drop.
pub struct Tracked(PathBuf);

impl Tracked {
    /// Tracks `path` until the guard is dropped.
    pub fn new(path: &Path) -> Self {
        track_temporary(path);
        Tracked(path.to_path_buf())
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        untrack_temporary(&self.0);
    }
}

/// Which temporaries [`remove_stale_temporaries`] removes. The caller holds the lock of
/// what they were written for ([`crate::lock::OutputLock`]), so none of them is being
/// written: each is what a killed run left.
#[derive(Debug, Clone, Copy)]
pub enum Stale<'a> {
    /// `.<name>.tmp-*` folders: the temporaries of the result folder `<name>`.
    OfName(&'a str),
    /// Every hidden temporary: `.*.tmp-*` folders and `.*.tmp` files (a folder only one run
    /// writes at a time).
    All,
}

/// Removes the temporaries in `dir` a killed run left, as `which` says.
pub fn remove_stale_temporaries(dir: &Path, which: Stale<'_>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        let stale = match which {
            Stale::OfName(name) => is_dir && file.starts_with(&format!(".{name}.tmp-")),
            Stale::All => file.starts_with('.') && if is_dir { file.contains(".tmp-") } else { file.ends_with(".tmp") },
        };
        if stale && is_dir {
            let _ = std::fs::remove_dir_all(e.path());
        } else if stale {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The folder a path lives in (`.` for a bare name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes `out` atomically: `write` fills a temporary file in the same folder, which is
/// flushed, synced and then renamed over `out`. On any error nothing is left behind and an
/// existing `out` is untouched.
pub fn atomic_write(out: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    let fail = |reason: String| IoError::Output { path: out.to_path_buf(), reason };
    if out.is_dir() {
        return Err(fail("it is a directory, expected a file path".into()));
    }
    let name = out.file_name().ok_or_else(|| fail("the path has no file name".into()))?.to_string_lossy().into_owned();
    let dir = parent_dir(out);
    if !dir.is_dir() {
        return Err(fail(format!("its folder {} does not exist", dir.display())));
    }
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    // Readable as any written file is (tempfile's default is owner-only).
    #[cfg(unix)]
    builder.permissions(std::fs::Permissions::from_mode(0o644));
    let tmp = builder
        .tempfile_in(&dir)
        .map_err(|e| fail(format!("cannot create a temporary file in {}: {e}", dir.display())))?;
    let _tracked = Tracked::new(tmp.path());
    (|| {
        {
            let mut w = BufWriter::new(tmp.as_file());
            write(&mut w).map_err(|e| fail(e.to_string()))?;
            w.flush().map_err(|e| fail(e.to_string()))?;
        }
        tmp.as_file().sync_all().map_err(|e| fail(e.to_string()))?;
        with_temporaries_locked(|| tmp.persist(out).map(|_| ())).map_err(|e| fail(e.error.to_string()))
    })()
}

/// Writes bytes to `path` atomically.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write(path, |w| w.write_all(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_directories_and_missing_folders_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let e = atomic_write(dir.path(), |_| Ok(())).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        let e = atomic_write(&dir.path().join("no/such/x.bin"), |_| Ok(())).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        let out = dir.path().join("y.bin");
        std::fs::write(&out, b"old").unwrap();
        let e = atomic_write(&out, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("boom"))
        });
        assert!(e.is_err());
        assert_eq!(std::fs::read(&out).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn stale_temporaries_by_name_or_all() {
        let dir = tempfile::tempdir().unwrap();
        for d in [".res.tmp-12-abc", ".res.tmp-12-abc.old", ".other.tmp-1-y", "kept"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        for f in [".summary.json.x1.tmp", ".res.lock", "file.tmp"] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        let left = |d: &Path| {
            let mut v: Vec<String> =
                std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
            v.sort();
            v
        };
        remove_stale_temporaries(dir.path(), Stale::OfName("res"));
        assert_eq!(left(dir.path()), [".other.tmp-1-y", ".res.lock", ".summary.json.x1.tmp", "file.tmp", "kept"]);
        remove_stale_temporaries(dir.path(), Stale::All);
        assert_eq!(left(dir.path()), [".res.lock", "file.tmp", "kept"]);
    }
}
