//! A stride-1, padding-1 3x3 convolution (`torch.nn.Conv2d(C, K, 3, padding=1)`) whose
//! weights are laid out once, tap-major, when the layer is built, and whose backward is a
//! convolution of the same kind (see [`Conv3x3Backend`]). On the CPU it runs a kernel of
//! 9 accumulated matrix products without an im2col matrix; on other backends, burn's own
//! convolution.

#[doc(hidden)]
pub mod flex;
mod op;
mod winograd;

pub use op::{Conv3x3Backend, Held};
pub use winograd::plane_fits as winograd_plane_fits;

/// Seconds spent in the CPU kernel so far: (forward, gradient to the input).
pub fn kernel_seconds() -> (f64, f64) {
    let get = |i: usize| flex::NANOS[i].load(std::sync::atomic::Ordering::Relaxed) as f64 * 1e-9;
    (get(0), get(1))
}

use burn::backend::Dispatch;
use burn::module::{Module, Param, ParamId};
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;

/// `torch.nn.Conv2d(C, K, 3, padding=1)` (stride 1, one group) with tap-major weights.
#[derive(Module, Debug)]
pub struct Conv3x3 {
    /// Weights `[9, K, C]`: `weight[3 i + j] = W[:, :, i, j]` of PyTorch's `[K, C, 3, 3]`.
    pub weight: Param<Tensor<3>>,
    /// Bias `[K]`.
    pub bias: Option<Param<Tensor<1>>>,
    /// The input gradient's weights `[9, C, K]` (`weight_t[t] = weight[8 - t]^T`), held by
    /// frozen layers whose backward is bound by reading their weights
    /// ([`Self::with_input_grad_weights`]); outside the graph.
    pub weight_t: Option<Param<Tensor<3>>>,
    /// The Winograd-transformed weights `[16, K, C]`, held by frozen layers that run on
    /// planes Winograd takes ([`Self::with_winograd_weights`]); outside the graph.
    pub weight_u: Option<Param<Tensor<3>>>,
}

impl Conv3x3 {
    /// The layer of PyTorch weights `[K, C, 3, 3]` and an optional bias `[K]`.
    pub fn new(weight: Tensor<4>, bias: Option<Tensor<1>>) -> Self {
        let [k, c, _, _] = weight.dims();
        let weight = weight.permute([2, 3, 0, 1]).reshape([9, k, c]);
        Conv3x3 {
            weight: Param::initialized(ParamId::new(), weight),
            bias: bias.map(|b| Param::initialized(ParamId::new(), b)),
            weight_t: None,
            weight_u: None,
        }
    }

    /// This layer holding its input gradient's weights laid out for the forward kernel
    /// (one more copy of the weights), for frozen layers: the gradient to the input then
    /// reads them as fast as the forward reads its own. The weights must not change after.
    pub fn with_input_grad_weights(mut self) -> Self {
        let w = self.weight.val();
        let device = w.device();
        let t = w.detach().flip([0]).swap_dims(1, 2);
        // Materialised contiguous (a strided view would be copied on every call).
        let t = Tensor::<3>::from_data(t.into_data(), &device);
        self.weight_t = Some(Param::initialized(ParamId::new(), t).set_require_grad(false));
        self
    }

    /// This layer holding its Winograd-transformed weights (16/9 of its weights more), for
    /// frozen layers that run on planes Winograd takes ([`winograd_plane_fits`]): both
    /// directions then skip the transform. The weights must not change after.
    pub fn with_winograd_weights(mut self) -> Self {
        let w = self.weight.val();
        let [_, k, c] = w.dims();
        let device = w.device();
        let u = winograd::transform_weights(&steex_io::host(w.detach()), k * c);
        let u = Tensor::<3>::from_data(burn::tensor::TensorData::new(u, [16, k, c]), &device);
        self.weight_u = Some(Param::initialized(ParamId::new(), u).set_require_grad(false));
        self.weight_t = None;
        self
    }

    /// The same layer as `conv` (which must be 3x3, stride 1, padding 1, one group).
    pub fn from_conv(conv: &Conv2d) -> Self {
        Self::new(conv.weight.val(), conv.bias.as_ref().map(|b| b.val()))
    }

    /// Output channels.
    pub fn channels_out(&self) -> usize {
        self.weight.dims()[1]
    }

    /// Input channels.
    pub fn channels_in(&self) -> usize {
        self.weight.dims()[2]
    }

    /// The weights in PyTorch's layout `[K, C, 3, 3]`.
    pub fn weight_kcij(&self) -> Tensor<4> {
        let [_, k, c] = self.weight.dims();
        self.weight.val().reshape([3, 3, k, c]).permute([2, 3, 0, 1])
    }

