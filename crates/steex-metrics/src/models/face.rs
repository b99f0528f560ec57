//! The VGGFace2 face embedder (FVA).

use std::collections::BTreeMap;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use steex_nn::Weights;
use steex_resnet::{ResNetBackbone, ResNetConfig};

use super::{EvaluatorError, FACE_KIND, FACE_MEAN_BGR, bottleneck_only, check_input, global_mean};

/// A VGGFace2 ResNet in torchvision's layout; embeddings are the average-pooled features.
#[derive(Module, Debug)]
pub struct FaceEmbedder {
    /// conv1 .. layer4 (torchvision names, no prefix).
    pub backbone: ResNetBackbone,
    #[module(skip)]
    config: ResNetConfig,
}

impl FaceEmbedder {
    /// Every tensor the embedder uses (`fc.*` of a checkpoint is not used).
    pub fn expected_tensors(config: &ResNetConfig) -> BTreeMap<String, Vec<usize>> {
        config.expected_tensors("")
    }

    /// Builds the embedder from a `weights-convert face` file.
    pub fn from_weights(w: &Weights, device: &Device) -> Result<Self, EvaluatorError> {
        w.kind(&[FACE_KIND], "a face embedder (convert it with `weights-convert face`)")?;
        Self::load(w, ResNetConfig::from_metadata(w)?, device)
    }

    /// Builds the embedder from weights with torchvision's names (no prefix).
    pub fn load(w: &Weights, config: ResNetConfig, device: &Device) -> Result<Self, EvaluatorError> {
        bottleneck_only(&config)?;
        let backbone = ResNetBackbone::load(&w.root(), &config, device)?;
        w.finish()?;
        Ok(FaceEmbedder { backbone, config }.no_grad())
    }

    /// Embedding size.
    pub fn dim(&self) -> usize {
        self.config.out_channels()
    }

    /// Embeddings of preprocessed faces ([`face_input`]).
    ///
    /// # Shapes
    /// - input: `[B, 3, 224, 224]`
    /// - output: `[B, dim]`
    pub fn embed(&self, x: Tensor<4>) -> Result<Tensor<2>, EvaluatorError> {
        check_input(&x)?;
        Ok(global_mean(self.backbone.forward(x)))
    }
}

/// VGGFace2 preprocessing of one `[3, H, W]` RGB image in [-1, 1] (as `read_image` gives):
/// back to 0..255, channels in BGR order, minus [`FACE_MEAN_BGR`].
pub fn face_input(rgb: &[f32]) -> Vec<f32> {
    let n = rgb.len() / 3;
    let mut out = Vec::with_capacity(rgb.len());
    for (c, mean) in FACE_MEAN_BGR.iter().enumerate() {
        let src = &rgb[(2 - c) * n..(3 - c) * n];
        out.extend(src.iter().map(|&v| (v + 1.0) * 127.5 - mean));
    }
    out
}
