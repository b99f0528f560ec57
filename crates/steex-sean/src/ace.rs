//! ACE normalisation (`ace_0`, `ace_1`, `ace_s` of a residual block): batch norm of the
//! noisy activation, modulated by a mask branch (`Spade`) blended with a per-label style
//! branch.
//!
//! The checkpoint's `fc_mu0` ... `fc_mu{L-1}` (one `Linear(S, S)` per label) are held
//! stacked: `fc_mu_weight[j] = fc_mu{j}.weight^T` (`[L, S, S]`) and
//! `fc_mu_bias[j] = fc_mu{j}.bias`, so all labels go through one batched matmul.

use burn::module::{Module, Param, ParamId};
use burn::nn::conv::Conv2d;
use burn::tensor::activation::{leaky_relu, relu, sigmoid};
use burn::tensor::module::conv2d as conv2d_op;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor};
use steex_nn::{BatchNorm2d, ConvSpec, Scope, WeightsError};

use crate::neighbourhood::Neighbourhoods;

/// The mask branch (`Spade.*`): `relu(mlp_shared(mask))` then `mlp_gamma`, `mlp_beta`.
#[derive(Module, Debug)]
pub struct Spade {
    /// `Spade.mlp_shared.0`: conv3x3 L -> 128.
    pub mlp_shared: Conv2d,
    /// `Spade.mlp_gamma`: conv3x3 128 -> C.
    pub mlp_gamma: Conv2d,
    /// `Spade.mlp_beta`: conv3x3 128 -> C.
    pub mlp_beta: Conv2d,
}

impl Spade {
    /// `(gamma_s, beta_s)` from a one-hot mask at the activation's size.
    ///
    /// # Shapes
    /// - `onehot`: `[B, L, H, W]`
    /// - output: two `[B, C, H, W]`
    pub fn forward(&self, onehot: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let a = relu(self.mlp_shared.forward(onehot));
        (self.mlp_gamma.forward(a.clone()), self.mlp_beta.forward(a))
    }
}

/// The per-label style branch (absent in `up_3`).
#[derive(Module, Debug)]
pub struct StyleBranch {
    /// `blending_gamma`, `[1]` (its sigmoid weights the style branch's gamma).
    pub blending_gamma: Param<Tensor<1>>,
    /// `blending_beta`, `[1]`.
    pub blending_beta: Param<Tensor<1>>,
    /// `fc_mu{j}.weight` transposed and stacked, `[L, S, S]`.
    pub fc_mu_weight: Param<Tensor<3>>,
    /// `fc_mu{j}.bias` stacked, `[L, S]`.
    pub fc_mu_bias: Param<Tensor<2>>,
    /// `conv_gamma.bias`, `[C]`.
    pub conv_gamma_bias: Param<Tensor<1>>,
    /// `conv_beta.bias`, `[C]`.
    pub conv_beta_bias: Param<Tensor<1>>,
    /// `conv_gamma.weight` and `conv_beta.weight` (conv3x3 S -> C each) stacked and laid out
    /// `[2C * 9, S]` (rows `(c, kh, kw)`), for the fast path's per-label projections. The
    /// only copy of those weights: [`Self::conv_gamma`] and [`Self::conv_beta`] rebuild the
    /// convolutions from it.
    pub offsets: Param<Tensor<2>>,
}

impl StyleBranch {
    /// `conv_gamma` (first) or `conv_beta` from [`Self::offsets`].
    fn conv(&self, second: bool) -> Conv2d {
        let [rows, s] = self.offsets.dims();
        let c = rows / 18;
        let w = self.offsets.val().slice([if second { 9 * c..18 * c } else { 0..9 * c }, 0..s]);
        let weight = w.reshape([c, 3, 3, s]).permute([0, 3, 1, 2]);
        let bias = if second { &self.conv_beta_bias } else { &self.conv_gamma_bias };
        ConvSpec::new([s, c], 3).with_padding(1).from_tensors(weight, Some(bias.val()))
    }

    /// `conv_gamma`: conv3x3 S -> C (rebuilt from [`Self::offsets`], for the plain path).
    pub fn conv_gamma(&self) -> Conv2d {
        self.conv(false)
    }

    /// `conv_beta`: conv3x3 S -> C (rebuilt from [`Self::offsets`], for the plain path).
    pub fn conv_beta(&self) -> Conv2d {
        self.conv(true)
    }

