//! The inverse direction: a converted (or `steex train`-written) decision model or segmenter
//! back to a PyTorch checkpoint (a SEAN generator: [`crate::to_pytorch_sean`]), `{"model_state_dict": OrderedDict(name -> tensor)}` in the
//! published key layout, in `torch.save`'s zip format, so that `torch.load` and
//! `model.load_state_dict(ck["model_state_dict"])` take it (PyTorch fills the batch norms'
//! `num_batches_tracked`, absent here, as it does for old state dicts).
//!
//! The pickle (protocol 2) names only `collections.OrderedDict`,
//! `torch._utils._rebuild_tensor_v2` and `torch.FloatStorage`; each tensor's float32 bytes
//! are one `archive/data/<i>` record, stored uncompressed and 64-byte aligned as torch writes
//! them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use crate::error::{ConvertError, Result};

/// Host tensors: shape and float32 values, by name.
pub type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

struct Pickle(Vec<u8>);

impl Pickle {
    fn op(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    fn global(&mut self, module: &str, name: &str) {
        self.op(b"c");
        self.op(format!("{module}\n{name}\n").as_bytes());
    }
    fn string(&mut self, s: &str) {
        self.op(b"X");
        self.op(&(s.len() as u32).to_le_bytes());
        self.op(s.as_bytes());
    }
    fn int(&mut self, v: usize) {
        self.op(b"J");
        self.op(&(v as i32).to_le_bytes());
    }
    fn ints(&mut self, v: &[usize]) {
        self.op(b"(");
        for &x in v {
            self.int(x);
        }
        self.op(b"t");
    }
}

/// The `data.pkl` of `{"model_state_dict": OrderedDict(tensors)}` (or of the
/// `OrderedDict` alone, not `wrapped`), storage `i` the `i`-th tensor in name order.
fn pickle(tensors: &Tensors, wrapped: bool) -> Vec<u8> {
    let mut p = Pickle(Vec::new());
    p.op(b"\x80\x02");
    if wrapped {
        p.op(b"}");
        p.string("model_state_dict");
    }
    p.global("collections", "OrderedDict");
    p.op(b")R(");
    for (i, (name, (shape, values))) in tensors.iter().enumerate() {
        p.string(name);
        p.global("torch._utils", "_rebuild_tensor_v2");
        p.op(b"((");
        p.string("storage");
        p.global("torch", "FloatStorage");
        p.string(&i.to_string());
        p.string("cpu");
        p.int(values.len());
        p.op(b"tQ");
        p.int(0);
        p.ints(shape);
        let mut stride = vec![1usize; shape.len()];
        for d in (0..shape.len().saturating_sub(1)).rev() {
            stride[d] = stride[d + 1] * shape[d + 1];
        }
        p.ints(&stride);
        p.op(b"\x89");
        p.global("collections", "OrderedDict");
        p.op(b")Rt");
        p.op(b"R");
    }
    p.op(if wrapped { b"us." } else { b"u." });
    p.0
}

/// The bytes of a `torch.save` zip holding `{"model_state_dict": OrderedDict(tensors)}`.
pub fn checkpoint_bytes(tensors: &Tensors) -> std::result::Result<Vec<u8>, String> {
    zip_bytes(tensors, true)
}

/// The bytes of a `torch.save` zip holding `OrderedDict(tensors)` itself (a state dict as
/// `torch.save(net.state_dict(), path)` writes it).
pub fn state_dict_bytes(tensors: &Tensors) -> std::result::Result<Vec<u8>, String> {
    zip_bytes(tensors, false)
}

fn zip_bytes(tensors: &Tensors, wrapped: bool) -> std::result::Result<Vec<u8>, String> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default())
        .with_alignment(64);
    let mut put = |name: &str, bytes: &[u8]| -> std::result::Result<(), String> {
        zip.start_file(format!("archive/{name}"), opts).map_err(|e| e.to_string())?;
        zip.write_all(bytes).map_err(|e| e.to_string())
    };
    put("data.pkl", &pickle(tensors, wrapped))?;
    put("byteorder", b"little")?;
    for (i, (_, values)) in tensors.values().enumerate() {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        put(&format!("data/{i}"), &bytes)?;
    }
    put("version", b"3\n")?;
    Ok(zip.finish().map_err(|e| e.to_string())?.into_inner())
}

/// Converts a safetensors file of kind `densenet`, `resnet`, `deeplab` or `sean` (as
/// `weights-convert` or `steex train` write it) into a PyTorch checkpoint at `out` (atomically); returns the
/// number of tensors. A ResNet converted from a plain torchvision state dict (metadata
/// `layout` torchvision) gets its plain names back.
pub fn to_pytorch(input: &Path, out: &Path) -> Result<usize> {
    let bytes = std::fs::read(input).map_err(|source| ConvertError::Io { path: input.to_path_buf(), source })?;
    let wrong =
        |reason: String| ConvertError::WrongModel { path: input.to_path_buf(), kind: "converted".into(), reason };
    let st =
        safetensors::SafeTensors::deserialize(&bytes).map_err(|e| wrong(format!("not a safetensors file: {e}")))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| wrong(e.to_string()))?;
    let meta: BTreeMap<String, String> =
        meta.metadata().as_ref().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
    let kind = meta.get("kind").cloned().unwrap_or_default();
    if !["densenet", "resnet", "deeplab", "sean"].contains(&kind.as_str()) {
        return Err(wrong(format!("kind `{kind}`: expected a densenet, resnet, deeplab or sean file")));
    }
    let plain = meta.get("layout").is_some_and(|l| l == "torchvision");
    let mut tensors = Tensors::new();
    for (name, view) in st.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(wrong(format!("tensor `{name}` is {:?}, expected F32", view.dtype())));
        }
        let v = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let name = if plain { name.strip_prefix("resnet.").map(str::to_string).unwrap_or(name) } else { name };
        tensors.insert(name, (view.shape().to_vec(), v));
    }
    let data = if kind == "sean" {
        // SEAN's `latest_net_G.pth`: the state dict itself, spectral norm unresolved.
        tensors = crate::to_pytorch_sean::training_state_dict(&tensors).map_err(wrong)?;
        state_dict_bytes(&tensors)
    } else {
        checkpoint_bytes(&tensors)
    }
    .map_err(|reason| ConvertError::Output { path: out.to_path_buf(), reason })?;
    crate::output::atomic_write(out, |w| w.write_all(&data))
        .map_err(|e| ConvertError::Output { path: out.to_path_buf(), reason: e.to_string() })?;
    Ok(tensors.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is written reads back through the checkpoint reader (and its allow-list) to the
    /// same names, shapes and values.
    #[test]
    fn written_checkpoints_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.tar");
        let tensors: Tensors = [
            ("a.weight".to_string(), (vec![2, 3, 1, 1], (0..6).map(|i| i as f32 * 0.5 - 1.0).collect())),
            ("b.bias".to_string(), (vec![3], vec![1.0, -2.0, 3.5])),
            ("b.running_var".to_string(), (vec![1], vec![0.25])),
        ]
        .into();
        std::fs::write(&path, checkpoint_bytes(&tensors).unwrap()).unwrap();
        let ck = crate::Checkpoint::open(&path).unwrap();
        let back = ck.read_state_dict().unwrap();
        assert_eq!(back.len(), 3);
        for (name, (shape, values)) in &tensors {
            let t = &back[name];
            assert_eq!(&t.shape, shape, "{name}");
            assert_eq!(t.to_f32().unwrap(), *values, "{name}");
        }
        assert!(ck.top_level_keys().iter().any(|k| k == "model_state_dict"), "{:?}", ck.top_level_keys());
    }
}
