//! Checkpoint folders: the weights (the published layout, the output file's metadata),
//! Adam's state and where training stands, replaced as one folder (written beside it and
//! renamed into place, [`steex_io::OutDir`]), so an interruption or a kill leaves the
//! previous complete checkpoint.
//!
//! - `weights.safetensors`: every tensor, running statistics included;
//! - `adam.safetensors`: `exp_avg.<name>`, `exp_avg_sq.<name>` of every trained tensor;
//! - `state.json`: [`CheckpointState`].

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::TrainError;
use crate::params::HostTensors;

/// Version of the checkpoint layout.
pub const FORMAT: u32 = 1;

/// Where training stands, and what it was started with (a resume must match it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// [`FORMAT`].
    pub format: u32,
    /// The epoch in progress (0-based; equal to the epochs done when `batch` is 0).
    pub epoch: usize,
    /// Batches of that epoch already trained on.
    pub batch: usize,
    /// Adam steps taken.
    pub adam_steps: u64,
    /// The random state: every shuffle and flip derives from this seed and the epoch
    /// ([`crate::data::epoch_order`], [`crate::data::flipped`]).
    pub seed: u64,
    /// Mean training loss of the last finished epoch.
    pub last_epoch_loss: Option<f32>,
    /// The settings a resumed run must share (architecture, attributes, size, batch, data).
    pub recipe: BTreeMap<String, String>,
}

fn ck_err(dir: &Path, reason: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint { path: dir.to_path_buf(), reason: reason.to_string() }
}

/// A safetensors file of float32 tensors (in name order) with metadata.
pub fn safetensors_bytes(tensors: &HostTensors, metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let entries = tensors.iter().map(|(name, (shape, v))| steex_io::safetensors::TensorEntry {
        name,
        dtype: "F32",
        shape,
        len: 4 * v.len(),
    });
    let header = steex_io::safetensors::header(entries, metadata);
    let mut data = Vec::with_capacity(tensors.values().map(|(_, v)| 4 * v.len()).sum());
    for (_, v) in tensors.values() {
        for x in v {
            data.extend_from_slice(&x.to_le_bytes());
        }
    }
    steex_io::safetensors::file_bytes(&header, &data)
}

/// The float32 tensors and metadata of a safetensors file's bytes.
pub fn read_safetensors(bytes: &[u8], path: &Path) -> Result<(HostTensors, BTreeMap<String, String>), TrainError> {
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| ck_err(path, e))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| ck_err(path, e))?;
    let metadata = meta.metadata().as_ref().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(ck_err(path, format!("tensor `{name}` is {:?}, expected F32", view.dtype())));
        }
        let v = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        out.insert(name, (view.shape().to_vec(), v));
    }
    Ok((out, metadata.unwrap_or_default()))
}

/// Writes the checkpoint folder `dir`, replacing the previous one in one rename.
pub fn save(
    dir: &Path,
    weights: &HostTensors,
    metadata: &BTreeMap<String, String>,
    adam: &HostTensors,
    state: &CheckpointState,
) -> Result<(), TrainError> {
    let out = steex_io::OutDir::create(dir, true)?;
    out.write("weights.safetensors", &safetensors_bytes(weights, metadata))?;
    out.write("adam.safetensors", &safetensors_bytes(adam, &BTreeMap::new()))?;
    out.write("state.json", steex_io::json::to_pretty(state).as_bytes())?;
    out.commit()?;
    Ok(())
}

/// A checkpoint read back.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The weights and their metadata.
    pub weights: (HostTensors, BTreeMap<String, String>),
    /// Adam's moments.
    pub adam: HostTensors,
    /// Where training stands.
    pub state: CheckpointState,
}

/// Reads the checkpoint folder `dir`.
pub fn load(dir: &Path) -> Result<Checkpoint, TrainError> {
    if !dir.is_dir() {
        return Err(ck_err(
            dir,
            "not a folder (a checkpoint folder holds weights.safetensors, adam.safetensors, state.json)",
        ));
    }
    let read = |n: &str| std::fs::read(dir.join(n)).map_err(|e| ck_err(dir, format!("{n}: {e}")));
    let state: CheckpointState =
        serde_json::from_slice(&read("state.json")?).map_err(|e| ck_err(dir, format!("state.json: {e}")))?;
    if state.format != FORMAT {
        return Err(ck_err(dir, format!("layout version {}, this build reads {FORMAT}", state.format)));
    }
    let weights = read_safetensors(&read("weights.safetensors")?, &dir.join("weights.safetensors"))?;
    let (adam, _) = read_safetensors(&read("adam.safetensors")?, &dir.join("adam.safetensors"))?;
    Ok(Checkpoint { weights, adam, state })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_reads_back_bit_for_bit_and_replaces_the_previous() {
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join("ck");
        let w: HostTensors = [("a.weight".to_string(), (vec![2, 2], vec![1.5, -0.0, f32::MIN_POSITIVE, 3.25]))].into();
        let adam: HostTensors = [("exp_avg.a.weight".to_string(), (vec![2, 2], vec![0.1, 0.2, 0.3, 0.4]))].into();
        let meta: BTreeMap<String, String> = [("kind".to_string(), "densenet".to_string())].into();
        let mut state = CheckpointState {
            format: FORMAT,
            epoch: 1,
            batch: 3,
            adam_steps: 7,
            seed: 5,
            last_epoch_loss: Some(0.5),
            recipe: BTreeMap::new(),
        };
        save(&ck, &w, &meta, &adam, &state).unwrap();
        state.batch = 4;
        save(&ck, &w, &meta, &adam, &state).unwrap();
        let back = load(&ck).unwrap();
        assert_eq!(back.weights, (w, meta));
        assert_eq!(back.adam, adam);
        assert_eq!(back.state, state);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(names.iter().all(|n| !n.to_string_lossy().contains(".tmp")), "{names:?}");
        assert!(matches!(load(&dir.path().join("none")), Err(TrainError::Checkpoint { .. })));
    }
}