    /// Per-label style vectors `v_j = relu(fc_mu{j}(z_j))`, `[B, L, S] -> [B, L, S]`.
    pub fn mu(&self, z: Tensor<3>) -> Tensor<3> {
        let l = z.dims()[1];
        let s = z.dims()[2];
        let v = z.swap_dims(0, 1).matmul(self.fc_mu_weight.val()) + self.fc_mu_bias.val().reshape([l, 1, s]);
        relu(v).swap_dims(0, 1)
    }

    /// `conv_gamma(M)` and `conv_beta(M)` without their biases, computed without forming the
    /// S-channel map `M`: since `M = sum_j onehot_j v_j^T`, a 3x3 convolution of `M` equals a
    /// 3x3 convolution of the one-hot mask (L channels) whose kernel at each offset `k` is
    /// `W_k v_j` for label `j`. Returns `[B, 2C, H, W]` (gamma's C channels, then beta's).
    pub fn style_convs_folded(&self, v: Tensor<3>, onehot: Tensor<4>) -> Tensor<4> {
        let [b, l, h, w] = onehot.dims();
        let c2 = self.offsets.dims()[0] / 9;
        // q[b, (c, kh, kw), j] = sum_s W[c, s, kh, kw] v[b, j, s]
        let q = self.offsets.val().unsqueeze_dim::<3>(0).matmul(v.swap_dims(1, 2));
        let q = q.reshape([b, c2, 3, 3, l]).permute([0, 1, 4, 2, 3]).reshape([b * c2, l, 3, 3]);
        let y = conv2d_op(onehot.reshape([1, b * l, h, w]), q, None, ConvOptions::new([1, 1], [1, 1], [1, 1], b));
        y.reshape([b, c2, h, w])
    }

    /// The same as [`Self::style_convs_folded`], through the mask's distinct 3x3 label
    /// neighbourhoods ([`Neighbourhoods::convolve`]): exact, and a fraction of the work.
    pub fn style_convs_patterns(&self, v: Tensor<3>, nb: &Neighbourhoods) -> Tensor<4> {
        nb.convolve(self.projections(nb.present(v)))
    }

    /// Per-tap, per-label responses of the style convolutions to style vectors `v`
    /// `[B, N, S]` (every label's, or only those of the labels present,
    /// [`Neighbourhoods::present`]): `q[b, (c, kh, kw), j] = sum_s W[c, s, kh, kw] v[b, j, s]`,
    /// read as `[B, 2C, 9 N]` (gamma's C rows, then beta's).
    pub fn projections(&self, v: Tensor<3>) -> Tensor<3> {
        let [b, l, s] = v.dims();
        let [m, _] = self.offsets.dims();
        // One pass over the weights for the whole batch (`steex_nn::skinny`).
        let q = steex_nn::skinny::skinny_matmul(self.offsets.val(), v.reshape([b * l, s]));
        q.reshape([m, b, l]).swap_dims(0, 1).reshape([b, m / 9, 9 * l])
    }

    /// The style map `M[:, p] = v_{label(p)}` (`[B, S, H, W]`, zero where no label).
    pub fn style_map(v: Tensor<3>, onehot: Tensor<4>) -> Tensor<4> {
        let [b, l, h, w] = onehot.dims();
        let s = v.dims()[2];
        v.swap_dims(1, 2).matmul(onehot.reshape([b, l, h * w])).reshape([b, s, h, w])
    }
}

/// One ACE layer.
#[derive(Module, Debug)]
pub struct Ace {
    /// `Spade.*`.
    pub spade: Spade,
    /// `param_free_norm`: batch norm without affine, running statistics.
    pub param_free_norm: BatchNorm2d,
    /// `noise_var`, `[C]`.
    pub noise_var: Param<Tensor<1>>,
    /// The style branch (`None` in `up_3`).
    pub style: Option<StyleBranch>,
}

