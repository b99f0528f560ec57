//! Opening a PyTorch checkpoint: the allow-list check of its pickles, then a lazy read of its
//! tensors through `pytorch-reader` (pure Rust; it never executes a pickle).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use pytorch_reader::{DType, PickleValue, PytorchReader};

use crate::error::{ConvertError, Result};
use crate::pickle_guard::{GuardError, check_pickle};

/// Largest pickle the guard reads into memory (the same ceiling `pytorch-reader` applies to
/// a zip checkpoint's `data.pkl`).
const MAX_PICKLE_BYTES: usize = pytorch_reader::MAX_PICKLE_SIZE as usize;

/// The container `torch.save` wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// The zip archive of PyTorch 1.6 and later (the default).
    Zip,
    /// The legacy pickle stream (`_use_new_zipfile_serialization=False`, PyTorch < 1.6).
    Legacy,
    /// A bare pickle with no tensor storages.
    Pickle,
}

impl Container {
    /// Lower-case name, as `inspect` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Container::Zip => "zip",
            Container::Legacy => "legacy",
            Container::Pickle => "pickle",
        }
    }
}

/// A tensor of a checkpoint whose bytes have been read.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorData {
    /// Element type as stored.
    pub dtype: DType,
    /// Shape, PyTorch's order.
    pub shape: Vec<usize>,
    /// Little-endian element bytes, row-major.
    pub bytes: Vec<u8>,
}

impl TensorData {
    /// A float32 tensor from values.
    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Self {
        let mut bytes = Vec::with_capacity(values.len() * 4);
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        TensorData { dtype: DType::F32, shape, bytes }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The values as float32 (float16, bfloat16 and float64 are converted); `None` for
    /// integer and boolean tensors.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        let b = &self.bytes;
        Some(match self.dtype {
            DType::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            DType::F64 => {
                b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8-byte chunk")) as f32).collect()
            }
            DType::F16 => b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            DType::BF16 => b.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            _ => return None,
        })
    }

    /// This tensor converted to float32 (a no-op for float32).
    pub fn into_f32(self) -> Option<Self> {
        if self.dtype == DType::F32 {
            return Some(self);
        }
        let values = self.to_f32()?;
        Some(TensorData::from_f32(self.shape, &values))
    }
}

/// Name of a dtype as safetensors writes it.
pub fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F64 => "F64",
        DType::F32 => "F32",
        DType::F16 => "F16",
        DType::BF16 => "BF16",
        DType::I64 => "I64",
        DType::I32 => "I32",
        DType::I16 => "I16",
        DType::I8 => "I8",
        DType::U64 => "U64",
        DType::U32 => "U32",
        DType::U16 => "U16",
        DType::U8 => "U8",
        DType::Bool => "BOOL",
    }
}

/// An opened, checked checkpoint. Tensor bytes are read on demand.
pub struct Checkpoint {
    path: PathBuf,
    container: Container,
    globals: BTreeSet<String>,
    top_level_keys: Vec<String>,
    tensors: BTreeMap<String, pytorch_reader::Tensor>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .field("container", &self.container)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl Checkpoint {
    /// Opens `path`: checks every pickle in it against the allow-list
    /// ([`crate::pickle_guard::ALLOWED_GLOBALS`]), then parses its tensor index. Nothing in
    /// the file is executed or imported.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let io_err = |source| ConvertError::Io { path: path.clone(), source };
        let meta = std::fs::metadata(&path).map_err(io_err)?;
        if meta.is_dir() {
            return Err(ConvertError::NotACheckpoint { path, reason: "it is a directory".into() });
        }
        let mut head = [0u8; 4];
        let n = File::open(&path).and_then(|mut f| read_up_to(&mut f, &mut head)).map_err(io_err)?;
        if n == 0 {
            return Err(ConvertError::NotACheckpoint { path, reason: "the file is empty".into() });
        }
        let (container, globals) = if n == 4 && &head == b"PK\x03\x04" {
            (Container::Zip, guard_zip(&path)?)
        } else if head[0] == 0x80 {
            guard_pickle_stream(&path, meta.len())?
        } else {
            return Err(ConvertError::NotACheckpoint {
                path,
                reason: "it starts neither with a zip header nor with a pickle".into(),
            });
        };

        let not_ckpt = |e: pytorch_reader::PytorchError| ConvertError::NotACheckpoint {
            path: path.clone(),
            reason: e.to_string(),
        };
        let top_level_keys = match PytorchReader::read_pickle_data(&path, None).map_err(not_ckpt)? {
            PickleValue::Dict(d) => {
                let mut k: Vec<String> = d.into_keys().collect();
                k.sort();
                k
            }
            other => {
                return Err(ConvertError::NotACheckpoint {
                    path,
                    reason: format!("its root object is not a dict but {}", value_kind(&other)),
                });
            }
        };
        let reader = PytorchReader::new(&path).map_err(not_ckpt)?;
        let tensors = reader.into_tensors().into_iter().collect();
        Ok(Checkpoint { path, container, globals, top_level_keys, tensors })
    }

    /// The file this was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The container `torch.save` wrote.
    pub fn container(&self) -> Container {
        self.container
    }

    /// The (allow-listed) globals the pickles reference.
    pub fn globals(&self) -> &BTreeSet<String> {
        &self.globals
    }

    /// Keys of the root dict, sorted.
    pub fn top_level_keys(&self) -> &[String] {
        &self.top_level_keys
    }

    /// Every tensor of the file by its dotted path (`model_state_dict.fc.weight`), sorted.
    pub fn tensors(&self) -> impl Iterator<Item = (&str, DType, &[usize])> {
        self.tensors.iter().map(|(k, t)| (k.as_str(), t.dtype(), t.shape()))
    }

