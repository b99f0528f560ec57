//! SEAN's GAN training (`train.py` with `Pix2PixTrainer`) on folders of images and label
//! maps: per batch one [`GanTrainer::step`] (the generator and its encoder, then the
//! discriminator; TTUR), `niter` epochs at `lr` then `niter_decay` epochs of linear decay to
//! 0 (`update_learning_rate`), a checkpoint after every epoch and on request, resume, and a
//! preview grid every K steps. The output is the converted generator (`weights-convert
//! sean`'s layout: spectral norm resolved), which `steex encode|generate|explain` load.
//!
//! A checkpoint folder ([`crate::checkpoint`]) holds the generator in the training layout
//! under `netG.` and the discriminator under `netD.` (weights, buffers and Adam's moments),
//! with where training stands.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use burn::tensor::{Device, Int, Tensor, TensorData};
use steex_gan::discriminator::MultiscaleDiscriminatorConfig;
use steex_gan::generator_step::{GanTrainer, StepLosses, init_generator_values};
use steex_gan::train::{DiscriminatorTrainer, GanLossConfig, GanOptimConfig};
use steex_gan::vgg::Vgg19;
use steex_nn::HostTensors;
use steex_sean::{NoiseMode, SeanConfig};

use crate::checkpoint::{self, CheckpointState, FORMAT};
use crate::data::{HostBatch, Loader, LoaderConfig};
use crate::error::TrainError;
use crate::run::Session;

/// Metadata `kind` of the generator file written ([`steex_sean::generator::KIND`]).
pub const KIND: &str = steex_sean::generator::KIND;

/// Everything a generator run is made of.
#[derive(Debug, Clone)]
pub struct GeneratorRecipe {
    /// The generator's sizes (its image size is the training size).
    pub sean: SeanConfig,
    /// The discriminator's.
    pub discriminator: MultiscaleDiscriminatorConfig,
    /// `niter`: epochs at the initial learning rate.
    pub niter: usize,
    /// `niter_decay`: epochs of linear decay to 0 after them.
    pub niter_decay: usize,
    /// Images per batch.
    pub batch: usize,
    /// `lr` (the generator trains at `lr / 2`, the discriminator at `2 lr`).
    pub lr: f64,
    /// Initialisation, shuffle and noise seed.
    pub seed: u64,
    /// Reader threads.
    pub workers: usize,
    /// Fail on an unreadable image instead of skipping it.
    pub strict: bool,
    /// The ACE noise: on (seeded per step, so a resumed run draws the same; one map per
    /// image, as SEAN draws it), or off.
    pub noise: bool,
    /// A preview grid every this many steps (0: none).
    pub preview_every: u64,
}

impl GeneratorRecipe {
    /// Epochs in all.
    pub fn epochs(&self) -> usize {
        self.niter + self.niter_decay
    }

    /// The learning rate of epoch `epoch` (0-based): `lr` for the first `niter + 1`, then
    /// `lr / niter_decay` less per epoch, as `update_learning_rate(epoch)` after each epoch.
    pub fn lr_at(&self, epoch: usize) -> f64 {
        let done = epoch.saturating_sub(self.niter);
        if self.niter_decay == 0 {
            self.lr
        } else {
            (self.lr - self.lr / self.niter_decay as f64 * done as f64).max(0.0)
        }
    }

    /// `(height, width)`.
    pub fn size(&self) -> (usize, usize) {
        self.sean.image_size()
    }