impl Ace {
    /// Loads the layer under `w` (`w.pp("ace_0")`) for `c` channels, `labels` labels, style
    /// length `s` and a SPADE branch `hidden` wide.
    pub fn load(
        w: &Scope<'_>,
        c: usize,
        [labels, s, hidden]: [usize; 3],
        with_style: bool,
        device: &Device,
    ) -> Result<Self, WeightsError> {
        let conv3 = |[i, o]: [usize; 2], at: &Scope<'_>| ConvSpec::new([i, o], 3).with_padding(1).load(at, device);
        let sp = w.pp("Spade");
        let spade = Spade {
            mlp_shared: conv3([labels, hidden], &sp.pp("mlp_shared.0"))?,
            mlp_gamma: conv3([hidden, c], &sp.pp("mlp_gamma"))?,
            mlp_beta: conv3([hidden, c], &sp.pp("mlp_beta"))?,
        };
        let style = if with_style {
            let mut weights = Vec::with_capacity(labels);
            let mut biases = Vec::with_capacity(labels);
            for j in 0..labels {
                let fc = w.pp(format!("fc_mu{j}"));
                let wj: Tensor<2> = fc.tensor("weight", [s, s], device)?;
                weights.push(wj.transpose().unsqueeze_dim::<3>(0));
                biases.push(fc.tensor::<1>("bias", [s], device)?.unsqueeze_dim::<2>(0));
            }
            let bias = |n: &str| -> Result<Param<Tensor<1>>, WeightsError> {
                Ok(Param::initialized(ParamId::new(), w.pp(n).tensor("bias", [c], device)?))
            };
            let (conv_gamma_bias, conv_beta_bias) = (bias("conv_gamma")?, bias("conv_beta")?);
            let raw = |n: &str| w.pp(n).tensor::<4>("weight", [c, s, 3, 3], device);
            let offsets = Tensor::cat(vec![raw("conv_gamma")?, raw("conv_beta")?], 0)
                .permute([0, 2, 3, 1])
                .reshape([2 * c * 9, s]);
            Some(StyleBranch {
                blending_gamma: Param::initialized(ParamId::new(), w.tensor("blending_gamma", [1], device)?),
                blending_beta: Param::initialized(ParamId::new(), w.tensor("blending_beta", [1], device)?),
                fc_mu_weight: Param::initialized(ParamId::new(), Tensor::cat(weights, 0)),
                fc_mu_bias: Param::initialized(ParamId::new(), Tensor::cat(biases, 0)),
                conv_gamma_bias,
                conv_beta_bias,
                offsets: Param::initialized(ParamId::new(), offsets),
            })
        } else {
            None
        };
        Ok(Ace {
            spade,
            param_free_norm: BatchNorm2d::load(&w.pp("param_free_norm"), c, false, device)?,
            noise_var: Param::initialized(ParamId::new(), w.tensor("noise_var", [c], device)?),
            style,
        })
    }

    /// The layer on activations `x`, with the one-hot mask at their size, the style codes
    /// and an optional N(0, 1) noise map.
    ///
    /// # Shapes
    /// - `x`: `[B, C, H, W]`; `onehot`: `[B, L, H, W]`; `z`: `[B, L, S]`; `noise`: `[B, 1, H, W]`
    /// - output: `[B, C, H, W]`
    pub fn forward(&self, x: Tensor<4>, onehot: Tensor<4>, z: Tensor<3>, noise: Option<Tensor<4>>) -> Tensor<4> {
        let c = x.dims()[1];
        let x = match noise {
            Some(n) => x + n * self.noise_var.val().reshape([1, c, 1, 1]),
            None => x,
        };
        let normalized = self.param_free_norm.forward(x);
        let (gamma_s, beta_s) = self.spade.forward(onehot.clone());
        let (gamma, beta) = match &self.style {
            None => (gamma_s, beta_s),
            Some(st) => {
                let m = StyleBranch::style_map(st.mu(z), onehot);
                let gamma_a = st.conv_gamma().forward(m.clone());
                let beta_a = st.conv_beta().forward(m);
                let ag = sigmoid(st.blending_gamma.val()).reshape([1, 1, 1, 1]);
                let ab = sigmoid(st.blending_beta.val()).reshape([1, 1, 1, 1]);
                (
                    gamma_a * ag.clone() + gamma_s * (ag.neg().add_scalar(1.0)),
                    beta_a * ab.clone() + beta_s * (ab.neg().add_scalar(1.0)),
                )
            }
        };
        normalized.clone() * gamma.add_scalar(1.0) + beta
    }
}

/// What the fast path keeps per ACE layer and mask: everything that depends on the mask
/// but not on the style codes (the SPADE branch, blended, with the style convolutions'
/// biases folded in).
#[derive(Debug, Clone)]
pub struct AceCache {
    /// `(1 - ag) * gamma_s + ag * bias(conv_gamma)` (`gamma_s` alone without style).
    pub gamma: Tensor<4>,
    /// `(1 - ab) * beta_s + ab * bias(conv_beta)` (`beta_s` alone without style).
    pub beta: Tensor<4>,
}

