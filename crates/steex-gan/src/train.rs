//! One discriminator step and the generator's loss terms, as `pix2pix_model.py` computes
//! them (`discriminate` runs the discriminator once on `cat([fake, real])` along the batch,
//! so each spectral norm iterates once per call), with the optimiser of `create_optimizers`:
//! Adam with betas (0, 0.9), the discriminator at `2 lr` and the generator at `lr / 2`
//! (TTUR, `no_TTUR` false), or both at `lr` with `(beta1, beta2)` under `no_TTUR`.

use burn::config::Config;
use burn::tensor::{Device, Tensor, TensorData};
use steex_nn::{HostTensors, TrainParams};

use crate::GanError;
use crate::discriminator::{MultiscaleDiscriminator, MultiscaleDiscriminatorConfig};
use crate::loss::{Features, feature_matching, hinge_d_fake, hinge_d_real, hinge_g, mean_prediction, split_fake_real};
use crate::vgg::{Vgg19, vgg_loss};

/// The published optimiser options (SPADE/SEAN's training options: `lr` 0.0002, `beta1` 0,
/// `beta2` 0.9, TTUR on).
#[derive(Config, Debug)]
pub struct GanOptimConfig {
    /// `lr`: the base learning rate.
    #[config(default = 0.0002)]
    pub lr: f64,
    /// `no_TTUR`: both networks at `lr` with `(beta1, beta2)`.
    #[config(default = false)]
    pub no_ttur: bool,
    /// `beta1` (used under `no_TTUR` only; TTUR uses 0).
    #[config(default = 0.0)]
    pub beta1: f64,
    /// `beta2` (used under `no_TTUR` only; TTUR uses 0.9).
    #[config(default = 0.9)]
    pub beta2: f64,
}

impl GanOptimConfig {
    /// Adam's betas for both networks.
    pub fn betas(&self) -> (f64, f64) {
        if self.no_ttur { (self.beta1, self.beta2) } else { (0.0, 0.9) }
    }

    /// The discriminator's learning rate (`2 lr` with TTUR).
    pub fn discriminator_lr(&self) -> f64 {
        if self.no_ttur { self.lr } else { self.lr * 2.0 }
    }

    /// The generator's learning rate (`lr / 2` with TTUR).
    pub fn generator_lr(&self) -> f64 {
        if self.no_ttur { self.lr } else { self.lr / 2.0 }
    }
}

/// The published loss weights.
#[derive(Config, Debug)]
pub struct GanLossConfig {
    /// `lambda_feat`: weight of feature matching.
    #[config(default = 10.0)]
    pub lambda_feat: f64,
    /// `lambda_vgg`: weight of the VGG loss.
    #[config(default = 10.0)]
    pub lambda_vgg: f64,
}

/// The discriminator's two hinge terms of one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiscriminatorLosses {
    /// `D_Fake`.
    pub d_fake: f32,
    /// `D_real`.
    pub d_real: f32,
    /// The discriminator's mean prediction on the fake images ([`mean_prediction`]).
    pub fake_mean: f32,
    /// Its mean prediction on the real images.
    pub real_mean: f32,
}

/// The generator's loss terms (`[1]` each, differentiable in the fake image).
#[derive(Debug, Clone)]
pub struct GeneratorLosses {
    /// `GAN`: the hinge loss for the generator.
    pub gan: Tensor<1>,
    /// `GAN_Feat`: feature matching times `lambda_feat`.
    pub feat: Tensor<1>,
    /// `VGG`: the perceptual loss times `lambda_vgg`.
    pub vgg: Tensor<1>,
}

impl GeneratorLosses {
    /// `GAN + GAN_Feat + VGG`, the generator's total as the trainer sums it.
    pub fn total(&self) -> Tensor<1> {
        self.gan.clone() + self.feat.clone() + self.vgg.clone()
    }
}

/// Checks the semantics and images agree (batch, size) and fit `config`.
fn check_inputs(
    config: &MultiscaleDiscriminatorConfig,
    semantics: &Tensor<4>,
    images: [(&str, &Tensor<4>); 2],
) -> Result<(), GanError> {
    let [b, c, h, w] = semantics.dims();
    let want = config.input_nc() - config.output_nc;
    if c != want {
        return Err(GanError::Input(format!("semantics have {c} channels, the discriminator takes {want}")));
    }
    for (name, t) in images {
        if t.dims() != [b, config.output_nc, h, w] {
            return Err(GanError::Input(format!(
                "{name} image has shape {:?}, expected {:?} to match the semantics",
                t.dims(),
                [b, config.output_nc, h, w]
            )));
        }
    }
    Ok(())
}

/// `discriminate`: the discriminator once on `cat([cat([semantics, fake]), cat([semantics,
/// real])])`, its maps split into the fake and the real halves.
///
/// # Shapes
/// - `semantics`: `[B, label_nc, H, W]`; `fake`, `real`: `[B, 3, H, W]`
/// - output: two [`Features`], each map of batch `B`
pub fn discriminate(
    d: &mut MultiscaleDiscriminator,
    semantics: Tensor<4>,
    fake: Tensor<4>,
    real: Tensor<4>,
) -> (Features, Features) {
    let fake_concat = Tensor::cat(vec![semantics.clone(), fake], 1);
    let real_concat = Tensor::cat(vec![semantics, real], 1);
    split_fake_real(d.forward(Tensor::cat(vec![fake_concat, real_concat], 0)))
}