    /// The settings a resumed run must share.
    pub fn fingerprint(&self, samples: usize, vgg: bool) -> BTreeMap<String, String> {
        let (h, w) = self.size();
        let s = &self.sean;
        [
            ("task", "sean-gan".to_string()),
            ("size", format!("{h}x{w}")),
            ("labels", s.labels.to_string()),
            ("ngf", s.ngf.to_string()),
            ("style_length", s.style_length.to_string()),
            ("spade_hidden", s.spade_hidden.to_string()),
            ("encoder_ngf", s.encoder_ngf.to_string()),
            ("ndf", self.discriminator.ndf.to_string()),
            ("niter", self.niter.to_string()),
            ("batch", self.batch.to_string()),
            ("lr", self.lr.to_string()),
            ("noise", self.noise.to_string()),
            ("vgg", vgg.to_string()),
            ("samples", samples.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The output file's metadata.
    pub fn metadata(&self) -> BTreeMap<String, String> {
        let mut m = self.sean.to_metadata();
        m.insert("kind".into(), KIND.into());
        m
    }
}

/// What the loop reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum GanEvent {
    /// An epoch starts (`first` batches of it already done, when resumed).
    EpochStart { epoch: usize, batches: usize, first: usize, lr: f64 },
    /// One iteration done.
    Step { epoch: usize, batch: usize, step: u64, losses: StepLosses, lr: f64, images: usize, seconds: f64 },
    /// An image that could not be read was left out of its batch.
    Skipped { path: PathBuf, reason: String },
    /// An epoch is done: the mean of each term over its steps.
    EpochEnd { epoch: usize, means: StepLosses },
    /// A checkpoint was written.
    Checkpoint { path: PathBuf, epoch: usize, batch: usize },
    /// A preview grid (PNG bytes): per image of the batch, its mask, the real image and its
    /// reconstruction (eval mode).
    Preview { step: u64, png: Vec<u8> },
}

fn prefixed(t: &HostTensors, p: &str) -> HostTensors {
    t.iter().map(|(k, v)| (format!("{p}{k}"), v.clone())).collect()
}

fn unprefixed(t: &HostTensors, p: &str) -> HostTensors {
    t.iter().filter_map(|(k, v)| k.strip_prefix(p).map(|k| (k.to_string(), v.clone()))).collect()
}

fn gan_err(e: steex_gan::GanError) -> TrainError {
    TrainError::Model(e.to_string())
}

/// The batch's labels `[B, H, W]` and images `[B, 3, H, W]` on `device`.
fn batch_tensors(b: &HostBatch, (h, w): (usize, usize), device: &Device) -> (Tensor<3, Int>, Tensor<4>) {
    let labels: Vec<i64> = b.targets.iter().map(|v| *v as i64).collect();
    (
        Tensor::from_data(TensorData::new(labels, [b.len, h, w]), device),
        Tensor::from_data(TensorData::new(b.images.clone(), [b.len, 3, h, w]), device),
    )
}

/// The preview grid of a batch: per row, the mask's colours, the real image, its
/// reconstruction by the generator in eval mode (noise off).
pub fn preview(t: &GanTrainer, b: &HostBatch, device: &Device) -> Result<Vec<u8>, TrainError> {
    let (h, w) = t.config().image_size();
    let (labels, real) = batch_tensors(b, (h, w), device);
    let g = t.eval_generator(device).map_err(gan_err)?;
    let mask = g.mask(labels).map_err(|e| TrainError::Model(e.to_string()))?;
    let codes = g.encode(real, &mask).map_err(|e| TrainError::Model(e.to_string()))?;
    let fake = steex_nn::host(g.generate(&mask, codes, NoiseMode::Off).map_err(|e| TrainError::Model(e.to_string()))?);
    let l = t.config().labels;
    let (gw, plane) = (3 * w, h * w);
    let mut grid = vec![0f32; 3 * b.len * h * gw];
    for n in 0..b.len {
        for c in 0..3 {
            for y in 0..h {
                for x in 0..w {
                    let label = b.targets[n * plane + y * w + x] as usize;
                    let hue = (label.min(l) as f32 * 0.618_034).fract();
                    let colour = steex_io::image::hsv_to_rgb(hue, 0.7, if label >= l { 0.0 } else { 0.95 })[c];
                    let row = (c * b.len * h + n * h + y) * gw;
                    grid[row + x] = colour * 2.0 - 1.0;
                    grid[row + w + x] = b.images[((n * 3) + c) * plane + y * w + x];
                    grid[row + 2 * w + x] = fake[((n * 3) + c) * plane + y * w + x];
                }
            }
        }
    }
    Ok(steex_io::image::png_bytes(&grid, b.len * h, gw))
}

/// Trains the generator on the session's samples (images with masks); returns the trainer
/// at the end ([`GanTrainer::export_generator`] is the output). `vgg`: the frozen VGG19 of
/// the perceptual loss (`None`: `no_vgg_loss`).
pub fn train_generator(
    recipe: &GeneratorRecipe,
    vgg: Option<Vgg19>,
    session: &Session<'_>,
    device: &Device,
    on_event: &mut dyn FnMut(GanEvent),
) -> Result<GanTrainer, TrainError> {
    if recipe.batch == 0 || recipe.epochs() == 0 {
        return Err(TrainError::Argument("--batch and --niter + --niter-decay must be at least 1".into()));
    }
    recipe.sean.validate().map_err(|e| TrainError::Argument(e.to_string()))?;
    let fingerprint = recipe.fingerprint(session.train.len(), vgg.is_some());
    let optim = GanOptimConfig::new().with_lr(recipe.lr);
    let losses = GanLossConfig::new();
    let build = |g: &HostTensors, d: &HostTensors, vgg: Option<Vgg19>| {
        let d = DiscriminatorTrainer::new(recipe.discriminator.clone(), d, &optim, device).map_err(gan_err)?;
        GanTrainer::new(recipe.sean.clone(), g, d, vgg, losses.clone(), optim.clone(), device).map_err(gan_err)
    };
    let (mut t, mut state) = if session.resume {
        let ck = checkpoint::load(&session.checkpoints)?;
        let mut differs: Vec<String> = fingerprint
            .iter()
            .filter(|(key, v)| ck.state.recipe.get(*key) != Some(v))
            .map(|(key, v)| format!("{key} {v} (checkpoint: {})", ck.state.recipe.get(key).map_or("none", |s| s)))
            .collect();
        if ck.state.seed != recipe.seed {
            differs.push(format!("seed {} (checkpoint: {})", recipe.seed, ck.state.seed));
        }
        if !differs.is_empty() {
            return Err(TrainError::Checkpoint {
                path: session.checkpoints.clone(),
                reason: format!("written by another recipe: {}", differs.join("; ")),
            });
        }
        let mut t = build(&unprefixed(&ck.weights.0, "netG."), &unprefixed(&ck.weights.0, "netD."), vgg)?;
        let steps = ck.state.adam_steps;
        t.generator_params_mut().import_adam(&unprefixed(&ck.adam, "netG."), steps, device)?;
        t.discriminator_mut().params_mut().import_adam(&unprefixed(&ck.adam, "netD."), steps, device)?;
        (t, ck.state)
    } else {
        let g = init_generator_values(&recipe.sean, recipe.seed);
        let d = recipe.discriminator.init_values(recipe.seed.wrapping_add(1));
        let state = CheckpointState {
            format: FORMAT,
            epoch: 0,
            batch: 0,
            adam_steps: 0,
            seed: recipe.seed,
            last_epoch_loss: None,
            recipe: fingerprint,
        };
        (build(&g, &d, vgg)?, state)
    };
    let metadata = recipe.metadata();
    let save = |t: &GanTrainer, state: &CheckpointState, on_event: &mut dyn FnMut(GanEvent)| {
        let (g, d) = (t.generator_params(), t.discriminator().params());
        let mut weights = prefixed(&g.export(), "netG.");
        weights.extend(prefixed(&d.export(), "netD."));
        let mut adam = prefixed(&g.export_adam().0, "netG.");
        adam.extend(prefixed(&d.export_adam().0, "netD."));
        let state = CheckpointState { adam_steps: g.steps(), ..state.clone() };
        checkpoint::save(&session.checkpoints, &weights, &metadata, &adam, &state)?;
        on_event(GanEvent::Checkpoint { path: session.checkpoints.clone(), epoch: state.epoch, batch: state.batch });
        Ok::<_, TrainError>(())
    };
    let loader_cfg = LoaderConfig {
        batch: recipe.batch,
        size: recipe.size(),
        flip: false,
        seed: recipe.seed,
        workers: recipe.workers.max(1),
        ahead: 2,
    };
    while state.epoch < recipe.epochs() {
        let epoch = state.epoch;
        let lr = recipe.lr_at(epoch);
        t.set_lr(lr);
        let loader = Loader::start(session.train.clone(), loader_cfg, epoch, state.batch);
        on_event(GanEvent::EpochStart { epoch, batches: loader.batches(), first: state.batch, lr });
        let mut sums = [0f64; 7];
        let mut seen = 0usize;
        for b in loader {
            let t0 = Instant::now();
            for (path, reason) in &b.skipped {
                if recipe.strict {
                    return Err(TrainError::Image { path: path.clone(), reason: reason.clone() });
                }
                on_event(GanEvent::Skipped { path: path.clone(), reason: reason.clone() });
            }
            if b.len > 0 {
                let (labels, real) = batch_tensors(&b, recipe.size(), device);
                let step = t.generator_params().steps() + 1;
                let noise = if recipe.noise {
                    NoiseMode::SeededPerImage(recipe.seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                } else {
                    NoiseMode::Off
                };
                let l = t.step(labels, real, noise).map_err(gan_err)?;
                if !l.is_finite() {
                    // Nothing of this step is saved: the last checkpoint stays the last good one.
                    let loss = [l.gan, l.feat, l.vgg, l.d_fake, l.d_real].into_iter().find(|x| !x.is_finite());
                    return Err(TrainError::Diverged {
                        epoch: epoch + 1,
                        step: b.index + 1,
                        loss: loss.unwrap_or(f32::NAN),
                    });
                }
                for (s, v) in
                    sums.iter_mut().zip([l.gan, l.feat, l.vgg, l.d_fake, l.d_real, l.d_fake_mean, l.d_real_mean])
                {
                    *s += v as f64;
                }
                seen += 1;
                let seconds = t0.elapsed().as_secs_f64();
                on_event(GanEvent::Step { epoch, batch: b.index, step, losses: l, lr, images: b.len, seconds });
                if recipe.preview_every > 0 && step % recipe.preview_every == 0 {
                    on_event(GanEvent::Preview { step, png: preview(&t, &b, device)? });
                }
            }
            state.batch = b.index + 1;
            if session.stop.load(Ordering::SeqCst) {
                save(&t, &state, on_event)?;
                return Err(TrainError::Interrupted(session.checkpoints.clone()));
            }
        }
        let m = |i: usize| if seen > 0 { (sums[i] / seen as f64) as f32 } else { f32::NAN };
        let means = StepLosses {
            gan: m(0),
            feat: m(1),
            vgg: m(2),
            d_fake: m(3),
            d_real: m(4),
            d_fake_mean: m(5),
            d_real_mean: m(6),
        };
        on_event(GanEvent::EpochEnd { epoch, means });
        let total = means.gan + means.feat + means.vgg;
        state = CheckpointState { epoch: epoch + 1, batch: 0, last_epoch_loss: Some(total), ..state };
        save(&t, &state, on_event)?;
    }
    Ok(t)
}

/// Writes the trained generator as `weights-convert sean` does (spectral norm resolved),
/// with the recipe's metadata.
pub fn write_generator(t: &GanTrainer, recipe: &GeneratorRecipe, out: &std::path::Path) -> Result<(), TrainError> {
    let tensors = t.export_generator().map_err(gan_err)?;
    steex_io::write_bytes(out, &checkpoint::safetensors_bytes(&tensors, &recipe.metadata()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe() -> GeneratorRecipe {
        GeneratorRecipe {
            sean: SeanConfig::new(3, 32).with_ngf(1).with_style_length(4).with_spade_hidden(4).with_encoder_ngf(2),
            discriminator: MultiscaleDiscriminatorConfig::new(3).with_ndf(2),
            niter: 2,
            niter_decay: 4,
            batch: 2,
            lr: 0.0002,
            seed: 1,
            workers: 1,
            strict: false,
            noise: true,
            preview_every: 0,
        }
    }

    /// `update_learning_rate`: constant for `niter + 1` epochs, then `lr / niter_decay`
    /// less per epoch; names in checkpoints are prefixed and read back.
    #[test]
    fn the_published_linear_decay_and_the_checkpoint_prefixes() {
        let r = recipe();
        for (e, want) in [1.0, 1.0, 1.0, 0.75, 0.5, 0.25].into_iter().enumerate() {
            assert!((r.lr_at(e) / r.lr - want).abs() < 1e-12, "epoch {e}: {}", r.lr_at(e));
        }
        assert_eq!(r.epochs(), 6);
        assert_eq!(r.metadata()["kind"], "sean");
        let t: HostTensors = [("a".to_string(), (vec![1], vec![2.0]))].into();
        let p = prefixed(&t, "netG.");
        assert!(p.contains_key("netG.a"));
        assert_eq!(unprefixed(&p, "netG."), t);
        assert!(unprefixed(&p, "netD.").is_empty());
    }
}
