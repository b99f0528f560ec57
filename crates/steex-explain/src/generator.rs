//! What the explainer needs of a generator.

use burn::tensor::Tensor;
use steex_sean::{NoiseMode, SeanError, SeanGenerator, SemanticMask};

/// A semantic image generator steered through per-region style codes `[B, L, S]`.
pub trait StyleGenerator {
    /// The layout the codes are rendered into (for SEAN, a [`SemanticMask`]).
    type Mask;

    /// What `encode` and `generate` refuse with (for SEAN, [`SeanError`]).
    type Error: std::fmt::Display;

    /// Style codes `[B, L, S]` of images `[B, 3, H, W]` in [-1, 1].
    fn encode(&self, images: Tensor<4>, mask: &Self::Mask) -> Result<Tensor<3>, Self::Error>;

    /// Images `[B, 3, H, W]` in [-1, 1] from codes; differentiable with respect to them.
    fn generate(&self, mask: &Self::Mask, codes: Tensor<3>, noise: NoiseMode) -> Result<Tensor<4>, Self::Error>;

    /// The layouts of images `rows` of a batch, in that order: the explainer stops
    /// computing images whose optimisation has ended. An image's result must not depend on
    /// the other images of its batch.
    fn select(&self, mask: &Self::Mask, rows: &[usize]) -> Self::Mask;
}

impl StyleGenerator for SeanGenerator {
    type Mask = SemanticMask;
    type Error = SeanError;

    fn encode(&self, images: Tensor<4>, mask: &SemanticMask) -> Result<Tensor<3>, Self::Error> {
        SeanGenerator::encode(self, images, mask)
    }

    fn generate(&self, mask: &SemanticMask, codes: Tensor<3>, noise: NoiseMode) -> Result<Tensor<4>, Self::Error> {
        SeanGenerator::generate(self, mask, codes, noise)
    }

    fn select(&self, mask: &SemanticMask, rows: &[usize]) -> SemanticMask {
        mask.select(rows)
    }
}
