//! The SEAN generator (`SPADEGenerator` of the published code, `num_upsampling_layers`
//! "normal") with its style encoder.

use burn::module::Module;
use burn::tensor::activation::{leaky_relu, tanh};
use burn::tensor::{Device, Tensor};
use steex_nn::{Conv3x3, ConvSpec, Weights};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ace::AceCache;
use crate::block::SpadeResnetBlock;
use crate::config::SeanConfig;
use crate::error::SeanError;
use crate::mask::SemanticMask;
use crate::noise::{NoiseMode, NoiseSource};
use crate::zencoder::Zencoder;

/// Metadata value of `kind` in a converted generator file.
pub const KIND: &str = "sean";

/// Which forward the generator runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardPath {
    /// The published computation, layer by layer (the SPADE branch on every call, the style
    /// convolutions over the S-channel map).
    Plain,
    /// The same result up to float rounding, faster: the mask-only SPADE branch computed once
    /// per mask ([`SeanGenerator::mask`] caches it), the style convolutions folded onto the
    /// L-channel one-hot mask.
    #[default]
    Fast,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Nearest 2x upsampling (`nn.Upsample(scale_factor=2)`): each pixel repeated 2x2 (one
/// pass each way on the CPU, [`steex_nn::upsample`]).
pub use steex_nn::upsample::upsample2x;

/// The generator and its encoder. Field names follow the checkpoint (`G_middle_0` is
/// `g_middle_0`, `Zencoder` is `zencoder`).
#[derive(Module, Debug)]
pub struct SeanGenerator {
    /// The style encoder.
    pub zencoder: Zencoder,
    /// conv3x3 L -> 16 ngf on the mask at the start size.
    pub fc: Conv3x3,
    /// Residual blocks in forward order.
    pub head_0: SpadeResnetBlock,
    pub g_middle_0: SpadeResnetBlock,
    pub g_middle_1: SpadeResnetBlock,
    pub up_0: SpadeResnetBlock,
    pub up_1: SpadeResnetBlock,
    pub up_2: SpadeResnetBlock,
    /// The last block has no style branch.
    pub up_3: SpadeResnetBlock,
    /// conv3x3 ngf -> 3.
    pub conv_img: Conv3x3,
    #[module(skip)]
    config: SeanConfig,
    #[module(skip)]
    path: ForwardPath,
    /// Identifies the weights a mask's cache was computed with.
    #[module(skip)]
    id: u64,
}

impl SeanGenerator {
    /// Builds the generator of `config` from converted weights (names and shapes of
    /// [`SeanConfig::expected_tensors`]); every tensor of `weights` must be used. Frozen
    /// weights (the usual case) make a frozen generator holding its convolutions' weights
    /// laid out for their backward ([`Self::with_held_weights`]).
    pub fn load(weights: &Weights, config: SeanConfig, device: &Device) -> Result<Self, SeanError> {
        let g = Self::load_unheld(weights, config, device)?;
        Ok(if weights.is_trainable() { g } else { g.with_held_weights() })
    }

    /// [`Self::load`] taking the weights by value: they are dropped before the layouts for
    /// the backward are made, so the two never sit in memory together (a lower peak).
    pub fn load_owned(weights: Weights, config: SeanConfig, device: &Device) -> Result<Self, SeanError> {
        let trainable = weights.is_trainable();
        let g = Self::load_unheld(&weights, config, device)?;
        drop(weights);
        Ok(if trainable { g } else { g.with_held_weights() })
    }

    fn load_unheld(weights: &Weights, config: SeanConfig, device: &Device) -> Result<Self, SeanError> {
        config.validate()?;
        let (l, s) = (config.labels, config.style_length);
        let blocks = config.blocks();
        let block = |i: usize| {
            let (name, fin, fout, style) = blocks[i];
            SpadeResnetBlock::load(&weights.pp(name), [fin, fout], [l, s, config.spade_hidden], style, device)
        };
        let g = SeanGenerator {
            zencoder: Zencoder::load(weights, s, config.encoder_ngf, device)?,
            fc: ConvSpec::new([l, 16 * config.ngf], 3)
                .with_padding(1)
                .load(&weights.pp("fc"), device)
                .map(|c| Conv3x3::from_conv(&c))?,
            head_0: block(0)?,
            g_middle_0: block(1)?,
            g_middle_1: block(2)?,
            up_0: block(3)?,
            up_1: block(4)?,
            up_2: block(5)?,
            up_3: block(6)?,
            conv_img: ConvSpec::new([config.ngf, 3], 3)
                .with_padding(1)
                .load(&weights.pp("conv_img"), device)
                .map(|c| Conv3x3::from_conv(&c))?,
            config,
            path: ForwardPath::Fast,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        };
        weights.finish()?;
        Ok(g)
    }

    /// This generator, frozen, its trunk's convolutions holding their Winograd transform
    /// where their plane takes Winograd, and the widest ones elsewhere (>= 512 x 512 x 9
    /// weights: the blocks at the smallest sizes) their weights laid out for their backward.
    /// The weights must not change after.
    pub fn with_held_weights(self) -> Self {
        let g = self;
        let min = 512 * 512 * 9;
        let (sh, sw) = g.config.start_size();
        let plane = |scale: usize| [sh << scale, sw << scale];
        let g = SeanGenerator {
            head_0: g.head_0.with_held_weights(min, plane(0)),
            g_middle_0: g.g_middle_0.with_held_weights(min, plane(1)),
            g_middle_1: g.g_middle_1.with_held_weights(min, plane(1)),
            up_0: g.up_0.with_held_weights(min, plane(2)),
            up_1: g.up_1.with_held_weights(min, plane(3)),
            up_2: g.up_2.with_held_weights(min, plane(4)),
            up_3: g.up_3.with_held_weights(min, plane(5)),
            ..g
        };
        g.no_grad()
    }

    /// Builds the generator from a file written by `weights-convert sean`, its
    /// configuration read from the metadata.
    pub fn from_weights(weights: &Weights, device: &Device) -> Result<Self, SeanError> {
        Self::load(weights, Self::config_of(weights)?, device)
    }

    /// [`Self::from_weights`] taking the weights by value (see [`Self::load_owned`]).
    pub fn from_weights_owned(weights: Weights, device: &Device) -> Result<Self, SeanError> {
        let config = Self::config_of(&weights)?;
        Self::load_owned(weights, config, device)
    }

    /// The configuration recorded in a `weights-convert sean` file's metadata.
    fn config_of(weights: &Weights) -> Result<SeanConfig, SeanError> {
        weights.kind(&[KIND], &format!("a SEAN generator (kind `{KIND}`)"))?;
        Ok(SeanConfig {
            labels: weights.meta("labels")?,
            ngf: weights.meta("ngf")?,
            style_length: weights.meta("style_length")?,
            width: weights.meta("width")?,
            aspect_ratio: weights.meta("aspect_ratio")?,
            // Files written before the width was recorded hold the published width.
            spade_hidden: if weights.metadata().contains_key("spade_hidden") {
                weights.meta("spade_hidden")?
            } else {
                crate::config::SPADE_HIDDEN
            },
            encoder_ngf: if weights.metadata().contains_key("encoder_ngf") {
                weights.meta("encoder_ngf")?
            } else {
                crate::config::ENCODER_NGF
            },
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SeanConfig {
        &self.config
    }

    /// This generator running `path`.
    pub fn with_path(mut self, path: ForwardPath) -> Self {
        self.path = path;
        self
    }

    /// The forward it runs.
    pub fn path(&self) -> ForwardPath {
        self.path
    }

    /// Builds the mask of label maps `[B, H, W]` at the model's size; on the fast path it
    /// also computes, once, everything the generator needs of the mask alone.
    pub fn mask(&self, labels: burn::tensor::Tensor<3, burn::tensor::Int>) -> Result<SemanticMask, SeanError> {
        let mut m = SemanticMask::new(labels, self.config())?;
        if self.path == ForwardPath::Fast {
            m.cache = Some((self.id, Arc::new(self.mask_cache(&m))));
        }
        Ok(m)
    }

    fn blocks_with_scale(&self) -> [(&SpadeResnetBlock, usize); 7] {
        [
            (&self.head_0, 0),
            (&self.g_middle_0, 1),
            (&self.g_middle_1, 1),
            (&self.up_0, 2),
            (&self.up_1, 3),
            (&self.up_2, 4),
            (&self.up_3, 5),
        ]
    }

    fn mask_cache(&self, mask: &SemanticMask) -> Vec<Vec<AceCache>> {
        self.blocks_with_scale()
            .iter()
            .map(|(b, k)| b.aces().iter().map(|a| a.cache(mask.at_scale(*k))).collect())
            .collect()
    }

    fn check_image(&self, image: &Tensor<4>, mask: &SemanticMask) -> Result<(), SeanError> {
        let [b, c, h, w] = image.dims();
        let (mh, mw) = self.config().image_size();
        if c != 3 || (h, w) != (mh, mw) || b != mask.batch() {
            return Err(SeanError::Input(format!(
                "image batch has shape [{b}, {c}, {h}, {w}], expected [{}, 3, {mh}, {mw}]",
                mask.batch()
            )));
        }
        Ok(())
    }

    /// Style codes of images in [-1, 1] with their mask.
    ///
    /// # Shapes
    /// - `image`: `[B, 3, H, W]` at the generator's size ([`SeanConfig::image_size`])
    /// - output: `[B, L, S]`
    pub fn encode(&self, image: Tensor<4>, mask: &SemanticMask) -> Result<Tensor<3>, SeanError> {
        self.check_image(&image, mask)?;
        let features = self.zencoder.features(image);
        let [_, _, h, w] = features.dims();
        Ok(Zencoder::pool(features, mask.at_size([h, w], self.config().labels)))
    }

    /// Checks codes `[B, L, S]` against the model and the mask.
    pub fn check_codes(&self, codes: &Tensor<3>, mask: &SemanticMask) -> Result<(), SeanError> {
        let c = self.config();
        let want = [mask.batch(), c.labels, c.style_length];
        if codes.dims() != want {
            return Err(SeanError::Input(format!("style codes have shape {:?}, expected {want:?}", codes.dims())));
        }
        Ok(())
    }

    /// Images in [-1, 1] from masks and style codes.
    ///
    /// # Shapes
    /// - `codes`: `[B, L, S]` (`B` the mask's batch)
    /// - output: `[B, 3, H, W]`
    pub fn generate(&self, mask: &SemanticMask, codes: Tensor<3>, noise: NoiseMode) -> Result<Tensor<4>, SeanError> {
        self.check_codes(&codes, mask)?;
        Ok(self.generate_unchecked(mask, codes, noise))
    }

    /// [`Self::generate`] without the shape check (for loops that checked once).
    pub fn generate_unchecked(&self, mask: &SemanticMask, z: Tensor<3>, noise: NoiseMode) -> Tensor<4> {
        match self.path {
            ForwardPath::Plain => self.generate_plain(mask, z, noise),
            ForwardPath::Fast => {
                let cache = match &mask.cache {
                    Some((id, c)) if *id == self.id => c.clone(),
                    _ => Arc::new(self.mask_cache(mask)),
                };
                let mut noise = NoiseSource::new(noise);
                let mut x = self.fc.forward(mask.at_scale(0));
                for (i, (block, k)) in self.blocks_with_scale().into_iter().enumerate() {
                    if i == 1 || i >= 3 {
                        x = upsample2x(x);
                    }
                    // up_3 (scale 5) has no style branch: the neighbourhoods it gets are unused.
                    x = block.forward_fast(x, mask.neighbourhoods(k.min(4)), z.clone(), &mut noise, &cache[i]);
                }
                tanh(self.conv_img.forward(leaky_relu(x, 0.2)))
            }
        }
    }

    fn generate_plain(&self, mask: &SemanticMask, z: Tensor<3>, noise: NoiseMode) -> Tensor<4> {
        let mut noise = NoiseSource::new(noise);
        let x = self.fc.forward(mask.at_scale(0));
        let x = self.head_0.forward(x, mask.at_scale(0), z.clone(), &mut noise);
        let x = self.g_middle_0.forward(upsample2x(x), mask.at_scale(1), z.clone(), &mut noise);
        let x = self.g_middle_1.forward(x, mask.at_scale(1), z.clone(), &mut noise);
        let x = self.up_0.forward(upsample2x(x), mask.at_scale(2), z.clone(), &mut noise);
        let x = self.up_1.forward(upsample2x(x), mask.at_scale(3), z.clone(), &mut noise);
        let x = self.up_2.forward(upsample2x(x), mask.at_scale(4), z.clone(), &mut noise);
        let x = self.up_3.forward(upsample2x(x), mask.at_scale(5), z, &mut noise);
        tanh(self.conv_img.forward(leaky_relu(x, 0.2)))
    }
}

impl SeanGenerator {
    /// A generator of `config` with random weights (see [`Weights::random`]): for
    /// benchmarks and examples without a checkpoint.
    pub fn random(config: SeanConfig, seed: u64, device: &Device) -> Result<Self, SeanError> {
        config.validate()?;
        let mut meta = config.to_metadata();
        meta.insert("kind".into(), KIND.into());
        let w = Weights::random(&config.expected_tensors(), &meta, seed);
        Self::load_owned(w, config, device)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Int, TensorData};

    use super::*;

    fn tiny() -> SeanConfig {
        SeanConfig { labels: 3, ngf: 2, style_length: 4, width: 32, aspect_ratio: 1.0, spade_hidden: 4, encoder_ngf: 2 }
    }

    /// A random tiny generator: codes and images have the documented shapes, are finite,
    /// images lie in [-1, 1] (tanh), and the fast path equals the plain one.
    #[test]
    fn random_generator_shapes_range_and_paths() {
        let device = Device::flex();
        let g = SeanGenerator::random(tiny(), 1, &device).unwrap();
        let (h, w) = g.config().image_size();
        let labels: Vec<i64> = (0..2 * h * w).map(|i| ((i % w) * 3 / w) as i64).collect();
        let mask = g.mask(Tensor::<3, Int>::from_data(TensorData::new(labels, [2, h, w]), &device)).unwrap();
        let images = Tensor::<4>::random([2, 3, h, w], burn::tensor::Distribution::Uniform(-1.0, 1.0), &device);
        let codes = g.encode(images, &mask).unwrap();
        assert_eq!(codes.dims(), [2, 3, 4]);
        let fast = g.generate(&mask, codes.clone(), NoiseMode::Off).unwrap();
        assert_eq!(fast.dims(), [2, 3, h, w]);
        let v = steex_nn::host(fast);
        assert!(v.iter().all(|x| x.is_finite() && (-1.0..=1.0).contains(x)));
        let plain = g.with_path(ForwardPath::Plain).generate(&mask, codes, NoiseMode::Off).unwrap();
        let p = steex_nn::host(plain);
        let err = v.iter().zip(&p).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(err < 1e-4, "fast and plain differ by {err}");
    }

    #[test]
    fn config_defaults_are_the_published_widths() {
        assert_eq!(SeanConfig::new(19, 128), SeanConfig::celeba());
        let g = tiny().init(&Device::flex()).unwrap();
        assert_eq!(g.config(), &tiny());
    }

    #[test]
    fn bad_sizes_are_refused_with_a_typed_error() {
        let mut c = tiny();
        c.width = 33;
        assert!(matches!(c.validate(), Err(SeanError::Config(_))));
        assert!(SeanGenerator::random(c, 0, &Device::flex()).is_err());
    }
}