/// `compute_generator_loss` for a given fake image (the generator itself not run): the
/// hinge loss, feature matching and the VGG loss, each weighted as published; `d` runs once
/// in train mode (its spectral norms iterate, as in the published generator step).
pub fn generator_losses(
    d: &mut MultiscaleDiscriminator,
    vgg: &Vgg19,
    weights: &GanLossConfig,
    semantics: Tensor<4>,
    fake: Tensor<4>,
    real: Tensor<4>,
) -> GeneratorLosses {
    let (pred_fake, pred_real) = discriminate(d, semantics, fake.clone(), real.clone());
    GeneratorLosses {
        gan: hinge_g(&pred_fake),
        feat: feature_matching(&pred_fake, &pred_real, weights.lambda_feat),
        vgg: vgg_loss(vgg, fake, real).mul_scalar(weights.lambda_vgg),
    }
}

/// The discriminator's parameters and buffers in the published layout, with its Adam.
pub struct DiscriminatorTrainer {
    config: MultiscaleDiscriminatorConfig,
    params: TrainParams,
    lr: f64,
}

impl DiscriminatorTrainer {
    /// A trainer from the discriminator's tensors (published names, checked against
    /// `config`) on `device` (an autodiff device), Adam as `optim` sets it, no step taken.
    pub fn new(
        config: MultiscaleDiscriminatorConfig,
        values: &HostTensors,
        optim: &GanOptimConfig,
        device: &Device,
    ) -> Result<Self, GanError> {
        let mut params = TrainParams::new(values, &Default::default(), device);
        params.betas = optim.betas();
        let trainer = DiscriminatorTrainer { config, params, lr: optim.discriminator_lr() };
        trainer.discriminator(device)?;
        Ok(trainer)
    }

    /// The discriminator built from the current parameters (trainable: gradients of its
    /// outputs reach them); every tensor of the set must be used.
    pub fn discriminator(&self, device: &Device) -> Result<MultiscaleDiscriminator, GanError> {
        let w = self.params.weights()?;
        let d = self.config.load(&w.root(), device)?;
        w.finish()?;
        Ok(d)
    }

    /// One step of `run_discriminator_one_step`: the hinge terms on `discriminate(semantics,
    /// fake.detach(), real)`, backward of `D_Fake + D_real`, one Adam update, and the spectral
    /// norms' new `u`, `v` stored.
    ///
    /// # Shapes
    /// - `semantics`: `[B, label_nc (+1 don't-care), H, W]` one-hot
    /// - `real`, `fake`: `[B, 3, H, W]` in [-1, 1]
    pub fn step(
        &mut self,
        semantics: Tensor<4>,
        real: Tensor<4>,
        fake: Tensor<4>,
    ) -> Result<DiscriminatorLosses, GanError> {
        check_inputs(&self.config, &semantics, [("real", &real), ("fake", &fake)])?;
        let device = real.device();
        let mut d = self.discriminator(&device)?;
        let (pred_fake, pred_real) = discriminate(&mut d, semantics, fake.detach(), real);
        let d_fake = hinge_d_fake(&pred_fake);
        let d_real = hinge_d_real(&pred_real);
        let losses = DiscriminatorLosses {
            d_fake: steex_nn::host(d_fake.clone().detach())[0],
            d_real: steex_nn::host(d_real.clone().detach())[0],
            fake_mean: steex_nn::host(mean_prediction(&pred_fake).detach())[0],
            real_mean: steex_nn::host(mean_prediction(&pred_real).detach())[0],
        };
        let grads = (d_fake + d_real).backward();
        self.params.adam_step(&grads, self.lr);
        for (name, value) in d.buffers() {
            self.params.set_buffer(&name, value)?;
        }
        Ok(losses)
    }

    /// The generator's side of `compute_generator_loss` with this discriminator: its current
    /// values (detached: the generator step trains only the generator) run once in train
    /// mode on `discriminate(semantics, fake, real)`, the spectral norms' new `u`, `v`
    /// stored (as the published generator step leaves them); the loss terms stay
    /// differentiable in `fake`. Without `vgg` (`no_vgg_loss`) the VGG term is 0.
    ///
    /// # Shapes
    /// - `semantics`: `[B, label_nc, H, W]`; `fake`, `real`: `[B, 3, H, W]`
    pub fn generator_losses(
        &mut self,
        vgg: Option<&Vgg19>,
        weights: &GanLossConfig,
        semantics: Tensor<4>,
        fake: Tensor<4>,
        real: Tensor<4>,
    ) -> Result<GeneratorLosses, GanError> {
        check_inputs(&self.config, &semantics, [("real", &real), ("fake", &fake)])?;
        let w = self.params.weights_detached()?;
        let mut d = self.config.load(&w.root(), &fake.device())?;
        w.finish()?;
        let (pred_fake, pred_real) = discriminate(&mut d, semantics, fake.clone(), real.clone());
        let losses = GeneratorLosses {
            gan: hinge_g(&pred_fake),
            feat: feature_matching(&pred_fake, &pred_real, weights.lambda_feat),
            vgg: match vgg {
                Some(v) => vgg_loss(v, fake, real).mul_scalar(weights.lambda_vgg),
                None => Tensor::zeros([1], &real.device()),
            },
        };
        for (name, value) in d.buffers() {
            self.params.set_buffer(&name, value)?;
        }
        Ok(losses)
    }

