//! Named weights, checked on the way into a model.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use burn::tensor::{DType, Device, Tensor, TensorData};
use safetensors::tensor::Metadata;

/// What can be wrong with a weights file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WeightsError {
    /// The bytes are not a safetensors file.
    #[error("not a safetensors file: {0}")]
    Format(String),
    /// A tensor the model needs is absent.
    #[error("missing tensor `{name}` (expected shape {shape:?})")]
    Missing { name: String, shape: Vec<usize> },
    /// A tensor has the wrong shape.
    #[error("tensor `{name}` has shape {got:?}, expected {want:?}")]
    Shape { name: String, got: Vec<usize>, want: Vec<usize> },
    /// A tensor is not float32.
    #[error("tensor `{name}` has dtype {dtype}, expected F32")]
    DType { name: String, dtype: String },
    /// Tensors in the file that the model does not have.
    #[error("unexpected tensor `{first}` that the model does not have ({count} unexpected in all)")]
    Unused { first: String, count: usize },
    /// A metadata entry is missing or malformed.
    #[error("metadata `{key}`: {reason}")]
    Metadata { key: String, reason: String },
    /// The file holds another kind of model (its `kind` metadata entry).
    #[error("this is a `{found}` file, not {expected}")]
    Kind { found: String, expected: String },
}

/// A safetensors file held in memory, from which a model takes its tensors by name, or a
/// set of live (for example trainable) tensors ([`Weights::from_tensors`]).
pub struct Weights {
    bytes: Vec<u8>,
    header_len: usize,
    index: Metadata,
    /// Live tensors (flattened) by name, when built by [`Weights::from_tensors`].
    live: Option<BTreeMap<String, (Vec<usize>, Tensor<1>)>>,
    used: RefCell<BTreeSet<String>>,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Weights").field("tensors", &self.index.tensors().len()).finish()
    }
}

