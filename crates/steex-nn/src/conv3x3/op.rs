//! The 3x3 convolution as a backend operation with its own backward.
//!
//! burn's `conv2d` lays its weights out again on every call and takes the gradient to the
//! input through a transposed convolution; both dominate the explanation step on the CPU.
//! Here the weights are held tap-major (`[9, K, C]`, tap `3 i + j`) from load on, and the
//! gradient to the input is the same kind of convolution with the taps reversed and each
//! tap's matrix transposed (`grad_x = sum_t W_{8-t}^T shift_t(grad_y)`), so one kernel serves
//! both directions. Backends other than Flex run burn's own convolution on the weights in
//! burn's layout.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::{ConvOptions, ConvTransposeOptions, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, Shape, TensorMetadata, backend_extension};

/// Stride 1, padding 1, no dilation, one group.
fn options() -> ConvOptions<2> {
    ConvOptions::new([1, 1], [1, 1], [1, 1], 1)
}

/// `[9, K, C]` tap-major weights as burn's `[K, C, 3, 3]`.
pub fn to_burn_layout<B: Backend>(w9: FloatTensor<B>) -> FloatTensor<B> {
    let [_, k, c] = w9.shape().dims();
    let w = B::float_reshape(w9, Shape::new([3, 3, k, c]));
    B::float_permute(w, &[2, 3, 0, 1])
}

/// `[K, C, 3, 3]` weights as `[9, K, C]`.
pub fn from_burn_layout<B: Backend>(w: FloatTensor<B>) -> FloatTensor<B> {
    let [k, c, _, _] = w.shape().dims();
    let w = B::float_permute(w, &[2, 3, 0, 1]);
    B::float_reshape(w, Shape::new([9, k, c]))
}

/// The operation. Implemented for Flex by [`super::flex`]; other backends use the defaults.
#[backend_extension(Flex, Autodiff, Cube: cfg(any(feature = "wgpu", feature = "cuda")))]
pub trait Conv3x3Backend: Backend {
    /// `conv2d(x, w, bias, stride 1, padding 1)`: `x` `[B, C, H, W]`, `weight` `[9, K, C]`,
    /// `bias` `[K]` -> `[B, K, H, W]`.
    fn conv3x3(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::conv2d(x, to_burn_layout::<Self>(weight), Some(bias), options())
    }

    /// The gradient to the input of [`Self::conv3x3`]: `grad` `[B, K, H, W]`, `weight`
    /// `[9, K, C]` -> `[B, C, H, W]`.
    fn conv3x3_input_grad(grad: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        let opts = ConvTransposeOptions::new([1, 1], [1, 1], [0, 0], [1, 1], 1);
        Self::conv_transpose2d(grad, to_burn_layout::<Self>(weight), None, opts)
    }

    /// [`Self::conv3x3`] with the weights of its input gradient given too: `weight_t`
    /// `[9, C, K]`, `weight_t[t] = weight[8 - t]^T` (contiguous), so the backward is a
    /// forward-layout convolution (the weight-bound layers' backward then reads its weights
    /// as fast as the forward does).
    fn conv3x3_t(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        weight_t: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let _ = weight_t;
        Self::conv3x3(x, weight, bias)
    }

    /// The gradient to the input through `weight_t` (see [`Self::conv3x3_t`]): the
    /// convolution of `grad` with `weight_t`.
    fn conv3x3_input_grad_t(grad: FloatTensor<Self>, weight_t: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::conv2d(grad, to_burn_layout::<Self>(weight_t), None, options())
    }

    /// [`Self::conv3x3`] with the Winograd-transformed weights given too: `weight_u`
    /// `[16, K, C]` (see `winograd::transform_weights`), used by both directions where the
    /// CPU kernel takes Winograd; other backends ignore it.
    fn conv3x3_u(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        weight_u: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let _ = weight_u;
        Self::conv3x3(x, weight, bias)
    }