    /// Sets the learning rate of the next steps (the decay of the published schedule).
    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// The parameters, to restore Adam's state on resume.
    pub fn params_mut(&mut self) -> &mut TrainParams {
        &mut self.params
    }

    /// The parameters and buffers with Adam's state.
    pub fn params(&self) -> &TrainParams {
        &self.params
    }

    /// The configuration.
    pub fn config(&self) -> &MultiscaleDiscriminatorConfig {
        &self.config
    }
}

/// One-hot semantics `[B, classes, H, W]` from labels `[B, H, W]` (`scatter_(1, label, 1.0)`
/// in `preprocess_input`); a label out of range is an error naming it.
pub fn one_hot(labels: &[u32], [b, h, w]: [usize; 3], classes: usize, device: &Device) -> Result<Tensor<4>, GanError> {
    if labels.len() != b * h * w {
        return Err(GanError::Input(format!("labels hold {} values, expected {b}x{h}x{w}", labels.len())));
    }
    let mut out = vec![0.0f32; b * classes * h * w];
    for (i, &l) in labels.iter().enumerate() {
        let l = l as usize;
        if l >= classes {
            return Err(GanError::Input(format!("label {l} at index {i} is not below {classes}")));
        }
        let (n, p) = (i / (h * w), i % (h * w));
        out[(n * classes + l) * h * w + p] = 1.0;
    }
    Ok(Tensor::from_data(TensorData::new(out, [b, classes, h, w]), device))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TTUR rates and betas; a step on random data moves the parameters, keeps finite
    /// losses, and refuses mismatched inputs with the tensor's name.
    #[test]
    fn a_random_discriminator_step() {
        let optim = GanOptimConfig::new();
        assert_eq!(optim.betas(), (0.0, 0.9));
        assert!((optim.discriminator_lr() - 0.0004).abs() < 1e-12 && (optim.generator_lr() - 0.0001).abs() < 1e-12);
        let plain = GanOptimConfig::new().with_no_ttur(true).with_beta1(0.5).with_beta2(0.999);
        assert_eq!((plain.betas(), plain.discriminator_lr()), ((0.5, 0.999), 0.0002));
        let device = Device::flex().autodiff();
        let cfg = MultiscaleDiscriminatorConfig::new(3).with_ndf(4).with_n_layers_d(3);
        let mut t = DiscriminatorTrainer::new(cfg.clone(), &cfg.init_values(1), &optim, &device).unwrap();
        let labels: Vec<u32> = (0..2 * 16 * 16).map(|i| (i % 3) as u32).collect();
        let sem = one_hot(&labels, [2, 16, 16], 3, &device).unwrap();
        let img = |s| Tensor::<4>::random([2, 3, 16, 16], burn::tensor::Distribution::Uniform(-1.0, s), &device);
        let before = t.params().export();
        let l = t.step(sem.clone(), img(1.0), img(0.5)).unwrap();
        assert!(l.d_fake.is_finite() && l.d_real.is_finite());
        let after = t.params().export();
        for (k, (_, v)) in &before {
            if k.ends_with("model3.0.bias") {
                // The prediction's bias: with outputs near 0 at init both hinges are active
                // and their gradients in it cancel exactly (+1 from fake, -1 from real).
                assert_eq!(v, &after[k].1, "{k}");
            } else {
                assert_ne!(v, &after[k].1, "{k} unchanged");
            }
        }
        assert_eq!(t.params().steps(), 1);
        let e = t.step(sem, img(1.0), Tensor::zeros([2, 3, 8, 16], &device)).unwrap_err().to_string();
        assert!(e.contains("fake image has shape [2, 3, 8, 16]"), "{e}");
        assert!(one_hot(&[0, 3], [1, 1, 2], 3, &device).unwrap_err().to_string().contains("label 3 at index 1"));
        // A checkpoint that lacks a tensor, or holds one too many, is refused by name.
        let mut missing = cfg.init_values(1);
        missing.remove("discriminator_1.model2.0.0.weight_v");
        let e = DiscriminatorTrainer::new(cfg.clone(), &missing, &optim, &device).err().expect("refused");
        assert!(e.to_string().contains("missing tensor `discriminator_1.model2.0.0.weight_v`"), "{e}");
        let mut extra = cfg.init_values(1);
        extra.insert("discriminator_2.model0.0.bias".into(), (vec![4], vec![0.0; 4]));
        let e = DiscriminatorTrainer::new(cfg.clone(), &extra, &optim, &device).err().expect("refused");
        assert!(e.to_string().contains("unexpected tensor `discriminator_2.model0.0.bias`"), "{e}");
    }
}