    /// The model's state dict: the entries under `model_state_dict` when the file is a
    /// training checkpoint (`{"model_state_dict", "optimizer_state_dict", "epoch",
    /// "loss"}`), else the whole file (a bare state dict such as `latest_net_G.pth`).
    /// Returns the names within the state dict, each with its full path in the file.
    pub fn state_dict_names(&self) -> Vec<(String, String)> {
        const KEY: &str = "model_state_dict";
        let nested = self.top_level_keys.iter().any(|k| k == KEY);
        self.tensors
            .keys()
            .filter_map(|full| {
                if nested {
                    full.strip_prefix(KEY).and_then(|r| r.strip_prefix('.')).map(|n| (n.to_string(), full.clone()))
                } else {
                    Some((full.clone(), full.clone()))
                }
            })
            .collect()
    }

    /// Reads one tensor's bytes (by its full path in the file).
    pub fn read(&self, full_name: &str) -> Result<TensorData> {
        let t = self.tensors.get(full_name).ok_or_else(|| ConvertError::Tensor {
            path: self.path.clone(),
            name: full_name.to_string(),
            reason: "no such tensor in the checkpoint".into(),
        })?;
        let bytes = t.read().map_err(|e| ConvertError::Tensor {
            path: self.path.clone(),
            name: full_name.to_string(),
            reason: format!("cannot read its data: {e}"),
        })?;
        Ok(TensorData { dtype: t.dtype(), shape: t.shape().to_vec(), bytes })
    }

    /// Reads the whole state dict ([`Self::state_dict_names`]), one tensor at a time.
    pub fn read_state_dict(&self) -> Result<BTreeMap<String, TensorData>> {
        let names = self.state_dict_names();
        if names.is_empty() {
            return Err(ConvertError::NotACheckpoint { path: self.path.clone(), reason: "it holds no tensors".into() });
        }
        names.into_iter().map(|(name, full)| Ok((name, self.read(&full)?))).collect()
    }
}

fn value_kind(v: &PickleValue) -> String {
    match v {
        PickleValue::None => "None".into(),
        PickleValue::Bool(_) => "a bool".into(),
        PickleValue::Int(_) => "an int".into(),
        PickleValue::Float(_) => "a float".into(),
        PickleValue::String(_) => "a string".into(),
        PickleValue::List(_) => "a list".into(),
        PickleValue::Dict(_) => "a dict".into(),
        PickleValue::Bytes(_) => "bytes".into(),
        PickleValue::Unsupported(t) => format!("a {t}"),
    }
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Checks every `*.pkl` entry of a zip checkpoint.
fn guard_zip(path: &Path) -> Result<BTreeSet<String>> {
    let not_ckpt = |reason: String| ConvertError::NotACheckpoint { path: path.to_path_buf(), reason };
    let file = File::open(path).map_err(|source| ConvertError::Io { path: path.to_path_buf(), source })?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| not_ckpt(format!("bad zip archive: {e}")))?;
    let mut globals = BTreeSet::new();
    let mut pickles = 0;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| not_ckpt(format!("bad zip entry: {e}")))?;
        let name = entry.name().map_err(|e| not_ckpt(format!("bad zip entry name: {e}")))?.into_owned();
        if !name.ends_with(".pkl") {
            continue;
        }
        if entry.size() > MAX_PICKLE_BYTES as u64 {
            return Err(not_ckpt(format!("entry {name} claims {} bytes", entry.size())));
        }
        let mut data = Vec::with_capacity(entry.size() as usize);
        entry
            .by_ref()
            .take(MAX_PICKLE_BYTES as u64 + 1)
            .read_to_end(&mut data)
            .map_err(|e| not_ckpt(format!("cannot read entry {name}: {e}")))?;
        let summary =
            check_pickle(&data, 0).map_err(|source| ConvertError::Unsafe { path: path.to_path_buf(), source })?;
        globals.extend(summary.globals);
        pickles += 1;
    }
    if pickles == 0 {
        return Err(not_ckpt("the zip archive holds no data.pkl".into()));
    }
    Ok(globals)
}

/// Checks the pickles at the start of a legacy checkpoint (magic number, protocol version,
/// system info, the object, the storage keys) or of a bare pickle. Reads only as much of the
/// file as the pickles span (the storages that follow are raw bytes).
fn guard_pickle_stream(path: &Path, file_len: u64) -> Result<(Container, BTreeSet<String>)> {
    let mut want = 1 << 20;
    loop {
        let limit = want.min(file_len as usize);
        let mut data = Vec::with_capacity(limit);
        File::open(path)
            .and_then(|f| f.take(limit as u64).read_to_end(&mut data))
            .map_err(|source| ConvertError::Io { path: path.to_path_buf(), source })?;
        match guard_pickles_in(&data) {
            Err(GuardError::Truncated { .. }) if limit < file_len as usize && want < MAX_PICKLE_BYTES => {
                want *= 4;
            }
            Err(source) => {
                return Err(ConvertError::Unsafe { path: path.to_path_buf(), source });
            }
            Ok(found) => return Ok(found),
        }
    }
}

fn guard_pickles_in(data: &[u8]) -> std::result::Result<(Container, BTreeSet<String>), GuardError> {
    let first = check_pickle(data, 0)?;
    let mut globals: BTreeSet<String> = first.globals.into_iter().collect();
    if !first.is_legacy_magic {
        return Ok((Container::Pickle, globals));
    }
    let mut at = first.end;
    for _ in 0..4 {
        let s = check_pickle(data, at)?;
        globals.extend(s.globals);
        at = s.end;
    }
    Ok((Container::Legacy, globals))
}
