//! The perceptual loss of the published training (`loss.py` `VGGLoss`, `architecture.py`
//! `VGG19`): torchvision's `vgg19().features` (configuration "E": 3x3 convolutions with
//! padding 1, each followed by ReLU, 2x2 max pools), sliced after relu1_1, relu2_1, relu3_1,
//! relu4_1 and relu5_1 (indices 1, 6, 11, 20, 29); the loss is
//! `sum_k w_k * L1(vgg_k(x), vgg_k(y).detach())` with `w = 1/32, 1/16, 1/8, 1/4, 1`, and
//! `compute_generator_loss` multiplies it by `lambda_vgg`. The images go in as they are, in
//! [-1, 1] (the published `VGG19` does not normalise them with ImageNet statistics).
//!
//! The network's tensors are named as torchvision names them: `features.<i>.weight`,
//! `features.<i>.bias` for every convolution `i` of the sequence (including 30, 32 and 34,
//! after relu5_1, which the loss never runs), so `features.*` of a torchvision checkpoint
//! load as they are.

use std::collections::BTreeMap;

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Tensor};
use steex_nn::{ConvSpec, Scope, WeightsError};

/// torchvision's `cfgs["E"]`: output widths, 0 for a max pool.
const CFG_E: [usize; 21] =
    [64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512, 512, 0];

/// The `features` indices after which the loss takes its five maps (relu1_1 .. relu5_1).
pub const SLICE_ENDS: [usize; 5] = [1, 6, 11, 20, 29];

/// The weights of the five maps in the loss.
pub const VGG_WEIGHTS: [f64; 5] = [1.0 / 32.0, 1.0 / 16.0, 1.0 / 8.0, 1.0 / 4.0, 1.0];

/// A VGG19 `features` network; `width_divisor` 1 is torchvision's, larger ones divide every
/// width (reduced test networks with the same layer sequence).
#[derive(Config, Debug)]
pub struct Vgg19Config {
    /// Every width of configuration "E" is divided by this.
    #[config(default = 1)]
    pub width_divisor: usize,
}

/// One element of the `features` sequence.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Layer {
    /// A 3x3 convolution `[in, out]` (index `i`), its ReLU at `i + 1`.
    Conv(usize, usize),
    /// A 2x2 max pool.
    Pool,
}

impl Vgg19Config {
    /// The sequence with each element's `features` index.
    fn layers(&self) -> Vec<(usize, Layer)> {
        let d = self.width_divisor.max(1);
        let (mut idx, mut cin, mut out) = (0, 3, Vec::new());
        for c in CFG_E {
            if c == 0 {
                out.push((idx, Layer::Pool));
                idx += 1;
            } else {
                out.push((idx, Layer::Conv(cin, c / d)));
                cin = c / d;
                idx += 2;
            }
        }
        out
    }

    /// Every tensor by its torchvision name (`features.<i>.weight`, `.bias`), with its shape.
    pub fn shapes(&self) -> BTreeMap<String, Vec<usize>> {
        let mut t = BTreeMap::new();
        for (i, l) in self.layers() {
            if let Layer::Conv(cin, cout) = l {
                ConvSpec::new([cin, cout], 3).with_padding(1).shapes(&mut t, &format!("features.{i}"));
            }
        }
        t
    }

    /// Loads `features.<i>.*` under `w` (the caller checks nothing else was in the file).
    pub fn load(&self, w: &Scope<'_>, device: &Device) -> Result<Vgg19, WeightsError> {
        let mut convs = Vec::new();
        let mut indices = Vec::new();
        for (i, l) in self.layers() {
            if let Layer::Conv(cin, cout) = l {
                convs.push(ConvSpec::new([cin, cout], 3).with_padding(1).load(&w.pp("features").pp(i), device)?);
                indices.push(i);
            }
        }
        Ok(Vgg19 {
            convs,
            indices,
            pools: self.layers().into_iter().filter(|(_, l)| *l == Layer::Pool).map(|(i, _)| i).collect(),
        })
    }
}

