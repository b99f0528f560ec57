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
    let w = read_weights(path)?;
    SeanGenerator::from_weights(&w, device).map_err(model_err(path))
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
