//! Result folders written atomically: everything goes into a temporary sibling folder that
//! replaces the target in one rename, so a reader never sees a half-written result.
//!
//! The temporary folder (`.<name>.tmp-<pid>-<random>`) is removed when the result is
//! abandoned (an error), when the process is interrupted (the `steex` binary's SIGINT and
//! SIGTERM handler, [`crate::interrupt`]), and, for a process killed outright (SIGKILL), by
//! the next run writing the same target, which removes siblings whose process is gone.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A result folder being written.
pub struct OutDir {
    target: PathBuf,
    tmp: tempfile::TempDir,
    _tracked: Tracked,
}

/// A temporary path the interrupt handler removes, forgotten on drop.
struct Tracked(PathBuf);

impl Drop for Tracked {
    fn drop(&mut self) {
        weights_convert::output::untrack_temporary(&self.0);
    }
}

/// Removes `.<name>.tmp-<pid>-*` siblings in `parent` left by a process that no longer
/// runs (killed outright). Only where the OS lists processes under `/proc`.
fn remove_stale_siblings(parent: &Path, name: &str) {
    let proc = Path::new("/proc/self");
    if !proc.exists() {
        return;
    }
    let prefix = format!(".{name}.tmp-");
    let Ok(rd) = std::fs::read_dir(parent) else { return };
    for e in rd.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = file.strip_prefix(&prefix) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
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
        remove_stale_siblings(&parent, &name);
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}.tmp-{}-", std::process::id()))
            .tempdir_in(&parent)
            .map_err(|e| arg(format!("cannot create a temporary folder: {e}")))?;
        weights_convert::output::track_temporary(tmp.path());
        let _tracked = Tracked(tmp.path().to_path_buf());
        Ok(OutDir { target: target.to_path_buf(), tmp, _tracked })
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
        let tmp = self.tmp.keep();
        // The interrupt handler waits while the folder is put in place.
        let target = self.target.clone();
        weights_convert::output::with_temporaries_locked(|| swap_in(&tmp, &target))
    }
}

/// Renames the finished folder `tmp` onto `target`, swapping out an existing one.
fn swap_in(tmp: &Path, target: &Path) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    if target.exists() {
        let mut old = tmp.as_os_str().to_owned();
        old.push(".old");
        let old = PathBuf::from(old);
        std::fs::rename(target, &old).map_err(io(target))?;
        if let Err(e) = std::fs::rename(tmp, target) {
            let _ = std::fs::rename(&old, target);
            let _ = std::fs::remove_dir_all(tmp);
            return Err(Error::Io { path: target.to_path_buf(), source: e });
        }
        let _ = std::fs::remove_dir_all(&old);
    } else {
        if let Err(e) = std::fs::rename(tmp, target) {
            let _ = std::fs::remove_dir_all(tmp);
            return Err(Error::Io { path: target.to_path_buf(), source: e });
        }
    }
    Ok(())
}

type Callback = Box<dyn Fn() + Send>;

/// Work to do when the process is interrupted, after the temporaries are removed.
static ON_INTERRUPT: std::sync::Mutex<Vec<Callback>> = std::sync::Mutex::new(Vec::new());

/// Installs (once) the handler of SIGINT, SIGTERM and SIGHUP: it removes every temporary
/// file and folder being written (result folders, `.npy`/PNG outputs), so an interrupted run
/// leaves either nothing or the complete previous result, runs the [`on_interrupt`]
/// callbacks, and exits with status 130.
pub fn install_interrupt_handler() -> std::result::Result<(), String> {
    static INSTALLED: std::sync::OnceLock<std::result::Result<(), String>> = std::sync::OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            ctrlc::set_handler(|| {
                // Callbacks first: they may wait for a result being written (which needs the
                // temporaries' lock) and write a summary; then the temporaries go, and the
                // lock stays held so no replacement starts before the exit.
                let callbacks = ON_INTERRUPT.lock().unwrap_or_else(|e| e.into_inner());
                for c in callbacks.iter() {
                    c();
                }
                let removed = weights_convert::output::remove_tracked_temporaries();
                eprintln!(
                    "\ninterrupted{}",
                    if removed > 0 { "; partial outputs removed, earlier results untouched" } else { "" }
                );
                std::process::exit(130);
            })
            .map_err(|e| e.to_string())
        })
        .clone()
}

/// Adds work to do on an interruption (for example writing a summary), after the
/// temporaries are removed; installs the handler if needed. Callbacks run before the temporaries are removed and the process exits with 130.
pub fn on_interrupt(f: impl Fn() + Send + 'static) -> std::result::Result<(), String> {
    install_interrupt_handler()?;
    ON_INTERRUPT.lock().unwrap_or_else(|e| e.into_inner()).push(Box::new(f));
    Ok(())
}
