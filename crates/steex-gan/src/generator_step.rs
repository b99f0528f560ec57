//! One iteration of SEAN's GAN training (`Pix2PixTrainer.run_generator_one_step`, then
//! `run_discriminator_one_step`), the generator in train mode:
//!
//! - the generator's tensors are held in the *training layout*
//!   ([`training_shapes`]): the published names, with `weight_orig`, `weight_u`, `weight_v`
//!   for the spectral-normed `conv_0`, `conv_1`, `conv_s` of every residual block (SEAN's
//!   `norm_G spectralspadesyncbatch3x3` puts spectral norm on those three and nowhere else in
//!   the generator) and ACE's batch-norm running statistics;
//! - every train-mode forward resolves them ([`resolve`]): one power iteration per spectral
//!   norm (`u`, `v` kept), `weight = weight_orig / sigma`, differentiable in `weight_orig`;
//!   the [`SeanGenerator`] is then built from them on the plain path (the published
//!   computation) under a [`TrainMode`], so ACE's `param_free_norm` normalises with the
//!   batch's statistics, and the running ones are updated (momentum 0.1);
//! - the generator step encodes and generates (`generate_fake`), takes `GAN + GAN_Feat +
//!   VGG` against the discriminator, and Adam updates the generator and its encoder at the
//!   generator's TTUR rate; the discriminator's `u`, `v` move in that forward too;
//! - the discriminator step generates again without gradients, in train mode as published
//!   (the updated weights, another power iteration and running-statistics update), and
//!   runs [`DiscriminatorTrainer::step`] on that fake.
//!
//! [`GanTrainer::export_generator`] writes what `weights-convert sean` writes (spectral norm
//! resolved with the stored `u`, `v` as `eval()` does, unused tensors absent).

use std::collections::BTreeMap;

use burn::tensor::{Device, Int, Tensor};
use steex_nn::{HostTensors, TrainMode, TrainParams, Weights};
use steex_sean::{ForwardPath, NoiseMode, SeanConfig, SeanGenerator};

use crate::GanError;
use crate::spectral::{power_iteration, sigma};
use crate::train::{DiscriminatorTrainer, GanLossConfig, GanOptimConfig};
use crate::vgg::Vgg19;

/// The residual blocks' convolutions under spectral norm.
pub const SPECTRAL_CONVS: [&str; 3] = ["conv_0", "conv_1", "conv_s"];

/// PyTorch's default batch-norm momentum, as SEAN's `SynchronizedBatchNorm2d` uses it.
pub const BN_MOMENTUM: f64 = 0.1;

/// `<block>.<conv>` when `name` is `<block>.<conv>.weight` of a spectral-normed convolution.
fn spectral_prefix(name: &str) -> Option<&str> {
    let prefix = name.strip_suffix(".weight")?;
    let (block, conv) = prefix.split_once('.')?;
    (!block.contains('.') && block != "Zencoder" && SPECTRAL_CONVS.contains(&conv)).then_some(prefix)
}

/// Every tensor of the generator in the training layout, with its shape: those of
/// [`SeanConfig::expected_tensors`], each spectral-normed `<p>.weight` `[o, i, k, k]`
/// replaced by `<p>.weight_orig` (same shape), `<p>.weight_u` `[o]`, `<p>.weight_v`
/// `[i * k * k]`.
pub fn training_shapes(config: &SeanConfig) -> BTreeMap<String, Vec<usize>> {
    let mut out = BTreeMap::new();
    for (name, shape) in config.expected_tensors() {
        match spectral_prefix(&name) {
            Some(p) => {
                out.insert(format!("{p}.weight_u"), vec![shape[0]]);
                out.insert(format!("{p}.weight_v"), vec![shape[1..].iter().product()]);
                out.insert(format!("{p}.weight_orig"), shape);
            }
            None => {
                out.insert(name, shape);
            }
        }
    }
    out
}

