//! `weights-convert inspect`: what a checkpoint holds, without reading any tensor data.

use serde::Serialize;

use crate::checkpoint::{Checkpoint, dtype_name};

/// One tensor of a checkpoint.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TensorEntry {
    /// Dotted path in the file (`model_state_dict.classifier.weight`).
    pub name: String,
    /// Shape, PyTorch's order.
    pub shape: Vec<usize>,
    /// Element type (`F32`, `I64`, ...).
    pub dtype: &'static str,
}

/// What `inspect` reports.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Inspection {
    /// The file, as given.
    pub file: String,
    /// `zip`, `legacy` or `pickle`.
    pub container: &'static str,
    /// Keys of the root dict, sorted.
    pub top_level_keys: Vec<String>,
    /// Globals the pickle references (all on the allow-list, or the file was refused).
    pub globals: Vec<String>,
    /// Every tensor, sorted by name.
    pub tensors: Vec<TensorEntry>,
}

impl Inspection {
    /// Describes an opened checkpoint.
    pub fn of(ckpt: &Checkpoint) -> Self {
        Inspection {
            file: ckpt.path().display().to_string(),
            container: ckpt.container().name(),
            top_level_keys: ckpt.top_level_keys().to_vec(),
            globals: ckpt.globals().iter().cloned().collect(),
            tensors: ckpt
                .tensors()
                .map(|(name, dtype, shape)| TensorEntry {
                    name: name.to_string(),
                    shape: shape.to_vec(),
                    dtype: dtype_name(dtype),
                })
                .collect(),
        }
    }

    /// A human-readable listing.
    pub fn to_text(&self) -> String {
        let mut s = format!("{}: torch.save {} container, {} tensors\n", self.file, self.container, self.tensors.len());
        let keys = if self.top_level_keys.len() > 8 {
            format!("{} keys (a bare state dict)", self.top_level_keys.len())
        } else {
            self.top_level_keys.join(", ")
        };
        s += &format!("top-level keys: {keys}\nglobals: {}\n", self.globals.join(", "));
        let width = self.tensors.iter().map(|t| t.name.len()).max().unwrap_or(0);
        for t in &self.tensors {
            s += &format!("{:width$}  {:4}  {:?}\n", t.name, t.dtype, t.shape);
        }
        s
    }
}
