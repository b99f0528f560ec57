//! Files to tensors and back: images, masks, `.npy` arrays (from `steex-io`, re-exported)
//! and the models' weights files. Everything that writes does so atomically (temporary
//! file + rename).

use std::path::Path;

use burn::tensor::Device;
pub use steex_io::image::{gray_png, png, png_bytes, to_rgb};
pub use steex_io::json::{read_json, write_json};
pub use steex_io::{
    Array, LabelMap, atomic_write, host, image_size, read_image, read_image_native, read_npy, write_bytes, write_npy,
};
use steex_nn::Weights;
use steex_sean::SeanGenerator;

use crate::error::{Error, Result};

/// Reads a weights file written by `weights-convert`.
pub fn read_weights(path: &Path) -> Result<Weights> {
    let bytes = std::fs::read(path).map_err(|source| Error::io(path, source))?;
    Weights::from_safetensors(bytes).map_err(model_err(path))
}

/// Maps a model crate's error on the weights file `path` to [`Error::Model`].
pub fn model_err<E: std::fmt::Display>(path: &Path) -> impl FnOnce(E) -> Error + '_ {
    move |e| Error::Model { path: path.to_path_buf(), reason: e.to_string() }
}

/// Loads a SEAN generator from a `weights-convert sean` file.
pub fn load_generator(path: &Path, device: &Device) -> Result<SeanGenerator> {
    SeanGenerator::from_weights_owned(read_weights(path)?, device).map_err(model_err(path))
}

/// Loads a decision model from a `weights-convert densenet|resnet` file.
pub fn load_classifier(path: &Path, device: &Device) -> Result<steex_classifier::AnyClassifier> {
    let w = read_weights(path)?;
    steex_classifier::AnyClassifier::from_weights(&w, device).map_err(model_err(path))
}

/// A segmenter loaded from a `weights-convert deeplab` file, with its preset (if recorded).
pub fn load_segmenter(path: &Path, device: &Device) -> Result<(steex_deeplab::DeepLabV3, Option<String>)> {
    let w = read_weights(path)?;
    let model = steex_deeplab::DeepLabV3::from_weights(&w, device).map_err(model_err(path))?;
    Ok((model, w.meta::<String>("preset").ok()))
}

/// Segments an image `[1, 3, H, W]` and returns the label map in the generator's label ids
/// (the segmenter's convention undone), with the raw logits.
pub fn segment_to_labels(
    model: &steex_deeplab::DeepLabV3,
    preset: Option<&str>,
    image: &Array,
    device: &Device,
) -> (LabelMap, Array, Vec<usize>) {
    let (h, w) = (image.shape[2], image.shape[3]);
    let logits = Array::from_tensor(model.forward(image.to_tensor::<4>(device)).detach());
    let classes = model.config().classes;
    let arg = steex_deeplab::argmax_classes(&logits.data, classes, h, w);
    let conv = steex_deeplab::LabelConvention::detect(preset, classes);
    let labels = arg.iter().map(|&k| conv.to_generator(k)).collect();
    (LabelMap { height: h, width: w, labels }, logits, arg)
}

/// Segments images of one size together (`[1, 3, H, W]` each, one forward pass) and returns,
/// for each, the raw class map (the segmenter's ids) and the label map in the generator's ids.
pub fn segment_batch(
    model: &steex_deeplab::DeepLabV3,
    preset: Option<&str>,
    images: &[&Array],
    device: &Device,
) -> Vec<(Vec<usize>, LabelMap)> {
    let Some(first) = images.first() else { return Vec::new() };
    let (h, w) = (first.shape[2], first.shape[3]);
    let x = burn::tensor::Tensor::cat(images.iter().map(|a| a.to_tensor::<4>(device)).collect(), 0);
    let logits = Array::from_tensor(model.forward(x).detach());
    let classes = model.config().classes;
    let conv = steex_deeplab::LabelConvention::detect(preset, classes);
    let per = classes * h * w;
    (0..images.len())
        .map(|i| {
            let arg = steex_deeplab::argmax_classes(&logits.data[i * per..(i + 1) * per], classes, h, w);
            let labels = arg.iter().map(|&k| conv.to_generator(k)).collect();
            (arg, LabelMap { height: h, width: w, labels })
        })
        .collect()
}

/// The header of a weights file written by `weights-convert`: its metadata and the shape of
/// every tensor, read without the tensor data (a few kilobytes of a file of any size).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WeightsHeader {
    /// The metadata entries.
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Every tensor's shape by name.
    pub shapes: std::collections::BTreeMap<String, Vec<usize>>,
}

impl WeightsHeader {
    /// A metadata entry parsed as `T`; `Err` names the file, the key and what was expected.
    pub fn meta<T: std::str::FromStr>(&self, path: &Path, key: &str) -> Result<T> {
        let v = self.metadata.get(key).ok_or_else(|| Error::Model {
            path: path.to_path_buf(),
            reason: format!("metadata entry `{key}` is missing (expected a file written by weights-convert)"),
        })?;
        v.parse().map_err(|_| Error::Model {
            path: path.to_path_buf(),
            reason: format!("metadata entry `{key}` = `{v}` is not a valid {}", std::any::type_name::<T>()),
        })
    }
}

/// Largest safetensors header read (the published models' headers are tens of kilobytes).
const MAX_HEADER_BYTES: u64 = 64 << 20;

/// Reads the header of a safetensors weights file only, so that inputs can be checked
/// against the models before their (possibly large) tensors are read.
pub fn read_header(path: &Path) -> Result<WeightsHeader> {
    use std::io::Read;
    let bad_file = |reason: String| Error::Model { path: path.to_path_buf(), reason };
    let mut f = std::fs::File::open(path).map_err(|source| Error::io(path, source))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|_| bad_file("not a safetensors file: shorter than its 8-byte header length".into()))?;
    let n = u64::from_le_bytes(len);
    if n > MAX_HEADER_BYTES {
        return Err(bad_file(format!(
            "not a safetensors file: its header claims {n} bytes (at most {MAX_HEADER_BYTES})"
        )));
    }
    let mut text = vec![0u8; n as usize];
    f.read_exact(&mut text)
        .map_err(|_| bad_file(format!("not a safetensors file: its {n}-byte header is cut short")))?;
    let v: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| bad_file(format!("not a safetensors file: its header is not JSON ({e})")))?;
    let obj =
        v.as_object().ok_or_else(|| bad_file("not a safetensors file: its header is not a JSON object".into()))?;
    let mut h = WeightsHeader::default();
    for (k, entry) in obj {
        if k == "__metadata__" {
            if let Some(m) = entry.as_object() {
                h.metadata = m.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect();
            }
            continue;
        }
        let shape = entry
            .get("shape")
            .and_then(|s| s.as_array())
            .map(|a| a.iter().filter_map(|d| d.as_u64().map(|d| d as usize)).collect())
            .ok_or_else(|| bad_file(format!("tensor `{k}` has no shape in the header")))?;
        h.shapes.insert(k.clone(), shape);
    }
    Ok(h)
}
