//! A convolution under spectral norm, as `torch.nn.utils.spectral_norm(nn.Conv2d(..))` is in
//! `train()`: the checkpoint holds `weight_orig` and the buffers `weight_u`, `weight_v`;
//! every forward runs one power iteration on `W = weight_orig.reshape(out, -1)` outside the
//! graph (`v = normalize(W^T u)`, `u = normalize(W v)`, eps 1e-12), keeps the new `u`, `v`,
//! and convolves with `weight_orig / sigma`, `sigma = u . (W v)` (gradients through `W`
//! only, `u` and `v` constants).

use burn::module::{Module, Param, ParamId};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor};
use steex_nn::{Scope, WeightsError};

/// torch's `normalize` epsilon in spectral norm.
const EPS: f64 = 1e-12;

/// `x / max(||x||, 1e-12)` (`torch.nn.functional.normalize(x, dim=0, eps=1e-12)`).
pub fn normalize(x: Tensor<1>) -> Tensor<1> {
    let norm = x.clone().powi_scalar(2).sum().sqrt().clamp_min(EPS);
    x / norm
}

/// One power iteration from `u`: `(u', v')` with `v' = normalize(W^T u)`,
/// `u' = normalize(W v')`, computed on `w` detached.
///
/// # Shapes
/// - `w`: `[out, n]`, `u`: `[out]`
/// - output: `[out]`, `[n]`
pub fn power_iteration(w: Tensor<2>, u: Tensor<1>) -> (Tensor<1>, Tensor<1>) {
    let [out, n] = w.dims();
    let w = w.detach();
    let v = normalize(w.clone().transpose().matmul(u.detach().reshape([out, 1])).reshape([n]));
    let u = normalize(w.matmul(v.clone().reshape([n, 1])).reshape([out]));
    (u, v)
}

/// `sigma = u . (W v)`, `[1]`, differentiable in `w` (`u`, `v` are constants).
pub fn sigma(w: Tensor<2>, u: Tensor<1>, v: Tensor<1>) -> Tensor<1> {
    let [out, n] = w.dims();
    u.detach().reshape([1, out]).matmul(w.matmul(v.detach().reshape([n, 1]))).reshape([1])
}

/// `spectral_norm(nn.Conv2d(cin, cout, k, stride, padding, bias))` with its state (see the
/// module docs).
#[derive(Module, Debug)]
pub struct SpectralNormConv2d {
    /// `weight_orig` `[out, in, k, k]`.
    pub weight_orig: Param<Tensor<4>>,
    /// The buffer `weight_u` `[out]` (updated by every train-mode forward).
    pub weight_u: Param<Tensor<1>>,
    /// The buffer `weight_v` `[in * k * k]` (updated by every train-mode forward).
    pub weight_v: Param<Tensor<1>>,
    /// `bias` `[out]`, absent when a norm follows (the published code deletes it).
    pub bias: Option<Param<Tensor<1>>>,
    /// Stride on both axes.
    #[module(skip)]
    pub stride: usize,
    /// Zero padding on every side.
    #[module(skip)]
    pub padding: usize,
    /// The layer's scope in its checkpoint (`discriminator_0.model1.0.0`), naming its
    /// buffers in [`SpectralNormConv2d::buffers`].
    #[module(skip)]
    pub name: String,
}

impl SpectralNormConv2d {
    /// Loads `<scope>.weight_orig` `[cout, cin, k, k]`, `<scope>.weight_u` `[cout]`,
    /// `<scope>.weight_v` `[cin * k * k]` and, with `bias`, `<scope>.bias`.
    pub fn load(
        w: &Scope<'_>,
        [cin, cout]: [usize; 2],
        [kernel, stride, padding]: [usize; 3],
        bias: bool,
        device: &Device,
    ) -> Result<Self, WeightsError> {
        fn p<const D: usize>(t: Tensor<D>) -> Param<Tensor<D>> {
            Param::initialized(ParamId::new(), t)
        }
        Ok(SpectralNormConv2d {
            weight_orig: p(w.tensor("weight_orig", [cout, cin, kernel, kernel], device)?),
            weight_u: p(w.tensor("weight_u", [cout], device)?),
            weight_v: p(w.tensor("weight_v", [cin * kernel * kernel], device)?),
            bias: if bias { Some(p(w.tensor("bias", [cout], device)?)) } else { None },
            stride,
            padding,
            name: w.prefix().to_string(),
        })
    }

    /// `weight_orig` as the matrix `[out, in * k * k]`.
    fn matrix(&self) -> Tensor<2> {
        let [o, i, kh, kw] = self.weight_orig.dims();
        self.weight_orig.val().reshape([o, i * kh * kw])
    }

    /// The train-mode weight: one power iteration (stored into `weight_u`, `weight_v`),
    /// then `weight_orig / sigma`.
    pub fn train_weight(&mut self) -> Tensor<4> {
        let (u, v) = power_iteration(self.matrix(), self.weight_u.val());
        self.weight_u = Param::initialized(ParamId::new(), u.clone());
        self.weight_v = Param::initialized(ParamId::new(), v.clone());
        self.weight_orig.val() / sigma(self.matrix(), u, v).reshape([1, 1, 1, 1])
    }

