//! The spectral-normalised residual block with ACE (`SPADEResnetBlock` in the published
//! code). Spectral norm is resolved at conversion, so `conv_0/1/s` are plain convolutions.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::leaky_relu;
use burn::tensor::{Device, Tensor};
use steex_nn::{Conv3x3, ConvSpec, Scope, WeightsError};

use crate::ace::{Ace, AceCache};
use crate::neighbourhood::Neighbourhoods;
use crate::noise::NoiseSource;

/// One residual block (`head_0`, `G_middle_0`, ..., `up_3`).
#[derive(Module, Debug)]
pub struct SpadeResnetBlock {
    /// conv3x3 fin -> fmid.
    pub conv_0: Conv3x3,
    /// conv3x3 fmid -> fout.
    pub conv_1: Conv3x3,
    /// conv1x1 fin -> fout, no bias: the learned shortcut, present iff fin != fout.
    pub conv_s: Option<Conv2d>,
    /// ACE before conv_0.
    pub ace_0: Ace,
    /// ACE before conv_1.
    pub ace_1: Ace,
    /// ACE of the shortcut.
    pub ace_s: Option<Ace>,
}

impl SpadeResnetBlock {
    /// Loads the block under `w` (`w.pp("head_0")`); `sizes` are labels, style length and
    /// SPADE width.
    pub fn load(
        w: &Scope<'_>,
        [fin, fout]: [usize; 2],
        sizes: [usize; 3],
        style: bool,
        device: &Device,
    ) -> Result<Self, WeightsError> {
        let fmid = fin.min(fout);
        let learned = fin != fout;
        let conv3 = |[i, o]: [usize; 2], n: &str| {
            ConvSpec::new([i, o], 3).with_padding(1).load(&w.pp(n), device).map(|c| Conv3x3::from_conv(&c))
        };
        let shortcut = ConvSpec::new([fin, fout], 1).with_bias(false);
        Ok(SpadeResnetBlock {
            conv_0: conv3([fin, fmid], "conv_0")?,
            conv_1: conv3([fmid, fout], "conv_1")?,
            conv_s: if learned { Some(shortcut.load(&w.pp("conv_s"), device)?) } else { None },
            ace_0: Ace::load(&w.pp("ace_0"), fin, sizes, style, device)?,
            ace_1: Ace::load(&w.pp("ace_1"), fmid, sizes, style, device)?,
            ace_s: if learned { Some(Ace::load(&w.pp("ace_s"), fin, sizes, style, device)?) } else { None },
        })
    }

    /// `x` `[B, fin, H, W]` -> `[B, fout, H, W]`. Noise is drawn in the published order:
    /// `ace_s`, `ace_0`, `ace_1`.
    pub(crate) fn forward(&self, x: Tensor<4>, onehot: Tensor<4>, z: Tensor<3>, noise: &mut NoiseSource) -> Tensor<4> {
        let [b, _, h, w] = x.dims();
        let device = x.device();
        let xs = match (&self.ace_s, &self.conv_s) {
            (Some(ace), Some(conv)) => {
                let n = noise.draw([b, h, w], &device);
                conv.forward(ace.forward(x.clone(), onehot.clone(), z.clone(), n))
            }
            _ => x.clone(),
        };
        let n = noise.draw([b, h, w], &device);
        let dx = self.conv_0.forward(leaky_relu(self.ace_0.forward(x, onehot.clone(), z.clone(), n), 0.2));
        let n = noise.draw([b, h, w], &device);
        let dx = self.conv_1.forward(leaky_relu(self.ace_1.forward(dx, onehot, z, n), 0.2));
        xs + dx
    }

    /// This block's 3x3 convolutions holding weights for their backward, for a frozen
    /// generator: where the block's `h x w` plane takes Winograd, every convolution holds
    /// its Winograd transform ([`Conv3x3::with_winograd_weights`]: no transform per call,
    /// 16/9 of the weights more); elsewhere those of at least `min_weights` weights (the
    /// widest, bound by reading their weights) hold their input gradient's weights
    /// ([`Conv3x3::with_input_grad_weights`]).
    pub fn with_held_weights(mut self, min_weights: usize, [h, w]: [usize; 2]) -> Self {
        let big = |c: &Conv3x3| c.channels_in() * c.channels_out() * 9 >= min_weights;
        let hold = |c: Conv3x3| {
            if steex_nn::conv3x3::winograd_plane_fits(h, w) {
                c.with_winograd_weights()
            } else if big(&c) {
                c.with_input_grad_weights()
            } else {
                c
            }
        };
        self.conv_0 = hold(self.conv_0);
        self.conv_1 = hold(self.conv_1);
        self
    }

    /// The block's ACE layers in noise-draw order (`ace_s`, `ace_0`, `ace_1`).
    pub fn aces(&self) -> Vec<&Ace> {
        self.ace_s.iter().chain([&self.ace_0, &self.ace_1]).collect()
    }

    /// [`Self::forward`] on the fast path, with one [`AceCache`] per layer of [`Self::aces`].
    pub(crate) fn forward_fast(
        &self,
        x: Tensor<4>,
        nb: &Neighbourhoods,
        z: Tensor<3>,
        noise: &mut NoiseSource,
        caches: &[AceCache],
    ) -> Tensor<4> {
        let [b, _, h, w] = x.dims();
        let device = x.device();
        let mut caches = caches.iter();
        let xs = match (&self.ace_s, &self.conv_s) {
            (Some(ace), Some(conv)) => {
                let n = noise.draw([b, h, w], &device);
                conv.forward(ace.forward_fast(x.clone(), nb, z.clone(), n, caches.next().expect("cache"), false))
            }
            _ => x.clone(),
        };
        let n = noise.draw([b, h, w], &device);
        let dx = self.ace_0.forward_fast(x, nb, z.clone(), n, caches.next().expect("cache"), true);
        let dx = self.conv_0.forward(dx);
        let n = noise.draw([b, h, w], &device);
        let dx = self.ace_1.forward_fast(dx, nb, z, n, caches.next().expect("cache"), true);
        xs + self.conv_1.forward(dx)
    }
}