impl Weights {
    /// Parses a safetensors file's bytes (kept, not copied).
    pub fn from_safetensors(bytes: Vec<u8>) -> Result<Self, WeightsError> {
        let (header_len, index) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| WeightsError::Format(e.to_string()))?;
        // Validate offsets against the buffer once, here.
        safetensors::SafeTensors::deserialize(&bytes).map_err(|e| WeightsError::Format(e.to_string()))?;
        Ok(Weights { bytes, header_len, index, live: None, used: RefCell::new(BTreeSet::new()) })
    }

    /// Weights made of live tensors (each flattened, with its shape) and metadata, for
    /// training: a model built from them uses these very tensors, so gradients of its
    /// output reach them, and the model is left trainable ([`Weights::is_trainable`]).
    pub fn from_tensors(
        tensors: BTreeMap<String, (Vec<usize>, Tensor<1>)>,
        metadata: &BTreeMap<String, String>,
    ) -> Result<Self, WeightsError> {
        // An index of the same names and shapes (no data), so lookups and checks are shared.
        for (name, (shape, t)) in &tensors {
            let n: usize = shape.iter().product();
            if t.dims()[0] != n {
                return Err(WeightsError::Shape { name: name.clone(), got: t.dims().to_vec(), want: vec![n] });
            }
        }
        let entries = tensors.iter().map(|(name, (shape, _))| f32_entry(name, shape));
        let header = steex_io::safetensors::header(entries, metadata);
        let index: Metadata = serde_json::from_slice(&header).map_err(|e| WeightsError::Format(e.to_string()))?;
        Ok(Weights {
            bytes: Vec::new(),
            header_len: 0,
            index,
            live: Some(tensors),
            used: RefCell::new(BTreeSet::new()),
        })
    }

    /// Whether these are live tensors a model should keep trainable (not detach).
    pub fn is_trainable(&self) -> bool {
        self.live.is_some()
    }

    /// The file's metadata (empty when it has none).
    pub fn metadata(&self) -> BTreeMap<String, String> {
        self.index
            .metadata()
            .as_ref()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// The `kind` metadata entry, checked to be one of `expected`; otherwise
    /// [`WeightsError::Kind`] saying the file is not `what` (for example "a SEAN generator
    /// (kind `sean`)").
    pub fn kind(&self, expected: &[&str], what: &str) -> Result<String, WeightsError> {
        let kind: String = self.meta("kind")?;
        if expected.contains(&kind.as_str()) {
            Ok(kind)
        } else {
            Err(WeightsError::Kind { found: kind, expected: what.to_string() })
        }
    }

    /// The tensors under `prefix` (`w.pp("ace_0")`): a [`Scope`] whose lookups name
    /// `ace_0.<name>`.
    pub fn pp(&self, prefix: impl std::fmt::Display) -> Scope<'_> {
        Scope { weights: self, prefix: prefix.to_string() }
    }

    /// The scope of the whole file (names as they are).
    pub fn root(&self) -> Scope<'_> {
        Scope { weights: self, prefix: String::new() }
    }

    /// A metadata entry parsed as `T`.
    pub fn meta<T: std::str::FromStr>(&self, key: &str) -> Result<T, WeightsError> {
        let m = self.metadata();
        let v = m.get(key).ok_or_else(|| WeightsError::Metadata {
            key: key.into(),
            reason: "absent (was the file written by weights-convert?)".into(),
        })?;
        v.parse().map_err(|_| WeightsError::Metadata { key: key.into(), reason: format!("cannot parse {v:?}") })
    }

    /// Names of every tensor in the file, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self.index.tensors().into_keys().collect();
        n.sort();
        n
    }

    /// Shape of a tensor, if present.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.index.info(name).map(|i| i.shape.clone())
    }

    /// The little-endian float32 bytes of `name`, checked against `shape`; marks it used.
    fn bytes_of(&self, name: &str, shape: &[usize]) -> Result<&[u8], WeightsError> {
        let info =
            self.index.info(name).ok_or_else(|| WeightsError::Missing { name: name.into(), shape: shape.to_vec() })?;
        if info.shape != shape {
            return Err(WeightsError::Shape { name: name.into(), got: info.shape.clone(), want: shape.to_vec() });
        }
        if info.dtype != safetensors::Dtype::F32 {
            return Err(WeightsError::DType { name: name.into(), dtype: format!("{:?}", info.dtype) });
        }
        let (a, b) = info.data_offsets;
        self.used.borrow_mut().insert(name.to_string());
        if self.live.is_some() {
            return Ok(&[]);
        }
        Ok(&self.bytes[8 + self.header_len + a..8 + self.header_len + b])
    }

    /// The float32 values of `name`, checked against `shape`; marks it used.
    pub fn values(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, WeightsError> {
        if let Some(live) = &self.live {
            self.bytes_of(name, shape)?;
            return Ok(steex_io::host(live[name].1.clone()));
        }
        let data = self.bytes_of(name, shape)?;
        Ok(data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    /// The tensor `name` on `device`, checked against `shape`; marks it used.
    pub fn tensor<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        device: &Device,
    ) -> Result<Tensor<D>, WeightsError> {
        if let Some(live) = &self.live {
            self.bytes_of(name, &shape)?;
            return Ok(live[name].1.clone().reshape(shape));
        }
        let bytes = self.bytes_of(name, &shape)?.to_vec();
        Ok(Tensor::from_data(TensorData::from_bytes_vec(bytes, shape, DType::F32), device))
    }

    /// Fails if the file holds tensors no one took.
    pub fn finish(&self) -> Result<(), WeightsError> {
        let used = self.used.borrow();
        let unused: Vec<String> = self.names().into_iter().filter(|n| !used.contains(n)).collect();
        match unused.first() {
            None => Ok(()),
            Some(first) => Err(WeightsError::Unused { first: first.clone(), count: unused.len() }),
        }
    }
}

impl Weights {
    /// Random weights of the given names and shapes, for benchmarks and examples that need a
    /// full-size model without a checkpoint. Values follow PyTorch's default-init scale
    /// (`U(-k, k)`, `k = 1 / sqrt(fan_in)`); batch-norm variances are drawn in [0.5, 1.5],
    /// means near zero, `noise_var` in [0, 0.1]. Deterministic for a seed.
    pub fn random(shapes: &BTreeMap<String, Vec<usize>>, metadata: &BTreeMap<String, String>, seed: u64) -> Self {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let mut uniform = move || {
            // xorshift64*: fast, and good enough for random weights.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(2685821657736338717) >> 40) as f32 / (1u64 << 24) as f32
        };
        let mut data: Vec<u8> = Vec::new();
        for (name, shape) in shapes {
            let n: usize = shape.iter().product();
            let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
            let (lo, hi) = if name.ends_with("running_var") {
                (0.5, 1.5)
            } else if name.ends_with("running_mean") {
                (-0.1, 0.1)
            } else if name.ends_with("noise_var") {
                (0.0, 0.1)
            } else {
                let k = 1.0 / (fan_in as f32).sqrt();
                (-k, k)
            };
            data.reserve(4 * n);
            for _ in 0..n {
                data.extend_from_slice(&(lo + (hi - lo) * uniform()).to_le_bytes());
            }
        }
        let header = steex_io::safetensors::header(shapes.iter().map(|(name, shape)| f32_entry(name, shape)), metadata);
        let bytes = steex_io::safetensors::file_bytes(&header, &data);
        drop(data);
        Self::from_safetensors(bytes).expect("a well-formed file")
    }
}

/// The header entry of a float32 tensor.
fn f32_entry<'a>(name: &'a str, shape: &'a [usize]) -> steex_io::safetensors::TensorEntry<'a> {
    steex_io::safetensors::TensorEntry { name, dtype: "F32", shape, len: 4 * shape.iter().product::<usize>() }
}

/// The tensors of a [`Weights`] under a name prefix, as candle's `VarBuilder::pp` scopes
/// them: `w.pp("ace_0").pp("Spade").tensor("weight", ..)` looks up `ace_0.Spade.weight`.
#[derive(Clone)]
pub struct Scope<'a> {
    weights: &'a Weights,
    prefix: String,
}

