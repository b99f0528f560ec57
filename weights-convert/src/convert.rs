//! The conversion pipeline shared by every model: read the state dict, resolve spectral
//! norm, drop what the model never uses, check names and shapes, write safetensors.

use std::collections::BTreeMap;
use std::path::Path;

use crate::checkpoint::{Checkpoint, TensorData};
use crate::error::{ConvertError, Result};
use crate::output::write_safetensors;
use crate::spectral::resolve_spectral_norm;

/// Metadata key naming the model family (`sean`, `densenet`, `resnet`, `deeplab`,
/// `state_dict`).
pub const META_KIND: &str = "kind";
/// Metadata key listing, as a JSON array, the checkpoint tensors left out of the output.
pub const META_DROPPED: &str = "dropped_tensors";
/// Metadata key naming the program that wrote the file.
pub const META_CONVERTER: &str = "converter";

/// What a model expects of a checkpoint: the tensors it loads (names and shapes, in
/// PyTorch's layout), the ones it knowingly ignores, and the configuration to record.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// Model family, written as the `kind` metadata.
    pub kind: String,
    /// Every tensor the model loads, with its shape.
    pub expected: BTreeMap<String, Vec<usize>>,
    /// Tensors present in published checkpoints that the model never uses
    /// (`num_batches_tracked`, unused buffers): dropped and listed in the metadata.
    pub unused: fn(&str) -> bool,
    /// Model configuration, written into the metadata.
    pub config: BTreeMap<String, String>,
}

/// True for the batch-norm step counters, which no inference path reads.
pub fn is_num_batches_tracked(name: &str) -> bool {
    name.ends_with("num_batches_tracked")
}

/// The result of a conversion, before it is written.
#[derive(Debug, Clone)]
pub struct Converted {
    /// Output tensors by name (float32 for a model spec).
    pub tensors: BTreeMap<String, TensorData>,
    /// Output metadata.
    pub metadata: BTreeMap<String, String>,
}

impl Converted {
    /// Writes the conversion to `out` atomically.
    pub fn write(&self, out: &Path) -> Result<()> {
        write_safetensors(out, &self.tensors, &self.metadata)
    }
}

/// Reads the state dict of `ckpt`, resolves spectral norm and drops unused tensors; with a
/// `spec`, converts floats to float32 and checks the result tensor by tensor against it.
/// Without one (a generic conversion) only `num_batches_tracked` is dropped.
pub fn convert_state_dict(ckpt: &Checkpoint, spec: Option<&ModelSpec>) -> Result<Converted> {
    let path = ckpt.path();
    let mut tensors = ckpt.read_state_dict()?;
    resolve_spectral_norm(&mut tensors, path)?;
    let unused = spec.map_or(is_num_batches_tracked as fn(&str) -> bool, |s| s.unused);
    let dropped: Vec<String> = tensors.keys().filter(|k| unused(k)).cloned().collect();
    for k in &dropped {
        tensors.remove(k);
    }
    let mut metadata = BTreeMap::new();
    metadata.insert(META_CONVERTER.to_string(), format!("weights-convert {}", env!("CARGO_PKG_VERSION")));
    metadata.insert(META_DROPPED.to_string(), serde_json::to_string(&dropped).expect("strings"));
    match spec {
        None => {
            metadata.insert(META_KIND.to_string(), "state_dict".to_string());
        }
        Some(spec) => {
            check_against(path, spec, &tensors)?;
            let names: Vec<String> = tensors.keys().cloned().collect();
            for name in names {
                let t = tensors.remove(&name).expect("present");
                let t = t.into_f32().ok_or_else(|| ConvertError::Tensor {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    reason: "expected a floating-point tensor".into(),
                })?;
                tensors.insert(name, t);
            }
            metadata.extend(spec.config.clone());
            metadata.insert(META_KIND.to_string(), spec.kind.clone());
        }
    }
    Ok(Converted { tensors, metadata })
}

/// Checks that `tensors` holds exactly the names and shapes of `spec`.
pub fn check_against(path: &Path, spec: &ModelSpec, tensors: &BTreeMap<String, TensorData>) -> Result<()> {
    let wrong = |reason: String| ConvertError::WrongModel { path: path.to_path_buf(), kind: spec.kind.clone(), reason };
    let missing: Vec<&String> = spec.expected.keys().filter(|k| !tensors.contains_key(*k)).collect();
    if let Some(first) = missing.first() {
        return Err(wrong(format!(
            "missing tensor `{first}` (expected shape {:?}){}",
            spec.expected[*first],
            more(missing.len())
        )));
    }
    let extra: Vec<&String> = tensors.keys().filter(|k| !spec.expected.contains_key(*k)).collect();
    if let Some(first) = extra.first() {
        return Err(wrong(format!(
            "unexpected tensor `{first}` (shape {:?}) that the model does not have{}",
            tensors[*first].shape,
            more(extra.len())
        )));
    }
    for (name, shape) in &spec.expected {
        let got = &tensors[name].shape;
        if got != shape {
            return Err(wrong(format!("tensor `{name}` has shape {got:?}, expected {shape:?}")));
        }
    }
    Ok(())
}

fn more(n: usize) -> String {
    if n > 1 { format!(", and {} more", n - 1) } else { String::new() }
}
