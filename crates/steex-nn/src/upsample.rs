//! Nearest 2x upsampling (`nn.Upsample(scale_factor=2)`, each pixel repeated 2x2) as one
//! CPU pass each way: composed from tensor ops (a reshape, an expand, a reshape) the copy
//! into a contiguous layout walks a six-dimensional strided view one element at a time on
//! one thread (~20 ms per SEAN step at celeba, both ways). Other backends take the
//! composed ops.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, DispatchDevice, Flex, Shape, TensorData, TensorMetadata};
use burn::backend::{backend_extension, flex::FlexTensor};
use burn::tensor::Tensor;
use rayon::prelude::*;

use crate::affine_relu::contiguous_f32;

/// Nearest 2x upsampling: `y[b, c, 2i + a, 2j + e] = x[b, c, i, j]`.
///
/// # Shapes
/// - `x`: `[B, C, H, W]`
/// - output: `[B, C, 2H, 2W]`
pub fn upsample2x(x: Tensor<4>) -> Tensor<4> {
    if !matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_)) {
        let [b, c, h, w] = x.dims();
        return x.reshape([b, c, h, 1, w, 1]).expand([b, c, h, 2, w, 2]).reshape([b, c, 2 * h, 2 * w]);
    }
    Tensor::from_dispatch(<Dispatch as UpsampleBackend>::upsample2x(x.into_dispatch()))
}

/// The operation; [`upsample2x`] routes only Flex tensors (with or without autodiff) here.
#[backend_extension(Flex, Autodiff, Cube: cfg(any(feature = "wgpu", feature = "cuda")))]
pub trait UpsampleBackend: Backend {
    /// `x` `[B, C, H, W]` -> `[B, C, 2H, 2W]`.
    fn upsample2x(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let [b, c, h, w] = x.shape().dims();
        let x = Self::float_reshape(x, Shape::new([b, c, h, 1, w, 1]));
        let x = Self::float_expand(x, Shape::new([b, c, h, 2, w, 2]));
        Self::float_reshape(x, Shape::new([b, c, 2 * h, 2 * w]))
    }

    /// The gradient to `x`: each 2x2 block of `grad` `[B, C, 2H, 2W]` summed -> `[B, C, H, W]`.
    fn upsample2x_grad(grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let [b, c, h2, w2] = grad.shape().dims();
        let g = Self::float_reshape(grad, Shape::new([b, c, h2 / 2, 2, w2 / 2, 2]));
        let g = Self::float_sum_dim(Self::float_sum_dim(g, 5), 3);
        Self::float_reshape(g, Shape::new([b, c, h2 / 2, w2 / 2]))
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl UpsampleBackend for burn::backend::Cube {}

impl UpsampleBackend for Flex {
    fn upsample2x(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let x = contiguous_f32(x);
        let [b, c, h, w] = x.shape().dims();
        let xs = x.storage::<f32>();
        let mut out = vec![0f32; 4 * xs.len()];
        out.par_chunks_mut((4 * h * w).max(1)).enumerate().for_each(|(p, o)| {
            let src = &xs[p * h * w..(p + 1) * h * w];
            for (i, row) in src.chunks_exact(w.max(1)).enumerate() {
                let (top, bottom) = o[4 * i * w..4 * (i + 1) * w].split_at_mut(2 * w);
                for (pair, &v) in top.chunks_exact_mut(2).zip(row) {
                    pair[0] = v;
                    pair[1] = v;
                }
                bottom.copy_from_slice(top);
            }
        });
        FlexTensor::from_data(TensorData::new(out, Shape::new([b, c, 2 * h, 2 * w])))
    }

    fn upsample2x_grad(grad: FloatTensor<Self>) -> FloatTensor<Self> {
        crate::pool::sum_2x2(grad, 1.0)
    }
}

#[derive(Debug)]
struct UpsampleStep;

impl<B: Backend + UpsampleBackend> Backward<B, 1> for UpsampleStep {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::upsample2x_grad(grad));
        }
    }
}

impl<B: Backend + UpsampleBackend, C: CheckpointStrategy> UpsampleBackend for Autodiff<B, C> {
    fn upsample2x(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let (x, gx) = x.into_parts();
        UpsampleStep.prepare::<C>([gx]).compute_bound().stateless(B::upsample2x(x))
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution};

    use super::*;

    /// The CPU pass equals the composed ops forward and in the gradient (odd sizes, batch 2).
    #[test]
    fn equals_the_composed_ops() {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::random([2, 3, 5, 7], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let probe = Tensor::<4>::random([2, 3, 10, 14], Distribution::Normal(0.0, 1.0), &device);
        let a = x.clone().reshape([2, 3, 5, 1, 7, 1]).expand([2, 3, 5, 2, 7, 2]).reshape([2, 3, 10, 14]);
        let b = upsample2x(x.clone());
        assert_eq!(b.dims(), [2, 3, 10, 14]);
        let diff: f32 = (a.clone() - b.clone()).abs().max().into_scalar();
        assert_eq!(diff, 0.0, "forward differs by {diff}");
        let ga = x.grad(&(a * probe.clone()).sum().backward()).expect("gradient");
        let gb = x.grad(&(b * probe).sum().backward()).expect("gradient");
        let scale: f32 = ga.clone().abs().max().into_scalar();
        let diff: f32 = (ga - gb).abs().max().into_scalar();
        assert!(scale > 0.1 && diff < 1e-6 * scale.max(1.0), "gradient differs by {diff} (scale {scale})");
    }
}
