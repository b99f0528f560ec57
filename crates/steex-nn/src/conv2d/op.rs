//! The convolution as a backend operation whose backward takes [`super::flex`]'s products on
//! the CPU and burn's own convolution gradients elsewhere.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::{ConvOptions, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, backend_extension};

/// The operation. Implemented for Flex by [`super::flex`]; other backends use the defaults.
#[backend_extension(Flex, Autodiff, Cube: cfg(any(feature = "wgpu", feature = "cuda")))]
pub trait Conv2dBackend: Backend {
    /// `conv2d(x, weight, options)` without a bias: `x` `[B, C, H, W]`, `weight`
    /// `[K, C, kh, kw]` -> `[B, K, Ho, Wo]`.
    fn conv2d_fast(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self> {
        Self::conv2d(x, weight, None, options)
    }

    /// The gradient to the input (`x` gives its shape).
    fn conv2d_fast_input_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_x_backward(x, weight, grad, options)
    }

    /// The gradient to the weights.
    fn conv2d_fast_weight_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_weight_backward(x, weight, grad, options)
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl Conv2dBackend for burn::backend::Cube {}

impl Conv2dBackend for Flex {
    fn conv2d_fast(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self> {
        super::flex::forward(&x, &weight, &options).unwrap_or_else(|| Flex::conv2d(x, weight, None, options))
    }

    fn conv2d_fast_input_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        super::flex::input_grad(&x, &weight, &grad, &options)
            .unwrap_or_else(|| Flex::conv2d_x_backward(x, weight, grad, options))
    }

    fn conv2d_fast_weight_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let fast = if super::enabled() { super::flex::weight_grad(&x, &weight, &grad, &options) } else { None };
        fast.unwrap_or_else(|| Flex::conv2d_weight_backward(x, weight, grad, options))
    }
}

#[derive(Debug)]
struct Conv2dStep;

impl<B: Backend + Conv2dBackend> Backward<B, 2> for Conv2dStep {
    /// The input, the weights and the options.
    type State = (FloatTensor<B>, FloatTensor<B>, ConvOptions<2>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, weight, options) = ops.state;
        if let Some(node) = node_w {
            let g = B::conv2d_fast_weight_grad(x.clone(), weight.clone(), grad.clone(), options.clone());
            grads.register::<B>(node.id, g);
        }
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::conv2d_fast_input_grad(x, weight, grad, options));
        }
    }
}

impl<B: Backend + Conv2dBackend, C: CheckpointStrategy> Conv2dBackend for Autodiff<B, C> {
    fn conv2d_fast(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self> {
        let (x, gx) = x.into_parts();
        let (weight, gw) = weight.into_parts();
        match Conv2dStep.prepare::<C>([gx, gw]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = B::conv2d_fast(x.clone(), weight.clone(), options.clone());
                prep.finish((x, weight, options), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::conv2d_fast(x, weight, options)),
        }
    }
}
