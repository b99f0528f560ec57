//! The published discriminator (valeoai/STEEX `models/networks/discriminator.py`):
//! `MultiscaleDiscriminator` of `num_D` `NLayerDiscriminator`s, each a PatchGAN returning its
//! intermediate features (`no_ganFeat_loss` false), the next one seeing the input through
//! `avg_pool2d(3, stride 2, padding 1, count_include_pad=False)`.
//!
//! One `NLayerDiscriminator` (kernel 4, padding `ceil(3 / 2)` = 2, LeakyReLU 0.2):
//! - `model0`: conv `input_nc -> ndf`, stride 2, bias; LeakyReLU;
//! - `model1` .. `model{n-1}`: spectral-normed conv `nf -> min(2 nf, 512)`, stride 2, no bias
//!   (`norm_D spectralinstance`: the bias is deleted), `InstanceNorm2d(affine=False)`,
//!   LeakyReLU. STEEX's copy uses stride 2 for all of them (SPADE's original uses stride 1 for
//!   the last one; the weights are the same shapes either way);
//! - `model{n}`: conv `nf -> 1`, stride 1, bias.
//!
//! Checkpoint names are the published state-dict keys: `discriminator_<i>.model0.0.weight`,
//! `discriminator_<i>.model<k>.0.0.weight_orig` / `weight_u` / `weight_v`,
//! `discriminator_<i>.model<n>.0.bias`; [`MultiscaleDiscriminatorConfig::shapes`] lists them.

use std::collections::BTreeMap;

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::leaky_relu;
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::AvgPoolOptions;
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};
use steex_nn::{ConvSpec, HostTensors, Scope, Weights};

use crate::GanError;
use crate::spectral::SpectralNormConv2d;

/// Kernel size of every convolution.
const KW: usize = 4;
/// `int(np.ceil((kw - 1.0) / 2))`.
const PADW: usize = 2;

/// Instance norm without affine parameters, eps 1e-5 (`nn.InstanceNorm2d(c, affine=False)`:
/// biased variance per image and channel).
///
/// # Shapes
/// - input: `[B, C, H, W]`
/// - output: `[B, C, H, W]`
pub fn instance_norm(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let flat = x.reshape([b, c, h * w]);
    let (var, mean) = flat.clone().var_mean_bias(2);
    ((flat - mean) / var.add_scalar(1e-5).sqrt()).reshape([b, c, h, w])
}

/// `F.avg_pool2d(x, kernel_size=3, stride=2, padding=[1, 1], count_include_pad=False)`:
/// the input of the next discriminator.
///
/// # Shapes
/// - input: `[B, C, H, W]`
/// - output: `[B, C, (H - 1) / 2 + 1, (W - 1) / 2 + 1]`
pub fn downsample(x: Tensor<4>) -> Tensor<4> {
    avg_pool2d(x, AvgPoolOptions::new([3, 3]).with_stride([2, 2]).with_padding([1, 1]).with_count_include_pad(false))
}

/// The discriminator's configuration, named as the published options.
#[derive(Config, Debug)]
pub struct MultiscaleDiscriminatorConfig {
    /// `label_nc`: semantic classes (19 for CelebAMask-HQ and BDD in STEEX).
    pub label_nc: usize,
    /// `output_nc`: image channels.
    #[config(default = 3)]
    pub output_nc: usize,
    /// `contain_dontcare_label`: one more semantic channel.
    #[config(default = false)]
    pub contain_dontcare_label: bool,
    /// `not no_instance`: an instance edge map channel (STEEX: none).
    #[config(default = false)]
    pub instance: bool,
    /// `ndf`: width of the first layer.
    #[config(default = 64)]
    pub ndf: usize,
    /// `n_layers_D`: 3, the default of `NLayerDiscriminator.modify_commandline_options` in
    /// both ZPdesu/SEAN and valeoai/STEEX (whose middle layers all have stride 2).
    #[config(default = 3)]
    pub n_layers_d: usize,
    /// `num_D`: discriminators (scales).
    #[config(default = 2)]
    pub num_d: usize,
    /// `init_variance`: the gain of the published Xavier-normal init ([`Self::init_values`]).
    #[config(default = 0.02)]
    pub init_variance: f64,
}

