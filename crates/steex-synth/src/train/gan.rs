//! The generator's GAN stage: a trained generator fine-tuned with the published SEAN
//! adversarial terms (`steex_gan`: the multiscale PatchGAN discriminator with spectral norm in
//! train mode, the hinge loss, feature matching; TTUR Adam with betas (0, 0.9)) added to the
//! pixel loss of [`super::train_generator`] (its swapped, blended and perturbed codes
//! included). No VGG loss: the world's 64 x 64 flat-shaded scenes have nothing an ImageNet
//! network would add that the pixel loss does not, and it would cost most of the step.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor};
use steex_gan::discriminator::MultiscaleDiscriminatorConfig;
use steex_gan::train::{DiscriminatorTrainer, GanLossConfig, GanOptimConfig, one_hot};
use steex_nn::{HostTensors, Weights};

use super::generator::{generator_from, generator_loss};
use super::*;
use crate::scene::{HEIGHT, REGIONS, WIDTH};
use crate::world;

/// The GAN stage's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GanStage {
    /// Scenes, steps and seed (the scenes are fresh training scenes of this seed); `lr` is
    /// the published base rate: the generator trains at `lr / 2`, the discriminator at `2 lr`
    /// (TTUR), constant for the first half of the steps, then linearly down to 0.
    pub train: TrainConfig,
    /// Weight of the adversarial terms (hinge + feature matching) against the pixel loss.
    pub gan_weight: f64,
    /// `lambda_feat`: feature matching's weight inside the adversarial terms.
    pub lambda_feat: f64,
    /// `ndf`: width of each discriminator's first layer.
    pub ndf: usize,
    /// `n_layers_D`.
    pub n_layers: usize,
    /// `num_D`: discriminators (scales 64 and 32).
    pub num_d: usize,
}

impl Default for GanStage {
    /// 400 steps of 8 scenes, base lr 4e-4, adversarial weight 0.1, `lambda_feat` 10 (as
    /// published), two discriminators of 3 layers from width 16.
    fn default() -> Self {
        GanStage {
            train: TrainConfig { steps: 400, batch: 8, lr: 4e-4, seed: 4 },
            gan_weight: 0.1,
            lambda_feat: 10.0,
            ndf: 16,
            n_layers: 3,
            num_d: 2,
        }
    }
}

impl GanStage {
    /// The discriminator: one-hot labels and the image in, as published.
    pub fn discriminator(&self) -> MultiscaleDiscriminatorConfig {
        MultiscaleDiscriminatorConfig::new(REGIONS.len())
            .with_ndf(self.ndf)
            .with_n_layers_d(self.n_layers)
            .with_num_d(self.num_d)
    }

    /// The learning-rate factor at `step` (0-based): 1 for the first half, then linear to 0.
    pub fn decay(&self, step: usize) -> f64 {
        let n = self.train.steps.max(1) as f64;
        let t = step as f64 / n;
        if t < 0.5 { 1.0 } else { (2.0 * (1.0 - t)).max(0.0) }
    }
}

/// What one GAN step reports (besides [`Progress`], whose loss is the generator's total).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GanProgress {
    /// Step just done, 1-based.
    pub step: usize,
    /// The pixel loss.
    pub pixel: f32,
    /// The generator's hinge loss.
    pub gan: f32,
    /// Feature matching (times `lambda_feat`).
    pub feat: f32,
    /// The discriminator's hinge terms on fakes and on real scenes.
    pub d_fake: f32,
    pub d_real: f32,
}

fn gan_err(e: steex_gan::GanError) -> TrainError {
    TrainError::Model(e.to_string())
}

/// A generator file's tensors and metadata, to fine-tune ([`finetune_generator`]).
pub fn generator_values(bytes: Vec<u8>) -> Result<(HostTensors, BTreeMap<String, String>), TrainError> {
    let w = Weights::from_safetensors(bytes)?;
    let (shapes, _) = world::generator_spec();
    let mut values = HostTensors::new();
    for (name, shape) in shapes {
        let v = w.values(&name, &shape)?;
        values.insert(name, (shape, v));
    }
    w.finish()?;
    Ok((values, w.metadata()))
}