impl Ace {
    /// The mask-only part of this layer for `onehot` at its activation's size. It stays in
    /// the autodiff graph, so a trainable generator's SPADE weights get their gradients
    /// through it (for a loaded generator, whose weights need no gradient, it holds none).
    pub fn cache(&self, onehot: Tensor<4>) -> AceCache {
        let (gamma_s, beta_s) = self.spade.forward(onehot);
        let (gamma, beta) = match &self.style {
            None => (gamma_s, beta_s),
            Some(st) => {
                let c = gamma_s.dims()[1];
                let ag = sigmoid(st.blending_gamma.val()).reshape([1, 1, 1, 1]);
                let ab = sigmoid(st.blending_beta.val()).reshape([1, 1, 1, 1]);
                let bg = st.conv_gamma_bias.val().reshape([1, c, 1, 1]);
                let bb = st.conv_beta_bias.val().reshape([1, c, 1, 1]);
                (
                    gamma_s * ag.clone().neg().add_scalar(1.0) + bg * ag,
                    beta_s * ab.clone().neg().add_scalar(1.0) + bb * ab,
                )
            }
        };
        AceCache { gamma, beta }
    }

    /// The fast forward: the SPADE branch from `cache`, the style convolutions through the
    /// mask's label neighbourhoods ([`StyleBranch::style_convs_patterns`]), then a leaky
    /// ReLU (slope 0.2) when `leaky`. Equal to [`Ace::forward`] (and the ReLU) up to float
    /// rounding. On the CPU backend the modulation is one fused operation
    /// ([`crate::fused`]).
    ///
    /// # Shapes
    /// - `x`: `[B, C, H, W]`, `z`: `[B, L, S]`, `noise`: `[B, 1, H, W]`
    /// - output: `[B, C, H, W]`
    pub fn forward_fast(
        &self,
        x: Tensor<4>,
        nb: &Neighbourhoods,
        z: Tensor<3>,
        noise: Option<Tensor<4>>,
        cache: &AceCache,
        leaky: bool,
    ) -> Tensor<4> {
        if crate::fused::is_fused(&x.device()) {
            return self.forward_fused(x, nb, z, noise, cache, leaky);
        }
        let c = x.dims()[1];
        let x = match noise {
            Some(n) => x + n * self.noise_var.val().reshape([1, c, 1, 1]),
            None => x,
        };
        let normalized = self.param_free_norm.forward(x);
        let (gamma, beta) = match &self.style {
            None => (cache.gamma.clone(), cache.beta.clone()),
            Some(st) => {
                let y = st.style_convs_patterns(st.mu(z), nb);
                let [b, _, h, w] = y.dims();
                let ga = y.clone().slice([0..b, 0..c, 0..h, 0..w]);
                let ba = y.slice([0..b, c..2 * c, 0..h, 0..w]);
                let ag = sigmoid(st.blending_gamma.val()).reshape([1, 1, 1, 1]);
                let ab = sigmoid(st.blending_beta.val()).reshape([1, 1, 1, 1]);
                (ga * ag + cache.gamma.clone(), ba * ab + cache.beta.clone())
            }
        };
        let out = normalized * gamma.add_scalar(1.0) + beta;
        if leaky { leaky_relu(out, 0.2) } else { out }
    }

    fn forward_fused(
        &self,
        x: Tensor<4>,
        nb: &Neighbourhoods,
        z: Tensor<3>,
        noise: Option<Tensor<4>>,
        cache: &AceCache,
        leaky: bool,
    ) -> Tensor<4> {
        let c = x.dims()[1];
        let (scale, shift) = self.param_free_norm.scale_shift();
        let nv = self.noise_var.val();
        let flags = crate::fused::AceFlags { noise: noise.is_some(), style: self.style.is_some(), leaky };
        // Inputs a flag turns off are placeholders outside the graph.
        let noise = noise.unwrap_or_else(|| nv.clone().detach().reshape([1, c, 1, 1]));
        // Without noise `nv` takes no part, and gets no gradient (as in the composed path).
        let nv = if flags.noise { nv } else { nv.detach() };
        let (styles, index) = match &self.style {
            Some(st) => {
                let q = st.projections(nb.present(st.mu(z)));
                let ag = sigmoid(st.blending_gamma.val()).reshape([1, 1, 1]).expand([1, c, 1]);
                let ab = sigmoid(st.blending_beta.val()).reshape([1, 1, 1]).expand([1, c, 1]);
                (nb.per_pattern(q) * Tensor::cat(vec![ag, ab], 1), nb.batch_index.clone())
            }
            None => (nv.clone().detach().reshape([1, 1, c]), nb.batch_index.clone()),
        };
        crate::fused::ace_modulate(
            x,
            noise,
            nv,
            scale,
            shift,
            styles,
            index,
            cache.gamma.clone(),
            cache.beta.clone(),
            flags,
        )
    }
}