impl MultiscaleDiscriminatorConfig {
    /// `compute_D_input_nc`: labels (+ don't-care) + image (+ instance edges).
    pub fn input_nc(&self) -> usize {
        self.label_nc + self.output_nc + usize::from(self.contain_dontcare_label) + usize::from(self.instance)
    }

    /// `(in, out)` channels of layer `k` (`0..=n_layers_d`) of one discriminator.
    fn channels(&self, k: usize) -> [usize; 2] {
        let width = |k: usize| (0..k).fold(self.ndf, |nf, _| (nf * 2).min(512));
        match k {
            0 => [self.input_nc(), self.ndf],
            k if k == self.n_layers_d => [width(k - 1), 1],
            k => [width(k - 1), width(k)],
        }
    }

    /// Checks the configuration describes a network.
    pub fn validate(&self) -> Result<(), GanError> {
        if self.num_d == 0 || self.n_layers_d == 0 || self.ndf == 0 || self.input_nc() == 0 {
            return Err(GanError::Config(format!(
                "num_D {}, n_layers_D {}, ndf {} and input channels {} must all be positive",
                self.num_d,
                self.n_layers_d,
                self.ndf,
                self.input_nc()
            )));
        }
        Ok(())
    }

    /// Every tensor of the state dict, by its published name, with its shape.
    pub fn shapes(&self) -> BTreeMap<String, Vec<usize>> {
        let mut t = BTreeMap::new();
        for i in 0..self.num_d {
            for k in 0..=self.n_layers_d {
                let [cin, cout] = self.channels(k);
                let p = format!("discriminator_{i}.model{k}");
                if k == 0 || k == self.n_layers_d {
                    ConvSpec::new([cin, cout], KW).shapes(&mut t, &format!("{p}.0"));
                } else {
                    t.insert(format!("{p}.0.0.weight_orig"), vec![cout, cin, KW, KW]);
                    t.insert(format!("{p}.0.0.weight_u"), vec![cout]);
                    t.insert(format!("{p}.0.0.weight_v"), vec![cin * KW * KW]);
                }
            }
        }
        t
    }

    /// Fresh values as the published training initialises them (`init_weights('xavier',
    /// init_variance)`): conv weights Xavier-normal with gain `init_variance`, biases 0;
    /// spectral norm's `u`, `v` as `spectral_norm` draws them (`normalize(randn)`).
    /// Deterministic for a seed.
    pub fn init_values(&self, seed: u64) -> HostTensors {
        let mut rng = StdRng::seed_from_u64(seed);
        let std_normal = Normal::new(0.0f64, 1.0).expect("a valid normal");
        let mut randn = |n: usize| -> Vec<f64> { (0..n).map(|_| std_normal.sample(&mut rng)).collect() };
        let mut out = HostTensors::new();
        for (name, shape) in self.shapes() {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = if name.ends_with(".bias") {
                vec![0.0; n]
            } else if name.ends_with(".weight_u") || name.ends_with(".weight_v") {
                let x = randn(n);
                let norm = x.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
                x.iter().map(|a| (a / norm) as f32).collect()
            } else {
                // xavier_normal_: std = gain * sqrt(2 / (fan_in + fan_out)).
                let rf: usize = shape[2..].iter().product();
                let std = self.init_variance * (2.0 / ((shape[1] + shape[0]) * rf) as f64).sqrt();
                randn(n).iter().map(|a| (a * std) as f32).collect()
            };
            out.insert(name, (shape, values));
        }
        out
    }

    /// A freshly initialised discriminator ([`Self::init_values`], seed 0) on `device`.
    pub fn init(&self, device: &Device) -> Result<MultiscaleDiscriminator, GanError> {
        let tensors = self
            .init_values(0)
            .into_iter()
            .map(|(k, (shape, v))| {
                let n = v.len();
                (k, (shape, Tensor::<1>::from_data(TensorData::new(v, [n]), device)))
            })
            .collect();
        let w = Weights::from_tensors(tensors, &BTreeMap::new())?;
        let d = self.load(&w.root(), device)?;
        w.finish()?;
        Ok(d)
    }