    /// The gradient to the weights of [`Self::conv3x3`]: `x` `[B, C, H, W]`, `weight`
    /// `[9, K, C]` (its shape), `grad` `[B, K, H, W]` -> `[9, K, C]`.
    fn conv3x3_weight_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let w = to_burn_layout::<Self>(weight);
        from_burn_layout::<Self>(Self::conv2d_weight_backward(x, w, grad, options()))
    }

    /// The gradient to the input of [`Self::conv3x3_u`].
    fn conv3x3_input_grad_u(
        grad: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        weight_u: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let _ = weight_u;
        Self::conv3x3_input_grad(grad, weight)
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl Conv3x3Backend for burn::backend::Cube {}

impl Conv3x3Backend for Flex {
    fn conv3x3(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        super::flex::forward(x, weight, bias)
    }

    fn conv3x3_input_grad(grad: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        super::flex::input_grad(grad, weight)
    }

    fn conv3x3_input_grad_t(grad: FloatTensor<Self>, weight_t: FloatTensor<Self>) -> FloatTensor<Self> {
        super::flex::input_grad_t(grad, weight_t)
    }

    fn conv3x3_weight_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let fast = if crate::conv2d::enabled() { super::flex::weight_grad(&x, &grad) } else { None };
        fast.unwrap_or_else(|| {
            let w = to_burn_layout::<Self>(weight);
            from_burn_layout::<Self>(Flex::conv2d_weight_backward(x, w, grad, options()))
        })
    }

    fn conv3x3_u(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        weight_u: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        super::flex::forward_u(x, weight, weight_u, bias)
    }

    fn conv3x3_input_grad_u(
        grad: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        weight_u: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        super::flex::input_grad_u(grad, weight, weight_u)
    }
}

/// Weights a frozen layer holds for its backward, besides its own.
#[derive(Debug, Clone)]
pub enum Held<T> {
    /// None: the backward reads the layer's weights.
    None,
    /// The input gradient's weights `[9, C, K]` ([`Conv3x3Backend::conv3x3_t`]).
    Transposed(T),
    /// The Winograd-transformed weights `[16, K, C]` ([`Conv3x3Backend::conv3x3_u`]).
    Winograd(T),
}

#[derive(Debug)]
struct Conv3x3Step;

impl<B: Backend + Conv3x3Backend> Backward<B, 3> for Conv3x3Step {
    /// The input, the weights and the weights held for the backward.
    type State = (FloatTensor<B>, FloatTensor<B>, Held<FloatTensor<B>>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, weight, held) = ops.state;
        if let Some(node) = node_b {
            let [_, k, _, _] = grad.shape().dims();
            let g = B::float_sum_dim(B::float_sum_dim(B::float_sum_dim(grad.clone(), 3), 2), 0);
            grads.register::<B>(node.id, B::float_reshape(g, Shape::new([k])));
        }
        if let Some(node) = node_w {
            grads.register::<B>(node.id, B::conv3x3_weight_grad(x, weight.clone(), grad.clone()));
        }
        if let Some(node) = node_x {
            let g = match held {
                Held::Transposed(wt) => B::conv3x3_input_grad_t(grad, wt),
                Held::Winograd(wu) => B::conv3x3_input_grad_u(grad, weight, wu),
                Held::None => B::conv3x3_input_grad(grad, weight),
            };
            grads.register::<B>(node.id, g);
        }
    }
}

/// The forward on the inner backend, recorded with its inputs (and the weights held for
/// the backward) for [`Conv3x3Step`].
fn record<B: Backend + Conv3x3Backend, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    weight: FloatTensor<Autodiff<B, C>>,
    held: Held<FloatTensor<B>>,
    bias: FloatTensor<Autodiff<B, C>>,
) -> FloatTensor<Autodiff<B, C>> {
    let (x, gx) = x.into_parts();
    let (weight, gw) = weight.into_parts();
    let (bias, gb) = bias.into_parts();
    let forward = |x, weight, bias| match &held {
        Held::Winograd(wu) => B::conv3x3_u(x, weight, wu.clone(), bias),
        _ => B::conv3x3(x, weight, bias),
    };
    match Conv3x3Step.prepare::<C>([gx, gw, gb]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let out = forward(x.clone(), weight.clone(), bias);
            prep.finish((x, weight, held), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(x, weight, bias)),
    }
}

impl<B: Backend + Conv3x3Backend, C: CheckpointStrategy> Conv3x3Backend for Autodiff<B, C> {
    fn conv3x3(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        record::<B, C>(x, weight, Held::None, bias)
    }

    fn conv3x3_t(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        weight_t: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        // `weight_t` is derived data outside the graph: the gradients go to `weight`.
        record::<B, C>(x, weight, Held::Transposed(weight_t.into_primitive()), bias)
    }

    fn conv3x3_u(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        weight_u: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        // `weight_u` is derived data outside the graph: the gradients go to `weight`.
        record::<B, C>(x, weight, Held::Winograd(weight_u.into_primitive()), bias)
    }

    fn conv3x3_input_grad(grad: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        // Only reached when a gradient of a gradient is asked for, which nothing here does.
        let opts = ConvTransposeOptions::new([1, 1], [1, 1], [0, 0], [1, 1], 1);
        Self::conv_transpose2d(grad, to_burn_layout::<Self>(weight), None, opts)
    }
}
