//! SEAN (Zhu et al., CVPR 2020), the semantic image generator STEEX steers, in burn.
//!
//! [`SeanGenerator::encode`] turns an image and its semantic mask into one style vector per
//! label (`[B, L, S]`); [`SeanGenerator::generate`] turns a mask and style codes back into
//! an image in [-1, 1]. The module tree mirrors the published PyTorch code
//! (`models/networks/generator.py`, `architecture.py`, `normalization.py` of
//! github valeoai/STEEX): one file per block kind, fields named after the checkpoint's
//! tensors. Weights come from `weights-convert sean` (spectral norm resolved).
//!
//! Library code takes a `&Device` and never names a backend.

pub mod ace;
pub mod block;
pub mod config;
pub mod error;
pub mod fused;
pub mod generator;
pub mod mask;
pub mod neighbourhood;
pub mod noise;
pub mod zencoder;

pub use config::SeanConfig;
pub use error::SeanError;
pub use generator::{ForwardPath, SeanGenerator};
pub use mask::SemanticMask;
pub use noise::NoiseMode;