    /// Loads the discriminator's tensors under `w` (names as [`Self::shapes`]); the caller
    /// checks nothing else was in the file ([`Weights::finish`]).
    pub fn load(&self, w: &Scope<'_>, device: &Device) -> Result<MultiscaleDiscriminator, GanError> {
        self.validate()?;
        let one = |d: &Scope<'_>| -> Result<NLayerDiscriminator, GanError> {
            let plain = |k: usize, stride: usize| {
                ConvSpec::new(self.channels(k), KW)
                    .with_stride(stride)
                    .with_padding(PADW)
                    .load(&d.pp(format!("model{k}")).pp(0), device)
            };
            let hidden = (1..self.n_layers_d)
                .map(|k| {
                    let s = d.pp(format!("model{k}")).pp(0).pp(0);
                    SpectralNormConv2d::load(&s, self.channels(k), [KW, 2, PADW], false, device)
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(NLayerDiscriminator { model0: plain(0, 2)?, hidden, last: plain(self.n_layers_d, 1)? })
        };
        let discriminators =
            (0..self.num_d).map(|i| one(&w.pp(format!("discriminator_{i}")))).collect::<Result<Vec<_>, _>>()?;
        Ok(MultiscaleDiscriminator { discriminators })
    }
}

/// One PatchGAN discriminator (`discriminator_<i>`).
#[derive(Module, Debug)]
pub struct NLayerDiscriminator {
    /// `model0.0`: conv `input_nc -> ndf`, stride 2, then LeakyReLU 0.2.
    pub model0: Conv2d,
    /// `model1.0.0` .. `model{n-1}.0.0`: spectral-normed convs, stride 2, each followed by
    /// instance norm and LeakyReLU 0.2.
    pub hidden: Vec<SpectralNormConv2d>,
    /// `model{n}.0`: conv `nf -> 1`, stride 1.
    pub last: Conv2d,
}

impl NLayerDiscriminator {
    /// The train-mode forward (one power iteration per spectral norm): every layer group's
    /// output, the prediction last.
    ///
    /// # Shapes
    /// - input: `[B, input_nc, H, W]`
    /// - output: `n_layers_D + 1` maps; group `k < n` is `[B, nf_k, H_k, W_k]` with
    ///   `H_k = H_{k-1} / 2 + 1` (`H_{-1} = H`), the prediction `[B, 1, H_{n-1} + 1, W_{n-1} + 1]`.
    pub fn forward(&mut self, x: Tensor<4>) -> Vec<Tensor<4>> {
        let mut out = Vec::with_capacity(self.hidden.len() + 2);
        let mut h = leaky_relu(self.model0.forward(x), 0.2);
        out.push(h.clone());
        for conv in self.hidden.iter_mut() {
            h = leaky_relu(instance_norm(conv.forward(h)), 0.2);
            out.push(h.clone());
        }
        out.push(self.last.forward(h));
        out
    }

    /// The buffers of its spectral norms by checkpoint name.
    pub fn buffers(&self) -> Vec<(String, Tensor<1>)> {
        self.hidden.iter().flat_map(|c| c.buffers()).collect()
    }
}

/// `num_D` discriminators at successively halved scales.
#[derive(Module, Debug)]
pub struct MultiscaleDiscriminator {
    /// `discriminator_0`, `discriminator_1`, ...
    pub discriminators: Vec<NLayerDiscriminator>,
}

impl MultiscaleDiscriminator {
    /// The train-mode forward: for each discriminator, all its layer groups' outputs (the
    /// prediction last), discriminator `i` on the input downsampled `i` times.
    ///
    /// # Shapes
    /// - input: `[B, input_nc, H, W]` (labels one-hot, then the image, as `discriminate`
    ///   concatenates them)
    /// - output: `num_D` lists of `n_layers_D + 1` maps (see [`NLayerDiscriminator::forward`])
    pub fn forward(&mut self, x: Tensor<4>) -> Vec<Vec<Tensor<4>>> {
        let mut x = x;
        let n = self.discriminators.len();
        let mut out = Vec::with_capacity(n);
        for (i, d) in self.discriminators.iter_mut().enumerate() {
            out.push(d.forward(x.clone()));
            if i + 1 < n {
                x = downsample(x);
            }
        }
        out
    }

