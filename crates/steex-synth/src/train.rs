//! Training the world's three models in burn (autodiff + Adam), on freshly drawn scenes.

use burn::tensor::activation::{log_softmax, relu, softplus};
use burn::tensor::{Device, Int, Tensor, TensorData};
use steex_classifier::DecisionModel;
use steex_classifier::resnet::ResNet;
use steex_deeplab::DeepLabV3;
use steex_sean::{ForwardPath, NoiseMode, SeanGenerator};

use crate::params::ParamSet;
use crate::scene::{HEIGHT, REGIONS, WIDTH, scene};
use crate::world;

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

/// A batch of scenes as tensors.
pub struct Batch {
    /// `[B, 3, H, W]` in [-1, 1].
    pub images: Tensor<4>,
    /// `[B, H, W]` label maps.
    pub labels: Tensor<3, Int>,
    /// `[B, 1]` decisions (1 = stop).
    pub stop: Tensor<2>,
}

/// The scenes of `seeds` as one batch on `device`.
pub fn batch(seeds: &[u64], device: &Device) -> Batch {
    let b = seeds.len();
    let scenes: Vec<_> = seeds.iter().map(|&s| scene(s)).collect();
    let images: Vec<f32> = scenes.iter().flat_map(|s| s.image.iter().copied()).collect();
    let labels: Vec<i64> = scenes.iter().flat_map(|s| s.labels.iter().map(|&k| k as i64)).collect();
    let stop: Vec<f32> = scenes.iter().map(|s| s.stop as u8 as f32).collect();
    Batch {
        images: Tensor::from_data(TensorData::new(images, [b, 3, HEIGHT, WIDTH]), device),
        labels: Tensor::from_data(TensorData::new(labels, [b, HEIGHT, WIDTH]), device),
        stop: Tensor::from_data(TensorData::new(stop, [b, 1]), device),
    }
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

fn lr_at(cfg: &TrainConfig, step: usize) -> f64 {
    let t = step as f64 / cfg.steps.max(1) as f64;
    cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
}

fn seeds(cfg: &TrainConfig, step: usize) -> Vec<u64> {
    (0..cfg.batch as u64).map(|i| cfg.seed * 1_000_000_000 + (step * cfg.batch) as u64 + i).collect()
}

fn scalar(t: &Tensor<1>) -> f32 {
    t.clone()
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .ok()
        .and_then(|v| v.first().copied())
        .unwrap_or(f32::NAN)
}

/// Tensor shapes and metadata of a model's file.
type Spec = (std::collections::BTreeMap<String, Vec<usize>>, std::collections::BTreeMap<String, String>);

/// The generic loop: fresh parameters of `spec`; at every step, build the model from them,
/// compute the loss of a batch, update.
fn train_loop(
    (shapes, meta): Spec,
    cfg: &TrainConfig,
    device: &Device,
    loss_of: &mut dyn FnMut(&steex_nn::Weights, Batch) -> Result<Tensor<1>, TrainError>,
    progress: &mut dyn FnMut(Progress),
) -> Result<ParamSet, TrainError> {
    let mut params = ParamSet::init(&shapes, &meta, cfg.seed, device)?;
    for step in 0..cfg.steps {
        let w = params.weights()?;
        let loss = loss_of(&w, batch(&seeds(cfg, step), device))?;
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

/// Loads the generator (plain path: every weight in the graph) from `w`.
pub fn generator_from(w: &steex_nn::Weights, device: &Device) -> Result<SeanGenerator, TrainError> {
    Ok(SeanGenerator::load(w, world::generator_config(), device)
        .map_err(|e| TrainError::Model(e.to_string()))?
        .with_path(ForwardPath::Plain))
}

/// Reconstructions of a batch: encode, then generate from the codes (noise off).
pub fn reconstruct(g: &SeanGenerator, images: Tensor<4>, labels: Tensor<3, Int>) -> Result<Tensor<4>, TrainError> {
    let m = |e: steex_sean::SeanError| TrainError::Model(e.to_string());
    let mask = g.mask(labels).map_err(m)?;
    let codes = g.encode(images, &mask).map_err(m)?;
    g.generate(&mask, codes, NoiseMode::Off).map_err(m)
}

/// Trains the SEAN encoder-generator to reconstruct scenes (L1 + L2 pixel loss).
pub fn train_generator(
    cfg: &TrainConfig,
    device: &Device,
    progress: &mut dyn FnMut(Progress),
) -> Result<ParamSet, TrainError> {
    train_loop(
        world::generator_spec(),
        cfg,
        device,
        &mut |w, b| {
            let g = generator_from(w, device)?;
            let out = reconstruct(&g, b.images.clone(), b.labels)?;
            let d = out - b.images;
            Ok(d.clone().abs().mean() + d.powi_scalar(2).mean())
        },
        progress,
    )
}

/// Trains the decision model on the rule. With `generator`, half of every batch is replaced
/// by its reconstructions, so the model decides the same on real and generated scenes.
pub fn train_classifier(
    cfg: &TrainConfig,
    generator: Option<&SeanGenerator>,
    device: &Device,
    progress: &mut dyn FnMut(Progress),
) -> Result<ParamSet, TrainError> {
    train_loop(
        world::classifier_spec(),
        cfg,
        device,
        &mut |w, b| {
            let c =
                ResNet::load(w, world::classifier_config(), 1, device).map_err(|e| TrainError::Model(e.to_string()))?;
            let images = match generator {
                Some(g) => {
                    let n = b.images.dims()[0] / 2;
                    let rec = reconstruct(g, b.images.clone().slice(0..n), b.labels.clone().slice(0..n))?.detach();
                    Tensor::cat(vec![rec, b.images.slice(n..)], 0)
                }
                None => b.images,
            };
            Ok(bce(c.logits(images), b.stop))
        },
        progress,
    )
}

/// Binary cross-entropy from logits `x` and targets `y` in {0, 1}, averaged:
/// `max(x, 0) - x y + log(1 + exp(-|x|))`.
pub fn bce(x: Tensor<2>, y: Tensor<2>) -> Tensor<1> {
    (relu(x.clone()) - x.clone() * y + softplus(x.abs().neg(), 1.0)).mean()
}

/// Trains the segmenter on the label maps (pixel cross-entropy).
pub fn train_segmenter(
    cfg: &TrainConfig,
    device: &Device,
    progress: &mut dyn FnMut(Progress),
) -> Result<ParamSet, TrainError> {
    let k = REGIONS.len();
    train_loop(
        world::segmenter_spec(),
        cfg,
        device,
        &mut |w, b| {
            let s =
                DeepLabV3::load(w, world::segmenter_config(), device).map_err(|e| TrainError::Model(e.to_string()))?;
            let logp = log_softmax(s.forward(b.images), 1);
            let [n, _, h, wd] = logp.dims();
            let onehot = b.labels.one_hot::<4>(k).permute([0, 3, 1, 2]).float();
            Ok((logp * onehot).sum().neg().div_scalar((n * h * wd) as f64))
        },
        progress,
    )
}
