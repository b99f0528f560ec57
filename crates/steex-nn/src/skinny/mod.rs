//! A large matrix times a few vectors, `W V^T` (`W` `[M, K]` with `M` in the tens of
//! thousands, `V` `[N, K]` with `N` a few dozen), as a backend operation with its own
//! backward: the SEAN style convolutions' per-label responses, which read ~390 MB of frozen
//! weights per step at full size and are bound by that read.
//!
//! burn's matmul packs the whole of `W` on every call (and materialises its transpose for
//! the gradient), reaching ~5 GB/s of weights on the CPU; the kernels here stream `W` once
//! per direction while the vectors stay in cache ([`kernel`]). Other backends run burn's
//! matmul.

mod kernel;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DType, Dispatch, Flex, Shape, TensorData, TensorMetadata, backend_extension};
use burn::tensor::Tensor;

/// `W V^T`: `w` `[M, K]`, `v` `[N, K]` -> `[M, N]`; the gradient flows to both (to `W`
/// through burn's matmul, which only trainable weights need).
///
/// # Shapes
/// - `w`: `[M, K]`
/// - `v`: `[N, K]`
/// - output: `[M, N]`
pub fn skinny_matmul(w: Tensor<2>, v: Tensor<2>) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as SkinnyBackend>::skinny_matmul(w.into_dispatch(), v.into_dispatch()))
}

/// The operation. Implemented for Flex by [`kernel`]; other backends use the defaults.
#[backend_extension(Flex, Autodiff, Cube: cfg(any(feature = "wgpu", feature = "cuda")))]
pub trait SkinnyBackend: Backend {
    /// `w` `[M, K]`, `v` `[N, K]` -> `W V^T` `[M, N]`.
    fn skinny_matmul(w: FloatTensor<Self>, v: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_matmul(w, Self::float_transpose(v))
    }

    /// The gradient to `v` of [`Self::skinny_matmul`]: `w` `[M, K]`, `grad` `[M, N]` ->
    /// `grad^T W` `[N, K]`.
    fn skinny_grad_v(w: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_matmul(Self::float_transpose(grad), w)
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl SkinnyBackend for burn::backend::Cube {}

/// `t` as a contiguous f32 tensor, or `None` for another dtype.
fn contiguous_f32(t: &FlexTensor) -> Option<FlexTensor> {
    if t.dtype() != DType::F32 {
        return None;
    }
    Some(if t.is_contiguous() && t.layout().start_offset() == 0 { t.clone() } else { t.to_contiguous() })
}

impl SkinnyBackend for Flex {
    fn skinny_matmul(w: FloatTensor<Self>, v: FloatTensor<Self>) -> FloatTensor<Self> {
        match (contiguous_f32(&w), contiguous_f32(&v)) {
            (Some(wc), Some(vc)) => {
                let [m, k] = wc.shape().dims();
                let n = vc.shape().dims::<2>()[0];
                let y = kernel::forward(wc.storage::<f32>(), vc.storage::<f32>(), k);
                FlexTensor::from_data(TensorData::new(y, Shape::new([m, n])))
            }
            _ => Self::float_matmul(w, Self::float_transpose(v)),
        }
    }

    fn skinny_grad_v(w: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        match (contiguous_f32(&w), contiguous_f32(&grad)) {
            (Some(wc), Some(gc)) => {
                let k = wc.shape().dims::<2>()[1];
                let n = gc.shape().dims::<2>()[1];
                let g = kernel::grad_v(wc.storage::<f32>(), gc.storage::<f32>(), k);
                FlexTensor::from_data(TensorData::new(g, Shape::new([n, k])))
            }
            _ => Self::float_matmul(Self::float_transpose(grad), w),
        }
    }
}

#[derive(Debug)]
struct SkinnyStep;

impl<B: Backend + SkinnyBackend> Backward<B, 2> for SkinnyStep {
    /// `w` and `v`.
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_w, node_v] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (w, v) = ops.state;
        if let Some(node) = node_w {
            grads.register::<B>(node.id, B::float_matmul(grad.clone(), v));
        }
        if let Some(node) = node_v {
            grads.register::<B>(node.id, B::skinny_grad_v(w, grad));
        }
    }
}

impl<B: Backend + SkinnyBackend, C: CheckpointStrategy> SkinnyBackend for Autodiff<B, C> {
    fn skinny_matmul(w: FloatTensor<Self>, v: FloatTensor<Self>) -> FloatTensor<Self> {
        let (w, gw) = w.into_parts();
        let (v, gv) = v.into_parts();
        match SkinnyStep.prepare::<C>([gw, gv]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = B::skinny_matmul(w.clone(), v.clone());
                prep.finish((w, v), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::skinny_matmul(w, v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution};

    use super::*;

    /// Forward and both gradients equal burn's matmul, on the CPU with and without
    /// autodiff.
    #[test]
    fn equals_burns_matmul_forward_and_backward() {
        let device = Device::flex().autodiff();
        let w = Tensor::<2>::random([150, 40], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let v = Tensor::<2>::random([7, 40], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let probe = Tensor::<2>::random([150, 7], Distribution::Normal(0.0, 1.0), &device);
        let a = w.clone().matmul(v.clone().transpose());
        let b = skinny_matmul(w.clone(), v.clone());
        let diff: f32 = (a.clone() - b.clone()).abs().max().into_scalar();
        assert!(diff < 1e-4, "forward differs by {diff}");
        let ga = (a * probe.clone()).sum().backward();
        let gb = (b * probe).sum().backward();
        for (what, x, y) in [("v", v.grad(&ga), v.grad(&gb)), ("w", w.grad(&ga), w.grad(&gb))] {
            let (x, y) = (x.expect("gradient"), y.expect("gradient"));
            let scale: f32 = x.clone().abs().max().into_scalar();
            let diff: f32 = (x - y).abs().max().into_scalar();
            assert!(scale > 1.0 && diff < 1e-4 * scale, "{what} gradient differs by {diff} (scale {scale})");
        }
        let plain = Device::flex();
        let w = Tensor::<2>::random([9, 3], Distribution::Normal(0.0, 1.0), &plain);
        let v = Tensor::<2>::random([2, 3], Distribution::Normal(0.0, 1.0), &plain);
        let diff: f32 = (w.clone().matmul(v.clone().transpose()) - skinny_matmul(w, v)).abs().max().into_scalar();
        assert!(diff < 1e-5, "without autodiff: {diff}");
    }
}