    /// The buffers of every spectral norm by checkpoint name (to store after a forward).
    pub fn buffers(&self) -> Vec<(String, Tensor<1>)> {
        self.discriminators.iter().flat_map(|d| d.buffers()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        steex_nn::host(t)
    }

    /// `count_include_pad=False`: a constant image stays constant at the borders (with
    /// padding counted it would drop to 4/9 in the corners and 6/9 on the edges).
    #[test]
    fn downsample_excludes_the_padding_from_the_average() {
        let device = Device::flex();
        let y = downsample(Tensor::<4>::ones([1, 2, 7, 10], &device));
        assert_eq!(y.dims(), [1, 2, 4, 5]);
        assert!(host(y).iter().all(|v| (v - 1.0).abs() < 1e-6));
        // And a ramp's corner averages only the 4 pixels inside: (0 + 1 + 10 + 11) / 4.
        let ramp: Vec<f32> = (0..70).map(|v| v as f32).collect();
        let y = downsample(Tensor::<4>::from_data(TensorData::new(ramp, [1, 1, 7, 10]), &device));
        assert!((host(y)[0] - 5.5).abs() < 1e-5);
    }

    /// Published names and shapes; a random discriminator's outputs have the documented
    /// shapes, are finite, and the forward moves every `u`, `v`.
    #[test]
    fn random_discriminator_shapes_names_and_buffers() {
        let device = Device::flex();
        let cfg = MultiscaleDiscriminatorConfig::new(4).with_ndf(4).with_n_layers_d(4);
        assert_eq!(cfg.input_nc(), 7);
        let shapes = cfg.shapes();
        assert_eq!(shapes.len(), 2 * (2 + 3 * 3 + 2));
        assert_eq!(shapes["discriminator_1.model0.0.weight"], vec![4, 7, 4, 4]);
        assert_eq!(shapes["discriminator_0.model3.0.0.weight_orig"], vec![32, 16, 4, 4]);
        assert_eq!(shapes["discriminator_0.model3.0.0.weight_v"], vec![256]);
        assert_eq!(shapes["discriminator_0.model4.0.weight"], vec![1, 32, 4, 4]);
        let values = cfg.init_values(5);
        let (_, u) = &values["discriminator_0.model1.0.0.weight_u"];
        assert!((u.iter().map(|a| a * a).sum::<f32>() - 1.0).abs() < 1e-5);
        let mut d = cfg.init(&device).unwrap();
        let before: Vec<Vec<f32>> = d.buffers().into_iter().map(|(_, t)| host(t)).collect();
        let out = d.forward(Tensor::<4>::random([2, 7, 32, 48], burn::tensor::Distribution::Default, &device));
        let dims: Vec<Vec<[usize; 4]>> = out.iter().map(|o| o.iter().map(|t| t.dims()).collect()).collect();
        assert_eq!(dims[0], vec![[2, 4, 17, 25], [2, 8, 9, 13], [2, 16, 5, 7], [2, 32, 3, 4], [2, 1, 4, 5]]);
        assert_eq!(dims[1], vec![[2, 4, 9, 13], [2, 8, 5, 7], [2, 16, 3, 4], [2, 32, 2, 3], [2, 1, 3, 4]]);
        assert!(out.into_iter().flatten().all(|t| host(t).iter().all(|v| v.is_finite())));
        let after: Vec<(String, Tensor<1>)> = d.buffers();
        assert_eq!(after[0].0, "discriminator_0.model1.0.0.weight_u");
        for (b, (name, a)) in before.iter().zip(after) {
            assert_ne!(b, &host(a), "{name} not updated");
        }
        // Channel widths are capped at 512.
        let wide = MultiscaleDiscriminatorConfig::new(19).with_ndf(128).with_n_layers_d(4).shapes();
        assert_eq!(wide["discriminator_0.model3.0.0.weight_orig"], vec![512, 512, 4, 4]);
        assert!(MultiscaleDiscriminatorConfig::new(4).with_num_d(0).validate().is_err());
    }
}