/// torchvision's VGG19 `features` (frozen in the loss: load its weights on a device without
/// gradients, or detached).
#[derive(Module, Debug)]
pub struct Vgg19 {
    /// The convolutions, in order.
    pub convs: Vec<Conv2d>,
    /// Each convolution's `features` index.
    #[module(skip)]
    pub indices: Vec<usize>,
    /// The max pools' `features` indices.
    #[module(skip)]
    pub pools: Vec<usize>,
}

impl Vgg19 {
    /// The five maps relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 (`VGG19.forward`).
    ///
    /// # Shapes
    /// - input: `[B, 3, H, W]`, in [-1, 1]
    /// - output: `[B, 64, H, W]`, `[B, 128, H/2, W/2]`, `[B, 256, H/4, W/4]`,
    ///   `[B, 512, H/8, W/8]`, `[B, 512, H/16, W/16]` (widths divided by the divisor;
    ///   sizes floored at each pool)
    pub fn forward(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        let mut out = Vec::with_capacity(SLICE_ENDS.len());
        let mut h = x;
        let mut convs = self.convs.iter().zip(&self.indices).peekable();
        for idx in 0..=SLICE_ENDS[4] {
            if self.pools.contains(&idx) {
                h = max_pool2d(h, MaxPoolOptions::new([2, 2]));
            } else if let Some((conv, _)) = convs.next_if(|(_, i)| **i == idx) {
                h = relu(conv.forward(h));
            }
            if SLICE_ENDS.contains(&idx) {
                out.push(h.clone());
            }
        }
        out
    }
}

/// `VGGLoss(x, y)` (not yet multiplied by `lambda_vgg`): `sum_k w_k * mean|vgg_k(x) -
/// vgg_k(y).detach()|`. `[1]`.
pub fn vgg_loss(vgg: &Vgg19, x: Tensor<4>, y: Tensor<4>) -> Tensor<1> {
    let fx = vgg.forward(x);
    let fy = vgg.forward(y.detach());
    fx.into_iter()
        .zip(fy)
        .zip(VGG_WEIGHTS)
        .map(|((a, b), w)| (a - b.detach()).abs().mean().mul_scalar(w))
        .reduce(|a, b| a + b)
        .expect("five maps")
}

#[cfg(test)]
mod tests {
    use steex_nn::Weights;

    use super::*;

    /// torchvision's key layout, the five maps' shapes on a random reduced network, and a
    /// loss that is zero for equal images and positive otherwise.
    #[test]
    fn random_vgg_has_torchvision_names_and_five_maps() {
        let device = Device::flex();
        let full = Vgg19Config::new().shapes();
        assert_eq!(full.len(), 32);
        assert_eq!(full["features.0.weight"], vec![64, 3, 3, 3]);
        assert_eq!(full["features.28.weight"], vec![512, 512, 3, 3]);
        assert_eq!(full["features.34.bias"], vec![512]);
        let cfg = Vgg19Config::new().with_width_divisor(16);
        let w = Weights::random(&cfg.shapes(), &BTreeMap::new(), 1);
        let vgg = cfg.load(&w.root(), &device).unwrap();
        w.finish().unwrap();
        let x = Tensor::<4>::random([2, 3, 32, 48], burn::tensor::Distribution::Uniform(-1.0, 1.0), &device);
        let maps = vgg.forward(x.clone());
        let dims: Vec<[usize; 4]> = maps.iter().map(|m| m.dims()).collect();
        assert_eq!(dims, vec![[2, 4, 32, 48], [2, 8, 16, 24], [2, 16, 8, 12], [2, 32, 4, 6], [2, 32, 2, 3]]);
        assert!(maps.into_iter().all(|m| steex_nn::host(m).iter().all(|v| v.is_finite() && *v >= 0.0)));
        assert_eq!(steex_nn::host(vgg_loss(&vgg, x.clone(), x.clone()))[0], 0.0);
        let y = Tensor::<4>::random([2, 3, 32, 48], burn::tensor::Distribution::Uniform(-1.0, 1.0), &device);
        assert!(steex_nn::host(vgg_loss(&vgg, x, y))[0] > 0.0);
    }
}
