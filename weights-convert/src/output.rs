//! Writing results: deterministic safetensors files, replaced atomically.
//!
//! Atomic replacement, the registry of temporaries and the header builder live in
//! `steex-io` (shared with the `steex` commands); they are re-exported here. The files are
//! read back and validated with the `safetensors` crate in the tests.

use std::collections::BTreeMap;
use std::path::Path;

pub use steex_io::atomic::{
    atomic_write, remove_tracked_temporaries, track_temporary, untrack_temporary, with_temporaries_locked,
};
use steex_io::safetensors::{TensorEntry, header};

use crate::checkpoint::{TensorData, dtype_name};
use crate::error::{ConvertError, Result};

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
    let entries = tensors.iter().map(|(name, t)| TensorEntry {
        name,
        dtype: dtype_name(t.dtype),
        shape: &t.shape,
        len: t.bytes.len(),
    });
    let header = header(entries, metadata);
    atomic_write(out, |w| {
        w.write_all(&(header.len() as u64).to_le_bytes())?;
        w.write_all(&header)?;
        for t in tensors.values() {
            w.write_all(&t.bytes)?;
        }
        Ok(())
    })?;
    Ok(())
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
}
