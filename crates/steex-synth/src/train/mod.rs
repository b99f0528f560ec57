//! Training the world's three models in burn (autodiff + Adam), on freshly drawn scenes.
//!
//! - this module: the generic loop ([`TrainConfig`], [`Progress`], [`Recipe`]);
//! - [`augment`]: swapped, blended and perturbed appearances ([`SwapPlan`]), noise on codes;
//! - [`generator`]: the SEAN generator's training;
//! - [`gan`]: its optional GAN stage (discriminator, hinge loss, feature matching);
//! - [`classifier`]: the decision model's training, its attack and losses;
//! - [`segmenter`]: the segmenter's training.

pub mod augment;
pub mod classifier;
pub mod gan;
pub mod generator;
pub mod segmenter;

use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;

pub use augment::{ClassifierAugment, SwapPlan, near_border};
pub use classifier::{GRADE, bce, graded_targets, held_out_accuracy, train_classifier};
pub use gan::{GanProgress, GanStage, finetune_generator, generator_values};
pub use generator::{
    GENERATOR_BLEND, GENERATOR_NOISE, GENERATOR_PERTURB, GENERATOR_SWAP, GeneratorStep, generator_from, generator_loss,
    reconstruct, train_generator,
};
pub use segmenter::train_segmenter;

pub use crate::batch::{Batch, batch, batch_of};
use crate::params::{self, TrainParams};

/// What can go wrong while training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The parameters do not make the model (a bug, or a changed layout).
    #[error("weights: {0}")]
    Weights(#[from] steex_nn::WeightsError),
    /// A model refused its input.
    #[error("{0}")]
    Model(String),
    /// The loss is not finite.
    #[error("training diverged at step {step}: loss {loss}")]
    Diverged { step: usize, loss: f32 },
}

/// Steps, batch size, learning rate, seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainConfig {
    /// Adam updates.
    pub steps: usize,
    /// Scenes per update (fresh scenes every step).
    pub batch: usize,
    /// Peak learning rate (cosine decay to a tenth of it).
    pub lr: f64,
    /// Initialisation seed; scenes are drawn from seeds `seed * 10^9 + ...` (all below
    /// [`crate::scene::HELD_OUT_SEED`]).
    pub seed: u64,
}

/// Progress after one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Step just done, 1-based.
    pub step: usize,
    /// Steps in all.
    pub steps: usize,
    /// Loss at this step.
    pub loss: f32,
}

pub(crate) fn lr_at(cfg: &TrainConfig, step: usize) -> f64 {
    let t = step as f64 / cfg.steps.max(1) as f64;
    cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
}

pub(crate) fn seeds(cfg: &TrainConfig, step: usize) -> Vec<u64> {
    (0..cfg.batch as u64).map(|i| cfg.seed * 1_000_000_000 + (step * cfg.batch) as u64 + i).collect()
}

/// The random draws of `step` (swap plans, code noise), independent of the scenes'.
pub(crate) fn step_rng(cfg: &TrainConfig, step: usize) -> StdRng {
    StdRng::seed_from_u64((cfg.seed << 32) ^ step as u64 ^ 0x7a11_0f5e_ed00_0000)
}

pub(crate) fn scalar(t: &Tensor<1>) -> f32 {
    steex_nn::host(t.clone()).first().copied().unwrap_or(f32::NAN)
}

/// Tensor shapes and metadata of a model's file.
pub(crate) type Spec = (std::collections::BTreeMap<String, Vec<usize>>, std::collections::BTreeMap<String, String>);

/// The generic loop: fresh parameters of `spec`; at every step, compute the loss of that
/// step from them (`loss_of(params, step)`, which builds the model), update.
pub(crate) fn train_loop(
    (shapes, meta): Spec,
    cfg: &TrainConfig,
    device: &Device,
    loss_of: &mut dyn FnMut(&TrainParams, usize) -> Result<Tensor<1>, TrainError>,
    progress: &mut dyn FnMut(Progress),
) -> Result<TrainParams, TrainError> {
    let mut params = params::init(&shapes, &meta, cfg.seed, device)?;
    for step in 0..cfg.steps {
        let loss = loss_of(&params, step)?;
        let value = scalar(&loss);
        if !value.is_finite() {
            return Err(TrainError::Diverged { step: step + 1, loss: value });
        }
        let grads = loss.backward();
        params.adam_step(&grads, lr_at(cfg, step));
        progress(Progress { step: step + 1, steps: cfg.steps, loss: value });
    }
    Ok(params)
}

/// Everything that makes the bundled models (`cargo run --release --example
/// train_synthetic`): the generator first, then the decision model on it, then the
/// segmenter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recipe {
    /// SEAN encoder-generator ([`train_generator`]).
    pub generator: TrainConfig,
    /// Decision model ([`train_classifier`]) ...
    pub classifier: TrainConfig,
    /// ... and how its batches are made.
    pub augment: ClassifierAugment,
    /// Segmenter ([`train_segmenter`]).
    pub segmenter: TrainConfig,
}

impl Recipe {
    /// The recipe of the models in `assets/synthetic/`.
    pub fn bundled() -> Self {
        Recipe {
            generator: TrainConfig { steps: 1800, batch: 8, lr: 2e-3, seed: 1 },
            classifier: TrainConfig { steps: 800, batch: 16, lr: 2e-3, seed: 2 },
            augment: ClassifierAugment::default(),
            segmenter: TrainConfig { steps: 300, batch: 8, lr: 2e-3, seed: 3 },
        }
    }
}