/// The converted layout from live tensors in the training layout: each `<p>.weight_orig`
/// becomes `<p>.weight = weight_orig / sigma` (after one power iteration from the stored `u`
/// when `iterate`, as a train-mode forward; with the stored `u`, `v` otherwise, as
/// `eval()`), differentiable in `weight_orig`. Returns the tensors and the spectral norms'
/// `(name, value)` vectors (new ones when `iterate`).
#[allow(clippy::type_complexity)]
pub fn resolve(
    tensors: &BTreeMap<String, (Vec<usize>, Tensor<1>)>,
    iterate: bool,
) -> Result<(BTreeMap<String, (Vec<usize>, Tensor<1>)>, Vec<(String, Tensor<1>)>), GanError> {
    let mut out = BTreeMap::new();
    let mut buffers = Vec::new();
    let get = |n: &str| tensors.get(n).cloned().ok_or_else(|| GanError::Input(format!("generator tensors lack `{n}`")));
    for (name, (shape, t)) in tensors {
        if let Some(p) = name.strip_suffix(".weight_orig") {
            let (o, n) = (shape[0], shape[1..].iter().product::<usize>());
            let w = t.clone().reshape([o, n]);
            let (_, u) = get(&format!("{p}.weight_u"))?;
            let (_, v) = get(&format!("{p}.weight_v"))?;
            let (u, v) = if iterate { power_iteration(w.clone(), u) } else { (u, v) };
            let resolved = t.clone() / sigma(w, u.clone(), v.clone());
            out.insert(format!("{p}.weight"), (shape.clone(), resolved));
            buffers.push((format!("{p}.weight_u"), u));
            buffers.push((format!("{p}.weight_v"), v));
        } else if !name.ends_with(".weight_u") && !name.ends_with(".weight_v") {
            out.insert(name.clone(), (shape.clone(), t.clone()));
        }
    }
    Ok((out, buffers))
}

/// Fresh generator values in the training layout as SEAN initialises them
/// (`init_weights('xavier', 0.02)` on every convolution and linear layer, `weight_orig`
/// included, biases 0; blending weights and noise scales 0; running mean 0, variance 1;
/// spectral norm's `u`, `v` as `normalize(randn)`). Deterministic for a seed.
pub fn init_generator_values(config: &SeanConfig, seed: u64) -> HostTensors {
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let normal = Normal::new(0.0f64, 1.0).expect("a valid normal");
    let mut randn = |n: usize| -> Vec<f64> { (0..n).map(|_| normal.sample(&mut rng)).collect() };
    let mut out = HostTensors::new();
    for (name, shape) in training_shapes(config) {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = if name.ends_with(".running_var") {
            vec![1.0; n]
        } else if name.ends_with(".weight_u") || name.ends_with(".weight_v") {
            let x = randn(n);
            let norm = x.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
            x.iter().map(|a| (a / norm) as f32).collect()
        } else if (name.ends_with(".weight") || name.ends_with(".weight_orig")) && shape.len() >= 2 {
            // xavier_normal_: std = gain * sqrt(2 / (fan_in + fan_out)).
            let rf: usize = shape[2..].iter().product();
            let std = 0.02 * (2.0 / ((shape[0] + shape[1]) * rf) as f64).sqrt();
            randn(n).iter().map(|a| (a * std) as f32).collect()
        } else {
            vec![0.0; n]
        };
        out.insert(name, (shape, values));
    }
    out
}

/// The losses and discriminator outputs of one iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepLosses {
    /// `GAN`.
    pub gan: f32,
    /// `GAN_Feat` (times `lambda_feat`).
    pub feat: f32,
    /// `VGG` (times `lambda_vgg`; 0 without the VGG loss).
    pub vgg: f32,
    /// `D_Fake`.
    pub d_fake: f32,
    /// `D_real`.
    pub d_real: f32,
    /// The discriminator's mean prediction on the fake images of its step.
    pub d_fake_mean: f32,
    /// Its mean prediction on the real images.
    pub d_real_mean: f32,
}

impl StepLosses {
    /// Whether every term is finite.
    pub fn is_finite(&self) -> bool {
        [self.gan, self.feat, self.vgg, self.d_fake, self.d_real, self.d_fake_mean, self.d_real_mean]
            .iter()
            .all(|x| x.is_finite())
    }
}

/// The generator (with its encoder), the discriminator and their optimisers.
pub struct GanTrainer {
    config: SeanConfig,
    g: TrainParams,
    d: DiscriminatorTrainer,
    vgg: Option<Vgg19>,
    losses: GanLossConfig,
    optim: GanOptimConfig,
    lr: f64,
    /// The fakes of the last step (generator step, discriminator step), detached.
    last_fakes: Option<(Tensor<4>, Tensor<4>)>,
}

impl GanTrainer {
    /// A trainer from the generator's values in the training layout (checked against
    /// `config`), the discriminator's trainer, and the frozen VGG19 (`None`: no VGG loss),
    /// on `device` (an autodiff device).
    pub fn new(
        config: SeanConfig,
        g_values: &HostTensors,
        d: DiscriminatorTrainer,
        vgg: Option<Vgg19>,
        losses: GanLossConfig,
        optim: GanOptimConfig,
        device: &Device,
    ) -> Result<Self, GanError> {
        let mut g = TrainParams::new(g_values, &config.to_metadata(), device);
        g.betas = optim.betas();
        let lr = optim.lr;
        let trainer = GanTrainer { config, g, d, vgg, losses, optim, lr, last_fakes: None };
        trainer.build(false, false, device)?;
        Ok(trainer)
    }

