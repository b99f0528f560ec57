//! Exclusive outputs: one writer per result folder (or file) at a time.
//!
//! A run takes [`OutputLock::acquire`] on its output before it reads or changes anything
//! there and holds it to the end. The lock is an advisory lock (`flock` on Unix, through
//! `std::fs::File::try_lock`) on a hidden file **beside** the output, `.<name>.lock`, so it
//! stays valid while the output itself is swapped, removed (`--force`) or replaced by a
//! rename. The file records the holder's pid for the message a second writer gets. The
//! operating system releases the lock when the holder exits in any way (SIGKILL included),
//! so a killed run never leaves a stale lock: the next run reuses its file. A run that ends
//! normally (or on Ctrl-C) removes the file.
//!
//! ```no_run
//! # fn main() -> steex_io::Result<()> {
//! let _lock = steex_io::OutputLock::acquire("results/".as_ref())?; // held until dropped
//! # Ok(()) }
//! ```

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::atomic::{Tracked, parent_dir};
use crate::error::{IoError, Result};

/// An exclusive lock on an output path, held until dropped.
pub struct OutputLock {
    target: PathBuf,
    path: PathBuf,
    file: File,
    /// The interrupt handler removes the lock file on Ctrl-C.
    _tracked: Tracked,
}

impl std::fmt::Debug for OutputLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputLock").field("target", &self.target).field("path", &self.path).finish()
    }
}

impl OutputLock {
    /// Takes the lock on `target` (a folder or file, existing or not; its parent folder must
    /// exist). Fails at once, without waiting and without touching `target`, when another
    /// process holds it: [`IoError::Locked`] names the output and the holder's pid.
    pub fn acquire(target: &Path) -> Result<Self> {
        let path = lock_path(target)?;
        let fail = |reason: String| IoError::Output { path: path.clone(), reason };
        loop {
            let mut file = open_rw(&path).map_err(|e| {
                fail(format!("cannot create the lock file of {} (its folder must be writable): {e}", target.display()))
            })?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(IoError::Locked { target: target.to_path_buf(), pid: holder_pid(&mut file) });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(fail(format!("cannot lock it: {e}"))),
            }
            // A holder that finished removed the file after we opened it: what we locked is
            // no longer the lock, start again with the file now at `path`.
            if !still_at(&file, &path) {
                continue;
            }
            let pid = format!("{}\n", std::process::id());
            (|| {
                file.set_len(0)?;
                file.seek(SeekFrom::Start(0))?;
                file.write_all(pid.as_bytes())?;
                file.flush()
            })()
            .map_err(|e| fail(e.to_string()))?;
            let _tracked = Tracked::new(&path);
            return Ok(OutputLock { target: target.to_path_buf(), path, file, _tracked });
        }
    }

    /// The locked output.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The lock file (`.<name>.lock` beside the output).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still held; a process that opened it meanwhile sees it is gone
        // (`still_at`) and takes a new one.
        #[cfg(unix)]
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// The lock file of `target`: `.<name>.lock` in its parent folder.
pub fn lock_path(target: &Path) -> Result<PathBuf> {
    let arg = |m: String| IoError::Argument(format!("{}: {m}", target.display()));
    // `.` or `..` name no folder: lock the folder they stand for.
    let target = match target.file_name() {
        Some(_) => target.to_path_buf(),
        None => target.canonicalize().map_err(|e| arg(e.to_string()))?,
    };
    let name = target.file_name().ok_or_else(|| arg("has no name to lock".into()))?.to_string_lossy().into_owned();
    let parent = parent_dir(&target);
    if !parent.is_dir() {
        return Err(arg(format!("its parent folder {} does not exist", parent.display())));
    }
    Ok(parent.join(format!(".{name}.lock")))
}

fn open_rw(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o644);
    o.open(path)
}

/// Whether `file` is still the file at `path`.
fn still_at(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
}

/// The pid the holder wrote (it may not have yet: a few short tries).
fn holder_pid(file: &mut File) -> Option<u32> {
    for _ in 0..50 {
        let mut text = String::new();
        if file.seek(SeekFrom::Start(0)).is_ok()
            && file.read_to_string(&mut text).is_ok()
            && let Ok(pid) = text.trim().parse()
        {
            return Some(pid);
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_nothing_left_after() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("res");
        let a = OutputLock::acquire(&target).unwrap();
        assert_eq!(a.path(), d.path().join(".res.lock"));
        assert_eq!(std::fs::read_to_string(a.path()).unwrap().trim(), std::process::id().to_string());
        // flock locks belong to the open file: a second open in this process is refused too.
        let e = OutputLock::acquire(&target).unwrap_err();
        assert!(matches!(e, IoError::Locked { pid: Some(p), .. } if p == std::process::id()), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("res") && msg.contains(&std::process::id().to_string()), "{msg}");
        assert!(!target.exists(), "a refused lock created the output");
        drop(a);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "the lock file is removed");
        // A lock file left by a killed holder (no lock on it) is taken over.
        std::fs::write(d.path().join(".res.lock"), b"999999999\n").unwrap();
        let b = OutputLock::acquire(&target).unwrap();
        drop(b);
        assert!(OutputLock::acquire(&d.path().join("no/such/res")).unwrap_err().to_string().contains("parent"));
    }

    #[test]
    fn trailing_slashes_and_dots_name_the_same_lock() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("res")).unwrap();
        let a = OutputLock::acquire(&d.path().join("res/")).unwrap();
        assert!(OutputLock::acquire(&d.path().join("res")).is_err());
        assert!(OutputLock::acquire(&d.path().join("res/.")).is_err());
        drop(a);
    }
}
