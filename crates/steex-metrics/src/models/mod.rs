//! The networks behind the evaluation metrics, in burn:
//!
//! - [`inception`]: pytorch-fid's Inception-v3 (FID features);
//! - [`face`]: a VGGFace2 face-recognition ResNet-50 in torchvision's layout (`conv1`, `bn1`,
//!   `layer1.0.conv1`, ..., `fc`, no prefix); its embedding is the 2048-d global average
//!   pool before `fc` (FVA compares embeddings);
//! - [`oracle`]: the reference's `OracleResnet` (`models/OracleResnetModel.py`): a
//!   `Resnet50_ft_dag` feature extractor (`feat_extract.conv1_7x7_s2`, ...: Caffe-style
//!   bottlenecks with the stride on the 1x1 reduce convolution, max pool 3x3/2 with ceil mode
//!   and no padding, average pool 7x7) and a Linear `classifier` to 40 attribute logits
//!   (MNAC counts decisions that change).
//!
//! The face embedder and the oracle are built on `steex-resnet`'s backbone.

pub mod face;
pub mod inception;
pub mod oracle;

use burn::nn::PaddingConfig2d;
use burn::nn::pool::MaxPool2dConfig;
use burn::tensor::Tensor;
pub use face::{FaceEmbedder, face_input};
pub use inception::FidInception;
pub use oracle::Oracle;
use steex_resnet::{BlockKind, ResNetConfig};

/// What can go wrong building or running an evaluation model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvaluatorError {
    /// The weights do not fit the configuration.
    #[error("evaluator weights: {0}")]
    Weights(#[from] steex_nn::WeightsError),
    /// The configuration is not a model.
    #[error("evaluator configuration: {0}")]
    Config(String),
    /// An input the model cannot take.
    #[error("{0}")]
    Input(String),
}

/// Metadata `kind` of a converted face embedder.
pub const FACE_KIND: &str = "face-resnet";
/// Metadata `kind` of a converted attribute oracle.
pub const ORACLE_KIND: &str = "oracle-resnet";
/// Side of the square images both models take (the reference resizes to 224x224).
pub const INPUT_SIZE: usize = 224;
/// VGGFace2's per-channel mean, in BGR order, subtracted from 0..255 BGR pixels.
pub const FACE_MEAN_BGR: [f32; 3] = [91.4953, 103.8827, 131.0912];

pub(crate) fn bottleneck_only(config: &ResNetConfig) -> Result<(), EvaluatorError> {
    if config.block != BlockKind::Bottleneck || config.layers.contains(&0) || config.width == 0 {
        return Err(EvaluatorError::Config(format!("expected a bottleneck ResNet, got {config:?}")));
    }
    Ok(())
}

pub(crate) fn max_pool(ceil: bool, pad: usize) -> burn::nn::pool::MaxPool2d {
    MaxPool2dConfig::new([3, 3])
        .with_strides([2, 2])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_ceil_mode(ceil)
        .init()
}

/// Global average pool `[B, C, H, W] -> [B, C]`.
pub(crate) fn global_mean(x: Tensor<4>) -> Tensor<2> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h * w]).mean_dim(2).reshape([b, c])
}

pub(crate) fn check_input(x: &Tensor<4>) -> Result<(), EvaluatorError> {
    let [_, c, h, w] = x.dims();
    if c != 3 || h != INPUT_SIZE || w != INPUT_SIZE {
        return Err(EvaluatorError::Input(format!(
            "expected images [B, 3, {INPUT_SIZE}, {INPUT_SIZE}], got [_, {c}, {h}, {w}]"
        )));
    }
    Ok(())
}