    /// The eval-mode weight (`module.eval()`): `weight_orig / sigma` with the stored `u`,
    /// `v`, no iteration.
    pub fn eval_weight(&self) -> Tensor<4> {
        self.weight_orig.val() / sigma(self.matrix(), self.weight_u.val(), self.weight_v.val()).reshape([1, 1, 1, 1])
    }

    /// The convolution with `weight`.
    fn conv(&self, x: Tensor<4>, weight: Tensor<4>) -> Tensor<4> {
        let (s, p) = (self.stride, self.padding);
        conv2d(x, weight, self.bias.as_ref().map(|b| b.val()), ConvOptions::new([s, s], [p, p], [1, 1], 1))
    }

    /// The train-mode forward: one power iteration, then the convolution.
    ///
    /// # Shapes
    /// - input: `[B, in, H, W]`
    /// - output: `[B, out, (H + 2p - k) / s + 1, (W + 2p - k) / s + 1]`
    pub fn forward(&mut self, x: Tensor<4>) -> Tensor<4> {
        let weight = self.train_weight();
        self.conv(x, weight)
    }

    /// The eval-mode forward (stored `u`, `v`; nothing updated).
    ///
    /// # Shapes
    /// - input: `[B, in, H, W]`
    /// - output: as [`SpectralNormConv2d::forward`]
    pub fn forward_eval(&self, x: Tensor<4>) -> Tensor<4> {
        self.conv(x, self.eval_weight())
    }

    /// The buffers by checkpoint name: `(<name>.weight_u, u)`, `(<name>.weight_v, v)`.
    pub fn buffers(&self) -> [(String, Tensor<1>); 2] {
        [
            (format!("{}.weight_u", self.name), self.weight_u.val()),
            (format!("{}.weight_v", self.name), self.weight_v.val()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use burn::tensor::TensorData;
    use steex_nn::Weights;

    use super::*;

    fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        steex_nn::host(t)
    }

    /// Power iteration converges to the top singular value of a matrix whose singular
    /// values are known (diag(3, 2, 1) in a rotated basis), and the vectors stay unit.
    #[test]
    fn power_iteration_finds_the_largest_singular_value() {
        let device = Device::flex();
        // W = R diag(3, 2, 1) with R a rotation about z by 0.3 rad.
        let (c, s) = (0.3f32.cos(), 0.3f32.sin());
        let w = Tensor::<2>::from_data(
            TensorData::new(vec![3.0 * c, -2.0 * s, 0.0, 3.0 * s, 2.0 * c, 0.0, 0.0, 0.0, 1.0], [3, 3]),
            &device,
        );
        let (mut u, mut v) = power_iteration(w.clone(), Tensor::<1>::from_floats([0.2, 0.5, 0.9], &device));
        for _ in 0..60 {
            (u, v) = power_iteration(w.clone(), u);
        }
        let s = host(sigma(w, u.clone(), v.clone()))[0];
        assert!((s - 3.0).abs() < 1e-4, "sigma {s}");
        for x in [u, v] {
            let n: f32 = host(x).iter().map(|a| a * a).sum();
            assert!((n - 1.0).abs() < 1e-5);
        }
        // A zero vector stays finite (eps 1e-12).
        assert!(host(normalize(Tensor::<1>::zeros([4], &device))).iter().all(|x| *x == 0.0));
    }

    /// A random layer: shapes, finiteness, `u`/`v` updated by the train forward and not by
    /// the eval forward, and the train weight's top singular value near 1 after iterations.
    #[test]
    fn train_forward_updates_the_buffers_and_normalises_the_weight() {
        let device = Device::flex();
        let shapes: BTreeMap<String, Vec<usize>> = [
            ("c.weight_orig".to_string(), vec![6, 5, 4, 4]),
            ("c.weight_u".to_string(), vec![6]),
            ("c.weight_v".to_string(), vec![80]),
        ]
        .into();
        let w = Weights::random(&shapes, &BTreeMap::new(), 3);
        let mut conv = SpectralNormConv2d::load(&w.pp("c"), [5, 6], [4, 2, 2], false, &device).unwrap();
        w.finish().unwrap();
        let x = Tensor::<4>::ones([2, 5, 9, 11], &device);
        let u0 = host(conv.weight_u.val());
        let y = conv.forward_eval(x.clone());
        assert_eq!(y.dims(), [2, 6, 5, 6]);
        assert_eq!(host(conv.weight_u.val()), u0);
        let y = conv.forward(x);
        assert_eq!(y.dims(), [2, 6, 5, 6]);
        assert!(host(y).iter().all(|v| v.is_finite()));
        assert_ne!(host(conv.weight_u.val()), u0);
        for _ in 0..100 {
            conv.train_weight();
        }
        let [o, i, kh, kw] = conv.weight_orig.dims();
        let wn = conv.train_weight().reshape([o, i * kh * kw]);
        let mut u = conv.weight_u.val();
        let mut v = conv.weight_v.val();
        for _ in 0..100 {
            (u, v) = power_iteration(wn.clone(), u);
        }
        let s = host(sigma(wn, u, v))[0];
        assert!((s - 1.0).abs() < 1e-3, "top singular value of the normalised weight {s}");
        let names: Vec<String> = conv.buffers().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["c.weight_u", "c.weight_v"]);
    }
}
