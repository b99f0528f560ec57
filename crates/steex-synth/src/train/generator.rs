//! The SEAN generator's training: reconstruct scenes, and render swapped, blended and
//! perturbed region codes in place.

use burn::tensor::{Device, Int, Tensor, TensorData};
use steex_sean::{ForwardPath, NoiseMode, SeanGenerator};

use rand::Rng;

use super::augment::*;
use super::*;
use crate::params::TrainParams;
use crate::scene::{HEIGHT, REGIONS, Scene, SceneSpec, WIDTH};
use crate::world;

/// Loads the generator from `w`, on the plain path (the published computation; the fast
/// path gives the same weight gradients, but trains no faster: its folded convolutions'
/// weight gradients cost what it saves).
pub fn generator_from(w: &steex_nn::Weights, device: &Device) -> Result<SeanGenerator, TrainError> {
    Ok(SeanGenerator::load(w, world::generator_config(), device)
        .map_err(|e| TrainError::Model(e.to_string()))?
        .with_path(ForwardPath::Plain))
}

pub(crate) fn model_err(e: steex_sean::SeanError) -> TrainError {
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
) -> Result<TrainParams, TrainError> {
    train_loop(
        world::generator_spec(),
        cfg,
        device,
        &mut |p, step| {
            let g = generator_from(&p.weights()?, device)?;
            Ok(generator_loss(&g, cfg, step, device)?.loss)
        },
        progress,
    )
}

/// One step's generator outputs and targets, and its pixel loss ([`generator_loss`]).
pub struct GeneratorStep {
    /// The weighted L1 + L2 pixel loss. `[1]`
    pub loss: Tensor<1>,
    /// The generated images (swapped, blended and perturbed codes). `[B, 3, H, W]`
    pub fake: Tensor<4>,
    /// The scenes rendered with the plan's appearances (the targets). `[B, 3, H, W]`
    pub target: Tensor<4>,
    /// The label maps, row-major per scene (the same for fake and target).
    pub labels: Vec<u8>,
}

/// Step `step` of the generator's training ([`train_generator`]) with generator `g`: the
/// scenes of that step, their swap plan and perturbations, the generated images and the
/// pixel loss.
pub fn generator_loss(
    g: &SeanGenerator,
    cfg: &TrainConfig,
    step: usize,
    device: &Device,
) -> Result<GeneratorStep, TrainError> {
    let l = REGIONS.len();
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
    let d = (out.clone() - target.images.clone()) * weights;
    let loss = (d.clone().abs().mean() + d.powi_scalar(2).mean()).div_scalar(norm);
    let labels = real.iter().flat_map(|s| s.labels.iter().copied()).collect();
    Ok(GeneratorStep { loss, fake: out, target: target.images, labels })
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
        let params = crate::params::init(&shapes, &meta, 5, &device).unwrap();
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
}
