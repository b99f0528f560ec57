//! Writing results: atomic file replacement and deterministic safetensors files.
//!
//! The `safetensors` crate keeps file metadata in a `HashMap` and serialises it in hash
//! order, so two runs would write different bytes. Determinism is a requirement here (the
//! same checkpoint must convert to a byte-identical file whichever container it came in), so
//! the header is written from sorted maps by [`write_safetensors`]; the files are read back
//! and validated with the `safetensors` crate in the tests.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
#[cfg(unix)]
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::checkpoint::{TensorData, dtype_name};
use crate::error::{ConvertError, Result};

/// Temporary files and folders being written, removed by [`remove_tracked_temporaries`]
/// when the process is interrupted (the `steex` binary's SIGINT/SIGTERM handler).
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

/// Writes `out` atomically: `write` fills a temporary file in the same folder, which is
/// flushed, synced and then renamed over `out`. On any error nothing is left behind and an
/// existing `out` is untouched.
pub fn atomic_write(out: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    let fail = |reason: String| ConvertError::Output { path: out.to_path_buf(), reason };
    if out.is_dir() {
        return Err(fail("it is a directory, expected a file path".into()));
    }
    let name = out.file_name().ok_or_else(|| fail("the path has no file name".into()))?.to_string_lossy().into_owned();
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
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
    let tmp_path = tmp.path().to_path_buf();
    track_temporary(&tmp_path);
    let result = (|| {
        {
            let mut w = BufWriter::new(tmp.as_file());
            write(&mut w).map_err(|e| fail(e.to_string()))?;
            w.flush().map_err(|e| fail(e.to_string()))?;
        }
        tmp.as_file().sync_all().map_err(|e| fail(e.to_string()))?;
        with_temporaries_locked(|| tmp.persist(out).map(|_| ())).map_err(|e| fail(e.error.to_string()))
    })();
    untrack_temporary(&tmp_path);
    result
}

/// The safetensors header for `tensors` (in name order) and `metadata`, padded with spaces
/// to a multiple of 8 bytes as the format asks.
fn header(tensors: &BTreeMap<String, TensorData>, metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut map = serde_json::Map::new();
    if !metadata.is_empty() {
        let meta: serde_json::Map<String, serde_json::Value> =
            metadata.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
        map.insert("__metadata__".into(), serde_json::Value::Object(meta));
    }
    let mut offset = 0usize;
    for (name, t) in tensors {
        let end = offset + t.bytes.len();
        map.insert(
            name.clone(),
            serde_json::json!({
                "dtype": dtype_name(t.dtype),
                "shape": t.shape,
                "data_offsets": [offset, end],
            }),
        );
        offset = end;
    }
    let mut bytes = serde_json::to_vec(&serde_json::Value::Object(map)).expect("JSON of strings and numbers");
    while bytes.len() % 8 != 0 {
        bytes.push(b' ');
    }
    bytes
}

/// Writes `tensors` and `metadata` as a safetensors file at `out`, atomically. The bytes
/// depend only on the arguments (tensors in name order, keys sorted).
pub fn write_safetensors(
    out: &Path,
    tensors: &BTreeMap<String, TensorData>,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    for (name, t) in tensors {
        let want = t.numel() * t.dtype.size();
        if t.bytes.len() != want {
            return Err(ConvertError::Output {
                path: out.to_path_buf(),
                reason: format!("tensor `{name}` has {} bytes, expected {want} for shape {:?}", t.bytes.len(), t.shape),
            });
        }
    }
    let header = header(tensors, metadata);
    atomic_write(out, |w| {
        w.write_all(&(header.len() as u64).to_le_bytes())?;
        w.write_all(&header)?;
        for t in tensors.values() {
            w.write_all(&t.bytes)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_file_the_safetensors_crate_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x.safetensors");
        let mut t = BTreeMap::new();
        t.insert("b".to_string(), TensorData::from_f32(vec![2, 3], &[1., 2., 3., 4., 5., 6.]));
        t.insert("a".to_string(), TensorData::from_f32(vec![1], &[7.]));
        let mut m = BTreeMap::new();
        m.insert("kind".to_string(), "test".to_string());
        m.insert("alpha".to_string(), "1".to_string());
        write_safetensors(&out, &t, &m).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let b = st.tensor("b").unwrap();
        assert_eq!(b.shape(), &[2, 3]);
        assert_eq!(b.data(), t["b"].bytes.as_slice());
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(meta.metadata().as_ref().unwrap()["kind"], "test");
        // Deterministic: a second write gives the same bytes; no temporary file is left.
        write_safetensors(&out, &t, &m).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), bytes);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

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
}