    /// The generator built from the current values (resolved by [`resolve`]), with the
    /// spectral norms' vectors that resolution used.
    fn build(
        &self,
        iterate: bool,
        detached: bool,
        device: &Device,
    ) -> Result<(SeanGenerator, Vec<(String, Tensor<1>)>), GanError> {
        let (tensors, buffers) = resolve(&self.g.tensors(detached), iterate)?;
        let w = Weights::from_tensors(tensors, self.g.metadata())?;
        let g = SeanGenerator::load(&w, self.config.clone(), device)?.with_path(ForwardPath::Plain);
        Ok((g, buffers))
    }

    /// `generate_fake` in train mode: encode `real`, generate; the running statistics and
    /// the spectral norms' vectors are updated. Differentiable in the generator's
    /// parameters unless `detached`.
    fn generate_fake(
        &mut self,
        labels: Tensor<3, Int>,
        real: Tensor<4>,
        noise: NoiseMode,
        detached: bool,
    ) -> Result<(Tensor<4>, Tensor<4>), GanError> {
        let device = real.device();
        let (g, buffers) = self.build(true, detached, &device)?;
        let mode = TrainMode::begin();
        let mask = g.mask(labels)?;
        let codes = g.encode(real, &mask)?;
        let fake = g.generate(&mask, codes, noise)?;
        let stats = mode.finish();
        self.g.update_running_stats(&stats, BN_MOMENTUM)?;
        for (name, value) in buffers {
            self.g.set_buffer(&name, value)?;
        }
        Ok((fake, mask.at_scale(5)))
    }

    /// One iteration on a batch: the generator step, then the discriminator step (see the
    /// module docs). `noise` is the generator's noise for both forwards.
    ///
    /// # Shapes
    /// - `labels`: `[B, H, W]` label ids (255 unknown) at the generator's size
    /// - `real`: `[B, 3, H, W]` in [-1, 1]
    pub fn step(&mut self, labels: Tensor<3, Int>, real: Tensor<4>, noise: NoiseMode) -> Result<StepLosses, GanError> {
        let (fake, semantics) = self.generate_fake(labels.clone(), real.clone(), noise, false)?;
        let first = fake.clone().detach();
        let g = self.d.generator_losses(self.vgg.as_ref(), &self.losses, semantics.clone(), fake, real.clone())?;
        let host = |t: &Tensor<1>| steex_nn::host(t.clone().detach())[0];
        let (gan, feat, vgg) = (host(&g.gan), host(&g.feat), host(&g.vgg));
        let grads = g.total().backward();
        self.g.adam_step(&grads, self.generator_lr());
        let (fake, _) = self.generate_fake(labels, real.clone(), noise, true)?;
        self.d.set_lr(self.discriminator_lr());
        let fake = fake.detach();
        self.last_fakes = Some((first, fake.clone()));
        let d = self.d.step(semantics, real, fake)?;
        Ok(StepLosses {
            gan,
            feat,
            vgg,
            d_fake: d.d_fake,
            d_real: d.d_real,
            d_fake_mean: d.fake_mean,
            d_real_mean: d.real_mean,
        })
    }

    /// The fakes of the last [`Self::step`], detached: the generator step's (train mode,
    /// before the update) and the discriminator step's (after it).
    pub fn last_fakes(&self) -> Option<(Tensor<4>, Tensor<4>)> {
        self.last_fakes.clone()
    }

    /// The base learning rate of the next steps (`update_learning_rate`'s `new_lr`).
    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// The generator's rate (`lr / 2` with TTUR).
    pub fn generator_lr(&self) -> f64 {
        GanOptimConfig { lr: self.lr, ..self.optim.clone() }.generator_lr()
    }

    /// The discriminator's rate (`2 lr` with TTUR).
    pub fn discriminator_lr(&self) -> f64 {
        GanOptimConfig { lr: self.lr, ..self.optim.clone() }.discriminator_lr()
    }

    /// The generator's values, buffers and Adam state (training layout).
    pub fn generator_params(&self) -> &TrainParams {
        &self.g
    }

    /// The same, to restore Adam's state on resume.
    pub fn generator_params_mut(&mut self) -> &mut TrainParams {
        &mut self.g
    }

