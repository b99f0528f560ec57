//! Training the world's three models in burn (autodiff + Adam), on freshly drawn scenes.

use burn::tensor::activation::{log_softmax, relu, softplus};
use burn::tensor::{Device, Int, Tensor, TensorData};
use steex_classifier::DecisionModel;
use steex_classifier::resnet::ResNet;
use steex_deeplab::DeepLabV3;
use steex_sean::{ForwardPath, NoiseMode, SeanGenerator};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::params::ParamSet;
use crate::scene::{CAUSAL, HEIGHT, LAMP, REGIONS, Scene, SceneSpec, WIDTH, scene};
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
    let scenes: Vec<Scene> = seeds.iter().map(|&s| scene(s)).collect();
    batch_of(&scenes, device)
}

/// Rendered scenes as one batch on `device`.
pub fn batch_of(scenes: &[Scene], device: &Device) -> Batch {
    let b = scenes.len();
    let images: Vec<f32> = scenes.iter().flat_map(|s| s.image.iter().copied()).collect();
    let labels: Vec<i64> = scenes.iter().flat_map(|s| s.labels.iter().map(|&k| k as i64)).collect();
    let stop: Vec<f32> = scenes.iter().map(|s| s.stop as u8 as f32).collect();
    Batch {
        images: Tensor::from_data(TensorData::new(images, [b, 3, HEIGHT, WIDTH]), device),
        labels: Tensor::from_data(TensorData::new(labels, [b, HEIGHT, WIDTH]), device),
        stop: Tensor::from_data(TensorData::new(stop, [b, 1]), device),
    }
}

/// Which scene each region's appearance comes from, per scene of a batch: `source[i][k]` is
/// the batch index whose region `k` scene `i` wears (`i` itself when not swapped).
#[derive(Debug, Clone, PartialEq)]
pub struct SwapPlan {
    /// `[B][L]` source scene indices.
    pub source: Vec<[usize; REGIONS.len()]>,
    /// `[B][L]` how much of the source's appearance (and code) a region takes: 1 for a full
    /// swap, between 0 and 1 for a blend of its own and the source's.
    pub share: Vec<[f32; REGIONS.len()]>,
}

impl SwapPlan {
    /// Every scene wears its own appearances.
    pub fn identity(b: usize) -> Self {
        SwapPlan { source: (0..b).map(|i| [i; REGIONS.len()]).collect(), share: vec![[1.0; REGIONS.len()]; b] }
    }

    /// Each region of each scene takes the appearance of another scene of the batch with
    /// probability `p[k]` (the partner is drawn per region).
    pub fn random(b: usize, p: [f64; REGIONS.len()], rng: &mut impl Rng) -> Self {
        let mut plan = Self::identity(b);
        if b < 2 {
            return plan;
        }
        for (i, row) in plan.source.iter_mut().enumerate() {
            for (k, src) in row.iter_mut().enumerate() {
                if rng.random_bool(p[k]) {
                    let j = rng.random_range(0..b - 1);
                    *src = if j >= i { j + 1 } else { j };
                }
            }
        }
        plan
    }

    /// Turns each swap into a blend with probability `p` (the source's share drawn uniformly
    /// from (0, 1)): the generator then learns codes between scenes' codes, which an
    /// explanation walks through, as the appearances between theirs.
    pub fn with_blends(mut self, p: f64, rng: &mut impl Rng) -> Self {
        for (i, (row, share)) in self.source.iter().zip(&mut self.share).enumerate() {
            for (src, w) in row.iter().zip(share.iter_mut()) {
                if *src != i && rng.random_bool(p) {
                    *w = rng.random_range(0.0..1.0);
                }
            }
        }
        self
    }

    /// The scenes as the plan dresses them: scene `i`'s layout with the appearances of the
    /// sources (rendered: the exact target for generating from swapped codes, and the
    /// rule's decision for it).
    pub fn apply(&self, specs: &[SceneSpec]) -> Vec<Scene> {
        self.source
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let mut s = specs[i];
                for (k, &src) in row.iter().enumerate() {
                    s.appearance[k] = specs[i].appearance[k].lerp(&specs[src].appearance[k], self.share[i][k]);
                }
                s.render()
            })
            .collect()
    }

    /// The codes `[B, L, S]` as the plan dresses them: row `(i, k)` is row `(source[i][k], k)`
    /// of `z`, blended with its own by `share[i][k]` (differentiable).
    pub fn mix_codes(&self, z: Tensor<3>) -> Tensor<3> {
        let [b, l, s] = z.dims();
        let device = z.device();
        let idx: Vec<i64> =
            self.source.iter().flat_map(|row| row.iter().enumerate().map(|(k, &src)| (src * l + k) as i64)).collect();
        let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [b * l]), &device);
        let theirs = z.clone().reshape([b * l, s]).select(0, idx).reshape([b, l, s]);
        if self.share.iter().flatten().all(|&w| w == 1.0) {
            return theirs;
        }
        let w = Tensor::<3>::from_data(TensorData::new(self.share.concat(), [b, l, 1]), &device);
        z * w.clone().neg().add_scalar(1.0) + theirs * w
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