    /// Applies the convolution.
    ///
    /// # Shapes
    /// - input `[B, C, H, W]`
    /// - output `[B, K, H, W]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let k = self.channels_out();
        let bias = match &self.bias {
            Some(b) => b.val(),
            None => Tensor::zeros([k], &x.device()),
        };
        let out = match (&self.weight_t, &self.weight_u) {
            (_, Some(wu)) => <Dispatch as Conv3x3Backend>::conv3x3_u(
                x.into_dispatch(),
                self.weight.val().into_dispatch(),
                wu.val().into_dispatch(),
                bias.into_dispatch(),
            ),
            (Some(wt), None) => <Dispatch as Conv3x3Backend>::conv3x3_t(
                x.into_dispatch(),
                self.weight.val().into_dispatch(),
                wt.val().into_dispatch(),
                bias.into_dispatch(),
            ),
            (None, None) => <Dispatch as Conv3x3Backend>::conv3x3(
                x.into_dispatch(),
                self.weight.val().into_dispatch(),
                bias.into_dispatch(),
            ),
        };
        Tensor::from_dispatch(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::PaddingConfig2d;
    use burn::tensor::{Device, Distribution};

    #[test]
    fn equals_burns_conv2d_forward_and_backward() {
        // More outputs than inputs, and fewer (the weight gradient summed transposed).
        for (c, k) in [(5, 7), (9, 4)] {
            equals_burns_conv2d(c, k);
        }
    }

    fn equals_burns_conv2d(c: usize, k: usize) {
        let device = Device::flex().autodiff();
        let conv = Conv2d {
            weight: Param::initialized(
                ParamId::new(),
                Tensor::random([k, c, 3, 3], Distribution::Normal(0.0, 1.0), &device).require_grad(),
            ),
            bias: Some(Param::initialized(
                ParamId::new(),
                Tensor::random([k], Distribution::Normal(0.0, 1.0), &device),
            )),
            stride: [1, 1],
            kernel_size: [3, 3],
            dilation: [1, 1],
            groups: 1,
            padding: PaddingConfig2d::Explicit(1, 1, 1, 1),
        };
        let mut fast = Conv3x3::from_conv(&conv);
        fast.weight = Param::initialized(ParamId::new(), fast.weight.val().detach().require_grad());
        let x = Tensor::<4>::random([2, c, 6, 9], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let probe = Tensor::<4>::random([2, k, 6, 9], Distribution::Normal(0.0, 1.0), &device);
        let a = conv.forward(x.clone());
        let b = fast.forward(x.clone());
        let diff: f32 = (a.clone() - b.clone()).abs().max().into_scalar();
        assert!(diff < 1e-4, "forward differs by {diff}");
        let (grads_a, grads_b) = ((a * probe.clone()).sum().backward(), (b * probe.clone()).sum().backward());
        let (ga, gb) = (x.grad(&grads_a).unwrap(), x.grad(&grads_b).unwrap());
        let diff: f32 = (ga.clone() - gb).abs().max().into_scalar();
        assert!(diff < 1e-4, "input gradient differs by {diff}");
        // The weight gradient ([9, K, C] against burn's [K, C, 3, 3]).
        let wa = conv.weight.val().grad(&grads_a).unwrap();
        let wb = fast.weight.val().grad(&grads_b).unwrap().reshape([3, 3, k, c]).permute([2, 3, 0, 1]);
        let scale: f32 = wa.clone().abs().max().into_scalar();
        let diff: f32 = (wa - wb).abs().max().into_scalar();
        assert!(scale > 1.0 && diff < 1e-4 * scale, "weight gradient differs by {diff} (scale {scale})");
        let held = fast.with_input_grad_weights();
        let c = held.forward(x.clone());
        let gc = x.grad(&(c * probe).sum().backward()).unwrap();
        let diff: f32 = (ga - gc).abs().max().into_scalar();
        assert!(diff < 1e-4, "input gradient through the held weights differs by {diff}");
    }

    /// A layer holding its Winograd weights gives burn's convolution and input gradient on
    /// a plane Winograd takes (16 x 18), and falls back to the direct kernel on one it
    /// does not (6 x 9).
    #[test]
    fn held_winograd_weights_give_burns_conv2d() {
        let device = Device::flex().autodiff();
        let (c, k) = (6, 5);
        let w = Tensor::<4>::random([k, c, 3, 3], Distribution::Normal(0.0, 1.0), &device);
        let b = Tensor::<1>::random([k], Distribution::Normal(0.0, 1.0), &device);
        let conv = Conv2d {
            weight: Param::initialized(ParamId::new(), w),
            bias: Some(Param::initialized(ParamId::new(), b)),
            stride: [1, 1],
            kernel_size: [3, 3],
            dilation: [1, 1],
            groups: 1,
            padding: PaddingConfig2d::Explicit(1, 1, 1, 1),
        };
        let held = Conv3x3::from_conv(&conv).with_winograd_weights();
        for (h, wd) in [(16, 18), (6, 9)] {
            let x = Tensor::<4>::random([2, c, h, wd], Distribution::Normal(0.0, 1.0), &device).require_grad();
            let probe = Tensor::<4>::random([2, k, h, wd], Distribution::Normal(0.0, 1.0), &device);
            let a = conv.forward(x.clone());
            let b = held.forward(x.clone());
            let diff: f32 = (a.clone() - b.clone()).abs().max().into_scalar();
            assert!(diff < 1e-4, "{h}x{wd}: forward differs by {diff}");
            let ga = x.grad(&(a * probe.clone()).sum().backward()).unwrap();
            let gb = x.grad(&(b * probe).sum().backward()).unwrap();
            let scale: f32 = ga.clone().abs().max().into_scalar();
            let diff: f32 = (ga - gb).abs().max().into_scalar();
            assert!(scale > 1.0 && diff < 1e-4, "{h}x{wd}: input gradient differs by {diff} (scale {scale})");
        }
    }
}