    /// The discriminator's trainer.
    pub fn discriminator(&self) -> &DiscriminatorTrainer {
        &self.d
    }

    /// The same, to restore its state on resume.
    pub fn discriminator_mut(&mut self) -> &mut DiscriminatorTrainer {
        &mut self.d
    }

    /// The configuration.
    pub fn config(&self) -> &SeanConfig {
        &self.config
    }

    /// The generator as `weights-convert sean` writes it: spectral norm resolved with the
    /// stored `u`, `v` (`weight = weight_orig / sigma`, as `eval()`), on the host.
    pub fn export_generator(&self) -> Result<HostTensors, GanError> {
        let (tensors, _) = resolve(&self.g.tensors(true), false)?;
        Ok(tensors.into_iter().map(|(k, (shape, t))| (k, (shape, steex_nn::host(t.inner())))).collect())
    }

    /// The generator for inference (eval mode: running statistics, stored `u`, `v`),
    /// detached from training.
    pub fn eval_generator(&self, device: &Device) -> Result<SeanGenerator, GanError> {
        Ok(self.build(false, true, device)?.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discriminator::MultiscaleDiscriminatorConfig;

    fn tiny() -> SeanConfig {
        SeanConfig::new(3, 32).with_ngf(1).with_style_length(4).with_spade_hidden(4).with_encoder_ngf(2)
    }

    /// The training layout swaps exactly the residual blocks' `conv_0`, `conv_1`, `conv_s`
    /// for spectral norm's three tensors; a random iteration moves every trained tensor the
    /// loss reaches, keeps the losses finite, updates the buffers, and the export is the
    /// converted layout.
    #[test]
    fn a_random_iteration_and_the_export() {
        let cfg = tiny();
        let shapes = training_shapes(&cfg);
        assert_eq!(shapes["up_0.conv_s.weight_orig"], vec![8, 16, 1, 1]);
        assert_eq!(shapes["up_0.conv_s.weight_v"], vec![16]);
        assert_eq!(shapes["head_0.conv_0.weight_u"], vec![16]);
        assert!(shapes.contains_key("fc.weight") && shapes.contains_key("Zencoder.model.1.weight"));
        assert!(!shapes.contains_key("head_0.conv_0.weight") && !shapes.contains_key("up_0.ace_0.conv_gamma.weight_u"));
        let spectral = shapes.keys().filter(|k| k.ends_with(".weight_orig")).count();
        assert_eq!(spectral, 7 * 2 + 4);
        let device = Device::flex().autodiff();
        let dcfg = MultiscaleDiscriminatorConfig::new(3).with_ndf(2);
        let optim = GanOptimConfig::new();
        let d = DiscriminatorTrainer::new(dcfg.clone(), &dcfg.init_values(2), &optim, &device).unwrap();
        let init = init_generator_values(&cfg, 1);
        let mut t = GanTrainer::new(cfg.clone(), &init, d, None, GanLossConfig::new(), optim, &device).unwrap();
        let labels: Vec<i64> = (0..2 * 32 * 32).map(|i| ((i % 32) / 11) as i64).collect();
        let labels = Tensor::<3, Int>::from_data(burn::tensor::TensorData::new(labels, [2, 32, 32]), &device);
        let real = Tensor::<4>::random([2, 3, 32, 32], burn::tensor::Distribution::Uniform(-1.0, 1.0), &device);
        let l = t.step(labels, real, NoiseMode::Off).unwrap();
        assert!(l.is_finite() && l.vgg == 0.0, "{l:?}");
        let after = t.generator_params().export();
        for (k, (_, v)) in &init {
            let moved = v != &after[k].1;
            if k.ends_with("noise_var") {
                assert!(!moved, "{k} moved with noise off");
            }
            // (A `u` of one element is +-1 whatever the iteration: up_3.conv_0 here.)
            let vector = k.ends_with(".weight_u") && v.len() > 1;
            if vector || k.ends_with(".running_var") || k.ends_with("conv_img.weight") {
                assert!(moved, "{k} unchanged");
            }
        }
        assert_eq!(t.generator_params().steps(), 1);
        assert_eq!(t.discriminator().params().steps(), 1);
        let out = t.export_generator().unwrap();
        let want = cfg.expected_tensors();
        let got: BTreeMap<String, Vec<usize>> = out.iter().map(|(k, (s, _))| (k.clone(), s.clone())).collect();
        assert_eq!(got, want);
        assert!(t.eval_generator(&device).is_ok());
    }
}