impl<'a> Scope<'a> {
    /// The scope one level down: `<prefix>.<name>`.
    pub fn pp(&self, name: impl std::fmt::Display) -> Scope<'a> {
        Scope { weights: self.weights, prefix: self.name(&name.to_string()) }
    }

    /// The full name of `name` in this scope.
    pub fn name(&self, name: &str) -> String {
        if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) }
    }

    /// The prefix of this scope (empty at the root).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The weights the scope reads.
    pub fn weights(&self) -> &'a Weights {
        self.weights
    }

    /// The tensor `<prefix>.<name>` on `device`, checked against `shape`; marks it used.
    pub fn tensor<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        device: &Device,
    ) -> Result<Tensor<D>, WeightsError> {
        self.weights.tensor(&self.name(name), shape, device)
    }

    /// Whether the file holds `<prefix>.<name>`.
    pub fn contains(&self, name: &str) -> bool {
        self.weights.shape(&self.name(name)).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_name_tensors_and_kinds_are_checked() {
        let mut shapes = BTreeMap::new();
        shapes.insert("a.b.weight".to_string(), vec![2, 3]);
        shapes.insert("c".to_string(), vec![4]);
        let mut meta = BTreeMap::new();
        meta.insert("kind".to_string(), "test".to_string());
        let w = Weights::random(&shapes, &meta, 7);
        let device = Device::flex();
        let s = w.pp("a").pp("b");
        assert_eq!(s.name("weight"), "a.b.weight");
        let t: Tensor<2> = s.tensor("weight", [2, 3], &device).unwrap();
        assert_eq!(t.dims(), [2, 3]);
        assert!(matches!(s.tensor::<2>("weight", [3, 2], &device), Err(WeightsError::Shape { .. })));
        assert_eq!(w.finish(), Err(WeightsError::Unused { first: "c".into(), count: 1 }));
        let _: Tensor<1> = w.root().tensor("c", [4], &device).unwrap();
        assert_eq!(w.finish(), Ok(()));
        assert_eq!(w.kind(&["test"], "a test").unwrap(), "test");
        let e = w.kind(&["sean"], "a SEAN generator (kind `sean`)").unwrap_err().to_string();
        assert_eq!(e, "this is a `test` file, not a SEAN generator (kind `sean`)");
        // Live tensors share the header code.
        let live: BTreeMap<String, (Vec<usize>, Tensor<1>)> =
            [("x".to_string(), (vec![2, 2], Tensor::<1>::from_floats([1.0, 2.0, 3.0, 4.0], &device)))].into();
        let l = Weights::from_tensors(live, &meta).unwrap();
        assert_eq!(l.values("x", &[2, 2]).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(l.meta::<String>("kind").unwrap(), "test");
    }
}
