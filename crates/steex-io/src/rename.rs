//! Renames that never replace by accident: `rename_noreplace` fails when the target exists,
//! `exchange` swaps two paths in one step.
//!
//! On Linux both are one `renameat2` call (`RENAME_NOREPLACE`, `RENAME_EXCHANGE`), atomic
//! against any other process. Elsewhere, or on a file system without `renameat2`, the
//! fallback checks then renames (`rename_noreplace`) or reports that it cannot swap
//! (`exchange` returns `false`); the callers hold the output's lock
//! ([`crate::lock::OutputLock`]), so no other steex run acts in between.

use std::io;
use std::path::Path;

/// Renames `from` to `to`, failing with [`io::ErrorKind::AlreadyExists`] when `to` exists
/// (file, folder, empty or not).
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    match linux::renameat2(from, to, libc::RENAME_NOREPLACE) {
        Ok(()) => return Ok(()),
        Err(e) if !linux::unsupported(&e) => {
            // EEXIST (and ENOTEMPTY from some file systems) mean the target is there.
            return Err(if e.raw_os_error() == Some(libc::ENOTEMPTY) {
                io::ErrorKind::AlreadyExists.into()
            } else {
                e
            });
        }
        Err(_) => {}
    }
    if to.symlink_metadata().is_ok() {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, "the target exists"));
    }
    std::fs::rename(from, to)
}

/// Swaps `a` and `b` (both must exist) in one step. `Ok(false)`: the platform or file
/// system cannot, nothing was changed.
pub fn exchange(a: &Path, b: &Path) -> io::Result<bool> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    match linux::renameat2(a, b, libc::RENAME_EXCHANGE) {
        Ok(()) => return Ok(true),
        Err(e) if !linux::unsupported(&e) => return Err(e),
        Err(_) => {}
    }
    let _ = (a, b);
    Ok(false)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod linux {
    use std::ffi::CString;
    use std::io;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    fn c_path(p: &Path) -> io::Result<CString> {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))
    }

    /// `renameat2(AT_FDCWD, from, AT_FDCWD, to, flags)`.
    pub fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> io::Result<()> {
        let (f, t) = (c_path(from)?, c_path(to)?);
        // SAFETY: both pointers are valid NUL-terminated strings that outlive the call.
        let r = unsafe { libc::renameat2(libc::AT_FDCWD, f.as_ptr(), libc::AT_FDCWD, t.as_ptr(), flags) };
        if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    }

    /// The kernel or the file system does not offer the flag (old kernels, some network
    /// file systems): fall back.
    pub fn unsupported(e: &io::Error) -> bool {
        matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_replaces_and_swaps_whole_folders() {
        let d = tempfile::tempdir().unwrap();
        let (a, b, c) = (d.path().join("a"), d.path().join("b"), d.path().join("c"));
        std::fs::create_dir(&a).unwrap();
        std::fs::write(a.join("x"), b"a").unwrap();
        std::fs::create_dir(&b).unwrap();
        // An existing target, even an empty folder, is refused and both stay.
        let e = rename_noreplace(&a, &b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        assert!(a.join("x").is_file() && b.is_dir());
        std::fs::write(b.join("y"), b"b").unwrap();
        assert_eq!(rename_noreplace(&a, &b).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        rename_noreplace(&a, &c).unwrap();
        assert!(!a.exists() && c.join("x").is_file());
        if exchange(&b, &c).unwrap() {
            assert!(b.join("x").is_file() && c.join("y").is_file());
        }
    }
}