/// The random draws of `step` (swap plans, code noise), independent of the scenes'.
fn step_rng(cfg: &TrainConfig, step: usize) -> StdRng {
    StdRng::seed_from_u64((cfg.seed << 32) ^ step as u64 ^ 0x7a11_0f5e_ed00_0000)
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

/// The generic loop: fresh parameters of `spec`; at every step, compute the loss of that
/// step from them (`loss_of(params, step)`, which builds the model), update.
fn train_loop(
    (shapes, meta): Spec,
    cfg: &TrainConfig,
    device: &Device,
    loss_of: &mut dyn FnMut(&ParamSet, usize) -> Result<Tensor<1>, TrainError>,
    progress: &mut dyn FnMut(Progress),
) -> Result<ParamSet, TrainError> {
    let mut params = ParamSet::init(&shapes, &meta, cfg.seed, device)?;
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

/// Loads the generator from `w`, on the plain path (the published computation; the fast
/// path gives the same weight gradients, but trains no faster: its folded convolutions'
/// weight gradients cost what it saves).
pub fn generator_from(w: &steex_nn::Weights, device: &Device) -> Result<SeanGenerator, TrainError> {
    Ok(SeanGenerator::load(w, world::generator_config(), device)
        .map_err(|e| TrainError::Model(e.to_string()))?
        .with_path(ForwardPath::Plain))
}

fn model_err(e: steex_sean::SeanError) -> TrainError {
    TrainError::Model(e.to_string())
}

/// Reconstructions of a batch: encode, then generate from the codes (noise off).
pub fn reconstruct(g: &SeanGenerator, images: Tensor<4>, labels: Tensor<3, Int>) -> Result<Tensor<4>, TrainError> {
    let mask = g.mask(labels).map_err(model_err)?;
    let codes = g.encode(images, &mask).map_err(model_err)?;
    g.generate(&mask, codes, NoiseMode::Off).map_err(model_err)
}

/// Probability that a region's appearance is swapped with another scene's while the
/// generator trains (per region, sky ... lamp).
pub const GENERATOR_SWAP: [f64; 5] = [0.25, 0.25, 0.25, 0.25, 0.4];
/// Probability that a swap is a blend instead ([`SwapPlan::with_blends`]).
pub const GENERATOR_BLEND: f64 = 0.5;
/// Probability that a region's code is perturbed (Gaussian noise, deviation drawn from
/// `[0, GENERATOR_NOISE]`) while the generator trains; the loss then ignores that region's
/// pixels and asks every other pixel to stay as it is.
pub const GENERATOR_PERTURB: f64 = 0.2;
/// Largest deviation of that noise.
pub const GENERATOR_NOISE: f64 = 1.0;

/// Trains the SEAN encoder-generator (L1 + L2 pixel loss). Every scene is encoded; some of
/// its regions' codes are replaced by another scene's codes for the same region
/// ([`GENERATOR_SWAP`]), or blended with them ([`GENERATOR_BLEND`]), and the target is the
/// scene rendered with those appearances (blended alike); some regions' codes are perturbed
/// off the data ([`GENERATOR_PERTURB`]), and the pixels of the other regions must not change.
/// So a region's code must carry its appearance alone, and must not move the pixels of other
/// regions, even where an explanation takes it: what makes an explanation that moves one
/// code change one region.
pub fn train_generator(
    cfg: &TrainConfig,
    device: &Device,
    progress: &mut dyn FnMut(Progress),
) -> Result<ParamSet, TrainError> {
    let l = REGIONS.len();
    train_loop(
        world::generator_spec(),
        cfg,
        device,
        &mut |p, step| {
            let g = generator_from(&p.weights()?, device)?;
            let specs: Vec<SceneSpec> = seeds(cfg, step).iter().map(|&s| SceneSpec::sample_for_training(s)).collect();
            let real: Vec<Scene> = specs.iter().map(|s| s.render()).collect();
            let mut rng = step_rng(cfg, step);
            let plan = SwapPlan::random(specs.len(), GENERATOR_SWAP, &mut rng).with_blends(GENERATOR_BLEND, &mut rng);
            let perturbed: Vec<Vec<bool>> =
                specs.iter().map(|_| (0..l).map(|_| rng.random_bool(GENERATOR_PERTURB)).collect()).collect();
            let input = batch_of(&real, device);
            let target = batch_of(&plan.apply(&specs), device);
            let mask = g.mask(input.labels).map_err(model_err)?;
            let z = plan.mix_codes(g.encode(input.images, &mask).map_err(model_err)?);
            let noise = region_noise(&z, &perturbed, GENERATOR_NOISE, &mut rng);
            let out = g.generate(&mask, z + noise, NoiseMode::Off).map_err(model_err)?;
            // Pixels weighted by 1 / sqrt(area of their region), so small regions (the lamp)
            // count, and twice within 2 pixels of a border, so borders stay sharp; weight 0
            // on the pixels of perturbed regions.
            let weights: Vec<f32> = real
                .iter()
                .zip(&perturbed)
                .flat_map(|(sc, p)| {
                    let mut area = [0f32; REGIONS.len()];
                    sc.labels.iter().for_each(|&k| area[k as usize] += 1.0);
                    let full = (HEIGHT * WIDTH) as f32;
                    let border = near_border(&sc.labels, 2);
                    sc.labels
                        .iter()
                        .zip(border)
                        .map(|(&k, b)| {
                            if p[k as usize] {
                                0.0
                            } else {
                                (full / area[k as usize] / REGIONS.len() as f32).sqrt() * if b { 2.0 } else { 1.0 }
                            }
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            let weights = Tensor::<4>::from_data(TensorData::new(weights, [specs.len(), 1, HEIGHT, WIDTH]), device);
            let norm = weights.clone().mean().into_scalar::<f32>().max(1e-3) as f64;
            let d = (out - target.images) * weights;
            Ok((d.clone().abs().mean() + d.powi_scalar(2).mean()).div_scalar(norm))
        },
        progress,
    )
}

/// Per pixel of a label map `[H, W]`: whether a pixel of another label lies within `d`
/// pixels (Chebyshev distance).
pub fn near_border(labels: &[u8], d: usize) -> Vec<bool> {
    let mut out = vec![false; labels.len()];
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            let k = labels[y * WIDTH + x];
            let (y0, y1) = (y.saturating_sub(d), (y + d).min(HEIGHT - 1));
            let (x0, x1) = (x.saturating_sub(d), (x + d).min(WIDTH - 1));
            out[y * WIDTH + x] = (y0..=y1).any(|yy| (x0..=x1).any(|xx| labels[yy * WIDTH + xx] != k));
        }
    }
    out
}

/// How the decision model's training batches are made with a generator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassifierAugment {
    /// Share of each batch that is generated (the rest are real scenes).
    pub generated: f64,
    /// Per region, probability that a generated scene wears another scene's code for it
    /// (the label follows the lamp's source).
    pub swap: [f64; 5],
    /// Probability that such a swap is a blend ([`SwapPlan::with_blends`]; the label
    /// follows the blended lamp).
    pub blend: f64,
    /// Gaussian noise added to the non-causal regions' codes of generated scenes: its
    /// standard deviation is drawn per scene from `[0, noise]`.
    pub noise: f64,
    /// Adversarial training on the non-causal pixels: `(radius, steps)` of a projected sign
    /// gradient ascent (L-infinity ball, images in [-1, 1]) on every pixel outside the
    /// causal regions; the model then trains on the perturbed batch. `(0, 0)`: off.
    pub adversarial: (f64, usize),
}

impl Default for ClassifierAugment {
    /// The bundled recipe's: three quarters generated, every region swapped half the time
    /// (half of the swaps blends), noise up to 1.0, adversarial radius 0.15 in 2 steps.
    fn default() -> Self {
        ClassifierAugment {
            generated: 0.75,
            swap: [0.5, 0.5, 0.5, 0.5, 0.5],
            blend: 0.5,
            noise: 1.0,
            adversarial: (0.15, 2),
        }
    }
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

/// Steepness of the graded targets the decision model learns: `sigmoid(GRADE * redness)`
/// of the lamp's colour ([`crate::scene::redness`]).
pub const GRADE: f32 = 6.0;

/// The decision model's targets `[B, 1]` for scenes: the rule, graded by how far the lamp's
/// hue is from the boundary (above 0.5 exactly when the lamp is red). A model trained on
/// them decides by the rule, and its score rises as the lamp's hue nears red, so its
/// gradient shows the way from green to red (with hard labels it is flat and confident
/// everywhere around green, and an explanation stalls there).
pub fn graded_targets(scenes: &[Scene], device: &Device) -> Tensor<2> {
    let y: Vec<f32> = scenes
        .iter()
        .map(|s| 1.0 / (1.0 + (-GRADE * crate::scene::redness(s.spec.appearance[LAMP].colour)).exp()))
        .collect();
    Tensor::from_data(TensorData::new(y, [scenes.len(), 1]), device)
}

/// Trains the decision model on the rule ([`graded_targets`]). With `generator`, part of
/// every batch is made by the generator from the scenes' codes, with non-causal codes
/// swapped between scenes and perturbed ([`ClassifierAugment`]): the model sees what the
/// explainer will show it, and learns that only the lamp's code decides.
pub fn train_classifier(
    cfg: &TrainConfig,
    generator: Option<(&SeanGenerator, ClassifierAugment)>,
    device: &Device,
    progress: &mut dyn FnMut(Progress),
) -> Result<ParamSet, TrainError> {
    train_loop(
        world::classifier_spec(),
        cfg,
        device,
        &mut |p, step| {
            let load = |w: &steex_nn::Weights| {
                ResNet::load(w, world::classifier_config(), 1, device).map_err(|e| TrainError::Model(e.to_string()))
            };
            let c = load(&p.weights()?)?;
            let specs: Vec<SceneSpec> = seeds(cfg, step).iter().map(|&s| SceneSpec::sample_for_training(s)).collect();
            let real: Vec<Scene> = specs.iter().map(|s| s.render()).collect();
            let Some((g, aug)) = generator else {
                let b = batch_of(&real, device);
                return Ok(bce(c.logits(b.images), graded_targets(&real, device)));
            };
            let n = ((specs.len() as f64 * aug.generated).round() as usize).min(specs.len());
            let mut rng = step_rng(cfg, step);
            let plan = SwapPlan::random(n, aug.swap, &mut rng).with_blends(aug.blend, &mut rng);
            let gen_in = batch_of(&real[..n], device);
            let gen_labels = graded_targets(&plan.apply(&specs[..n]), device);
            let mask = g.mask(gen_in.labels).map_err(model_err)?;
            let z = plan.mix_codes(g.encode(gen_in.images, &mask).map_err(model_err)?.detach());
            let z = z.clone() + code_noise(&z, aug.noise, &mut rng);
            let generated = g.generate(&mask, z, NoiseMode::Off).map_err(model_err)?.detach();
            let rest = batch_of(&real[n..], device);
            let images = Tensor::cat(vec![generated, rest.images], 0);
            let stop = Tensor::cat(vec![gen_labels, graded_targets(&real[n..], device)], 0);
            let (radius, pgd_steps) = aug.adversarial;
            let images = if radius > 0.0 && pgd_steps > 0 {
                // The attack's backward passes must not reach the training graph: each
                // builds the model afresh from the detached values.
                let free = non_causal_pixels(&specs, device);
                attack(&mut || load(&p.weights_detached()?), images, stop.clone(), free, radius, pgd_steps)?
            } else {
                images
            };
            Ok(bce(c.logits(images), stop))
        },
        progress,
    )
}

/// `[B, 1, H, W]`: 1 on pixels outside the causal regions of `specs`' layouts.
fn non_causal_pixels(specs: &[SceneSpec], device: &Device) -> Tensor<4> {
    let v: Vec<f32> = specs
        .iter()
        .flat_map(|s| s.labels().into_iter().map(|k| (!CAUSAL.contains(&(k as usize))) as u8 as f32))
        .collect();
    Tensor::from_data(TensorData::new(v, [specs.len(), 1, HEIGHT, WIDTH]), device)
}

/// Projected sign-gradient ascent of the decision loss on the pixels where `free` is 1,
/// within `radius` (L-infinity) of `images`, with the model `model()` builds; returns the
/// perturbed images (detached).
fn attack(
    model: &mut dyn FnMut() -> Result<ResNet, TrainError>,
    images: Tensor<4>,
    stop: Tensor<2>,
    free: Tensor<4>,
    radius: f64,
    steps: usize,
) -> Result<Tensor<4>, TrainError> {
    let step_size = 2.5 * radius / steps as f64;
    let clean = images.detach();
    let mut x = clean.clone();
    for _ in 0..steps {
        let xg = x.clone().require_grad();
        let grads = bce(model()?.logits(xg.clone()), stop.clone().detach()).backward();
        let Some(g) = xg.grad(&grads) else { break };
        let g = Tensor::<4>::from_inner(g);
        let delta = (x - clean.clone() + g.sign() * free.clone().mul_scalar(step_size)).clamp(-radius, radius);
        x = (clean.clone() + delta).clamp(-1.0, 1.0).detach();
    }
    Ok(x)
}

/// Gaussian noise for the non-causal rows of codes `[B, L, S]`, its deviation drawn per
/// scene from `[0, max]`; zero on the causal rows.
fn code_noise(z: &Tensor<3>, max: f64, rng: &mut impl Rng) -> Tensor<3> {
    let [b, l, _] = z.dims();
    let rows: Vec<Vec<bool>> = (0..b).map(|_| (0..l).map(|k| !CAUSAL.contains(&k)).collect()).collect();
    region_noise(z, &rows, max, rng)
}

/// Gaussian noise for the rows `(i, k)` of codes `[B, L, S]` where `rows[i][k]`, its
/// deviation drawn per scene from `[0, max]`; zero elsewhere.
fn region_noise(z: &Tensor<3>, rows: &[Vec<bool>], max: f64, rng: &mut impl Rng) -> Tensor<3> {
    let [b, l, s] = z.dims();
    let mut v = vec![0f32; b * l * s];
    if max > 0.0 {
        for i in 0..b {
            let sd: f64 = rng.random_range(0.0..max);
            for k in (0..l).filter(|&k| rows[i][k]) {
                for x in &mut v[(i * l + k) * s..(i * l + k + 1) * s] {
                    let e: f64 = rng.sample(rand_distr::StandardNormal);
                    *x = (e * sd) as f32;
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(v, [b, l, s]), &z.device())
}

/// Share of the first `n` held-out scenes (seeds from [`crate::scene::HELD_OUT_SEED`]) that
/// the decision model decides as the rule does (logit above 0 exactly for `stop`): on the
/// real scenes, and with a generator also on their reconstructions.
pub fn held_out_accuracy(
    classifier: &impl DecisionModel,
    generator: Option<&SeanGenerator>,
    n: usize,
    device: &Device,
) -> Result<(f64, Option<f64>), TrainError> {
    let host = |t: Tensor<2>| {
        t.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| TrainError::Model(format!("{e:?}")))
    };
    let (mut real, mut rec) = (0usize, 0usize);
    let seeds: Vec<u64> = (0..n as u64).map(|i| crate::scene::HELD_OUT_SEED + i).collect();
    for chunk in seeds.chunks(50) {
        let b = batch(chunk, device);
        let truth = host(b.stop)?;
        let right = |logits: Vec<f32>| logits.iter().zip(&truth).filter(|(l, t)| (**l > 0.0) == (**t > 0.5)).count();
        real += right(host(classifier.logits(b.images.clone()))?);
        if let Some(g) = generator {
            rec += right(host(classifier.logits(reconstruct(g, b.images, b.labels)?))?);
        }
    }
    let share = |k: usize| k as f64 / n.max(1) as f64;
    Ok((share(real), generator.map(|_| share(rec))))
}

/// Binary cross-entropy from logits `x` and targets `y` in [0, 1], averaged:
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
        &mut |p, step| {
            let s = DeepLabV3::load(&p.weights()?, world::segmenter_config(), device)
                .map_err(|e| TrainError::Model(e.to_string()))?;
            let b = batch(&seeds(cfg, step), device);
            let logp = log_softmax(s.forward(b.images), 1);
            let [n, _, h, wd] = logp.dims();
            let onehot = b.labels.one_hot::<4>(k).permute([0, 3, 1, 2]).float();
            Ok((logp * onehot).sum().neg().div_scalar((n * h * wd) as f64))
        },
        progress,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generator's fast path (mask-only SPADE branch cached per mask, style convolutions
    /// folded) gives a trainable generator the same gradients as the published layer-by-layer
    /// path, for every weight, the SPADE branch's included.
    #[test]
    fn fast_and_plain_paths_give_the_same_weight_gradients() {
        let device = Device::flex().autodiff();
        let (shapes, meta) = world::generator_spec();
        let params = ParamSet::init(&shapes, &meta, 5, &device).unwrap();
        let b = batch(&[11, 12], &device);
        let grads = |path: ForwardPath| {
            let g = generator_from(&params.weights().unwrap(), &device).unwrap().with_path(path);
            let out = reconstruct(&g, b.images.clone(), b.labels.clone()).unwrap();
            (out - b.images.clone()).powi_scalar(2).mean().backward()
        };
        let (plain, fast) = (grads(ForwardPath::Plain), grads(ForwardPath::Fast));
        let mut compared = 0;
        for name in params.trained_names() {
            // With noise off, the noise scales get none on either path.
            let (p, f) = match (params.gradient(name, &plain), params.gradient(name, &fast)) {
                (Some(p), Some(f)) => (p, f),
                (None, None) if name.ends_with("noise_var") => continue,
                (p, f) => panic!("{name}: gradient on plain {}, on fast {}", p.is_some(), f.is_some()),
            };
            let scale = p.iter().fold(0f32, |m, x| m.max(x.abs()));
            let err = p.iter().zip(&f).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(err <= 1e-3 * scale.max(1e-6), "{name}: max |plain - fast| {err} of {scale}");
            compared += 1;
        }
        assert!(compared > 300, "{compared} parameters");
    }

    #[test]
    fn swap_plans_dress_scenes_and_codes_alike() {
        let specs: Vec<SceneSpec> = (0..4).map(SceneSpec::sample).collect();
        let mut rng = StdRng::seed_from_u64(1);
        let plan = SwapPlan::random(4, [1.0, 0.0, 0.0, 0.0, 1.0], &mut rng);
        for (i, row) in plan.source.iter().enumerate() {
            assert_ne!(row[0], i, "sky always swapped, from another scene");
            assert_ne!(row[4], i, "lamp always swapped");
            assert_eq!(&row[1..4], &[i, i, i], "the others never");
        }
        let dressed = plan.apply(&specs);
        for (i, s) in dressed.iter().enumerate() {
            // Layout of scene i, appearances of the sources, decision of the lamp's source.
            assert_eq!(s.spec.layout, specs[i].layout);
            assert_eq!(s.spec.appearance[0], specs[plan.source[i][0]].appearance[0]);
            assert_eq!(s.spec.appearance[2], specs[i].appearance[2]);
            assert_eq!(s.stop, specs[plan.source[i][4]].stop());
        }
        // Codes: row (i, k) comes from (source[i][k], k).
        let device = Device::flex();
        let (b, l, s) = (4, REGIONS.len(), 3);
        let z: Vec<f32> = (0..b * l * s).map(|v| v as f32).collect();
        let zt = Tensor::<3>::from_data(TensorData::new(z.clone(), [b, l, s]), &device);
        let mixed = plan.mix_codes(zt).into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
        for i in 0..b {
            for k in 0..l {
                let src = plan.source[i][k];
                assert_eq!(&mixed[(i * l + k) * s..(i * l + k + 1) * s], &z[(src * l + k) * s..(src * l + k + 1) * s]);
            }
        }
        assert_eq!(SwapPlan::identity(3).apply(&specs[..3])[1], specs[1].render());
    }

    #[test]
    fn blended_swaps_dress_scenes_and_codes_between_the_two() {
        let specs: Vec<SceneSpec> = (0..4).map(SceneSpec::sample).collect();
        let mut rng = StdRng::seed_from_u64(3);
        let plan = SwapPlan::random(4, [0.0, 0.0, 0.0, 0.0, 1.0], &mut rng).with_blends(1.0, &mut rng);
        let dressed = plan.apply(&specs);
        let device = Device::flex();
        let (b, l, s) = (4, REGIONS.len(), 2);
        let z: Vec<f32> = (0..b * l * s).map(|v| (v * v) as f32 * 0.01).collect();
        let zt = Tensor::<3>::from_data(TensorData::new(z.clone(), [b, l, s]), &device);
        let mixed = plan.mix_codes(zt).into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
        for i in 0..b {
            let (src, w) = (plan.source[i][LAMP], plan.share[i][LAMP]);
            assert!(src != i && w > 0.0 && w < 1.0, "scene {i}: source {src}, share {w}");
            assert_eq!(&plan.share[i][..LAMP], &[1.0; LAMP], "unswapped regions keep share 1");
            let (own, theirs) = (specs[i].appearance[LAMP], specs[src].appearance[LAMP]);
            let got = dressed[i].spec.appearance[LAMP];
            for c in 0..3 {
                let want = own.colour[c] + (theirs.colour[c] - own.colour[c]) * w;
                assert!((got.colour[c] - want).abs() < 1e-6, "scene {i} channel {c}");
            }
            assert_eq!(dressed[i].spec.appearance[0], specs[i].appearance[0]);
            // The decision follows the blended colour.
            assert_eq!(dressed[i].stop, crate::scene::is_red(got.colour));
            for k in 0..l {
                for c in 0..s {
                    let own = z[(i * l + k) * s + c];
                    let want = if k == LAMP { own + (z[(src * l + k) * s + c] - own) * w } else { own };
                    let have = mixed[(i * l + k) * s + c];
                    assert!((have - want).abs() < 1e-4 * (1.0 + want.abs()), "({i}, {k}, {c}): {have} vs {want}");
                }
            }
        }
    }

    #[test]
    fn graded_targets_decide_by_the_rule() {
        let device = Device::flex();
        let scenes: Vec<Scene> = (0..200).map(|s| SceneSpec::sample_for_training(s).render()).collect();
        let y = graded_targets(&scenes, &device).into_data().try_into_vec::<f32>().unwrap();
        let mut graded = 0;
        for (s, y) in scenes.iter().zip(&y) {
            assert_eq!(*y > 0.5, s.stop, "{:?} -> {y}", s.spec.appearance[LAMP].colour);
            graded += (0.05..0.95).contains(y) as usize;
        }
        // Lamps of any hue: some targets lie between the classes.
        assert!(graded > 10, "{graded}");
    }

    /// A decision model with one constant logit.
    struct Constant(f32);

    impl DecisionModel for Constant {
        fn logits(&self, images: Tensor<4>) -> Tensor<2> {
            let b = images.dims()[0];
            Tensor::full([b, 1], self.0, &images.device())
        }
        fn num_outputs(&self) -> usize {
            1
        }
    }

    #[test]
    fn held_out_accuracy_counts_the_rule_across_chunks() {
        let device = Device::flex();
        let n = 70; // two chunks, the second partial
        let stops = (0..n as u64).filter(|i| scene(crate::scene::HELD_OUT_SEED + i).stop).count() as f64 / n as f64;
        assert!(stops > 0.0 && stops < 1.0);
        let (always_stop, rec) = held_out_accuracy(&Constant(1.0), None, n, &device).unwrap();
        let (never_stop, _) = held_out_accuracy(&Constant(-1.0), None, n, &device).unwrap();
        assert_eq!(rec, None);
        assert!((always_stop - stops).abs() < 1e-12, "{always_stop} vs {stops}");
        assert!((never_stop - (1.0 - stops)).abs() < 1e-12, "{never_stop} vs {}", 1.0 - stops);
    }

    #[test]
    fn borders_are_found_on_both_sides() {
        let mut labels = vec![0u8; HEIGHT * WIDTH];
        labels[10 * WIDTH + 10] = 1;
        let b = near_border(&labels, 2);
        assert!(b[10 * WIDTH + 10] && b[12 * WIDTH + 8] && b[8 * WIDTH + 12]);
        assert!(!b[13 * WIDTH + 10] && !b[10 * WIDTH + 13] && !b[0]);
        assert_eq!(b.iter().filter(|&&v| v).count(), 25);
    }

    #[test]
    fn code_noise_leaves_the_cause_alone() {
        let device = Device::flex();
        let z = Tensor::<3>::zeros([3, REGIONS.len(), 4], &device);
        let n = code_noise(&z, 0.5, &mut StdRng::seed_from_u64(2)).into_data().try_into_vec::<f32>().unwrap();
        let row = |i: usize, k: usize| &n[(i * REGIONS.len() + k) * 4..(i * REGIONS.len() + k + 1) * 4];
        for i in 0..3 {
            for k in 0..REGIONS.len() {
                let nonzero = row(i, k).iter().any(|v| *v != 0.0);
                assert_eq!(nonzero, !CAUSAL.contains(&k), "scene {i} region {k}");
            }
        }
    }
}
