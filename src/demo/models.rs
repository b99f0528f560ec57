//! The demo's models: bundled in the binary, or read from a folder.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use steex_classifier::AnyClassifier;
use steex_deeplab::DeepLabV3;
use steex_nn::Weights;
use steex_sean::SeanGenerator;

use crate::error::{Error, Result};

/// The bundled generator (trained by `cargo run --release --example train_synthetic`).
pub const GENERATOR: &[u8] = include_bytes!("../../assets/synthetic/generator.safetensors");
/// The bundled decision model.
pub const CLASSIFIER: &[u8] = include_bytes!("../../assets/synthetic/classifier.safetensors");
/// The bundled segmenter.
pub const SEGMENTER: &[u8] = include_bytes!("../../assets/synthetic/segmenter.safetensors");

/// The demo's models on `device`.
pub struct DemoModels {
    /// The SEAN generator.
    pub generator: SeanGenerator,
    /// The decision model (`stop`).
    pub classifier: AnyClassifier,
    /// The segmenter.
    pub segmenter: DeepLabV3,
}

/// An error of a bundled model (`what`), named `<bundled what>`.
pub(super) fn bundled_error(what: &str, reason: String) -> Error {
    Error::Model { path: PathBuf::from(format!("<bundled {what}>")), reason }
}

fn bundled(bytes: &[u8], what: &str) -> Result<Weights> {
    Weights::from_safetensors(bytes.to_vec()).map_err(|e| bundled_error(what, e.to_string()))
}

impl DemoModels {
    /// Loads the bundled models.
    pub fn load(device: &Device) -> Result<Self> {
        let m = bundled_error;
        let w = bundled(GENERATOR, "generator")?;
        let generator = SeanGenerator::from_weights_owned(w, device).map_err(|e| m("generator", e.to_string()))?;
        let w = bundled(CLASSIFIER, "classifier")?;
        let classifier = AnyClassifier::from_weights(&w, device).map_err(|e| m("classifier", e.to_string()))?;
        let w = bundled(SEGMENTER, "segmenter")?;
        let segmenter = DeepLabV3::from_weights(&w, device).map_err(|e| m("segmenter", e.to_string()))?;
        Ok(DemoModels { generator, classifier, segmenter })
    }

    /// Loads the three models from `dir` (the files `train_synthetic --out DIR` writes).
    pub fn load_dir(dir: &Path, device: &Device) -> Result<Self> {
        let generator = crate::io::load_generator(&dir.join("generator.safetensors"), device)?;
        let classifier = crate::io::load_classifier(&dir.join("classifier.safetensors"), device)?;
        let (segmenter, _) = crate::io::load_segmenter(&dir.join("segmenter.safetensors"), device)?;
        Ok(DemoModels { generator, classifier, segmenter })
    }
}