/// Fine-tunes the generator of `values` with the GAN terms on top of its pixel loss. Per
/// step, as `pix2pix_model.py` orders it: the generator's Adam step on `pixel + gan_weight *
/// (GAN + GAN_Feat)` with the discriminator's current weights, then the discriminator's step
/// on the same fakes (detached; the published step draws them again from the updated
/// generator, which would cost a second generator forward).
pub fn finetune_generator(
    (values, metadata): (HostTensors, BTreeMap<String, String>),
    stage: &GanStage,
    device: &Device,
    progress: &mut dyn FnMut(Progress, GanProgress),
) -> Result<TrainParams, TrainError> {
    let cfg = &stage.train;
    let optim = GanOptimConfig::new().with_lr(cfg.lr);
    let losses = GanLossConfig::new().with_lambda_feat(stage.lambda_feat);
    let dcfg = stage.discriminator();
    let mut d =
        DiscriminatorTrainer::new(dcfg.clone(), &dcfg.init_values(cfg.seed), &optim, device).map_err(gan_err)?;
    let mut params = TrainParams::new(&values, &metadata, device);
    params.betas = optim.betas();
    let b = cfg.batch;
    for step in 0..cfg.steps {
        let decay = stage.decay(step);
        let g = generator_from(&params.weights()?, device)?;
        let s = generator_loss(&g, cfg, step, device)?;
        let labels: Vec<u32> = s.labels.iter().map(|&k| k as u32).collect();
        let semantics = one_hot(&labels, [b, HEIGHT, WIDTH], REGIONS.len(), device).map_err(gan_err)?;
        let adv =
            d.generator_losses(None, &losses, semantics.clone(), s.fake.clone(), s.target.clone()).map_err(gan_err)?;
        let (pixel, gan, feat) = (scalar(&s.loss), scalar(&adv.gan), scalar(&adv.feat));
        let total: Tensor<1> = s.loss + (adv.gan + adv.feat).mul_scalar(stage.gan_weight);
        let value = scalar(&total);
        if !value.is_finite() {
            return Err(TrainError::Diverged { step: step + 1, loss: value });
        }
        let grads = total.backward();
        params.adam_step(&grads, optim.generator_lr() * decay);
        d.set_lr(optim.discriminator_lr() * decay);
        let dl = d.step(semantics, s.target, s.fake.detach()).map_err(gan_err)?;
        progress(
            Progress { step: step + 1, steps: cfg.steps, loss: value },
            GanProgress { step: step + 1, pixel, gan, feat, d_fake: dl.d_fake, d_real: dl.d_real },
        );
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two steps on a fresh generator: every term finite, the generator's weights move, the
    /// decay schedule holds, and a file's values read back as the spec names them.
    #[test]
    fn two_gan_steps_move_the_generator() {
        let device = Device::flex().autodiff();
        let (shapes, meta) = world::generator_spec();
        let p = crate::params::init(&shapes, &meta, 3, &device).unwrap();
        let before = p.export();
        let stage = GanStage {
            train: TrainConfig { steps: 2, batch: 2, lr: 4e-4, seed: 9 },
            ndf: 4,
            n_layers: 2,
            ..GanStage::default()
        };
        let mut seen = Vec::new();
        let out = finetune_generator((before.clone(), meta), &stage, &device, &mut |p, g| seen.push((p, g))).unwrap();
        assert_eq!(seen.len(), 2);
        for (p, g) in &seen {
            assert!(p.loss.is_finite() && g.pixel > 0.0 && g.feat >= 0.0, "{p:?} {g:?}");
            assert!(g.gan.is_finite() && g.d_fake.is_finite() && g.d_real.is_finite(), "{g:?}");
            let want = g.pixel as f64 + 0.1 * (g.gan + g.feat) as f64;
            assert!((p.loss as f64 - want).abs() < 1e-4 * want.abs().max(1.0), "{p:?} {g:?}");
        }
        let after = out.export();
        let moved = before.iter().filter(|(k, (_, v))| &after[*k].1 != v).count();
        assert!(moved > 100, "{moved} tensors moved");
        let s = GanStage::default();
        assert_eq!((s.decay(0), s.decay(199), s.decay(300), s.decay(400)), (1.0, 1.0, 0.5, 0.0));
    }
}
