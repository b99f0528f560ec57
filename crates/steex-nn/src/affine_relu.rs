//! `relu(x * scale + shift)` per channel (an eval-mode batch norm and its ReLU) as one CPU
//! pass each way, for frozen models: composed from tensor ops it is three passes forward
//! and as many backward, each into a fresh tensor, for each of DenseNet121's 121 batch
//! norms. Other backends, and scales or shifts that need a gradient, take the composed ops.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, Backend, DType, Dispatch, DispatchDevice, Flex, Shape, TensorData, TensorMetadata, backend_extension,
};
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use rayon::prelude::*;

/// `relu(x * scale + shift)`, `scale` and `shift` per channel.
///
/// # Shapes
/// - `x`: `[B, C, H, W]`
/// - `scale`, `shift`: `[C]`
/// - output: `[B, C, H, W]`
pub fn affine_relu(x: Tensor<4>, scale: Tensor<1>, shift: Tensor<1>) -> Tensor<4> {
    let c = x.dims()[1];
    let on_cpu = matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_));
    if !on_cpu || scale.is_require_grad() || shift.is_require_grad() {
        return relu(x * scale.reshape([1, c, 1, 1]) + shift.reshape([1, c, 1, 1]));
    }
    Tensor::from_dispatch(<Dispatch as AffineReluBackend>::affine_relu(
        x.into_dispatch(),
        scale.into_dispatch(),
        shift.into_dispatch(),
    ))
}

/// The operation; [`affine_relu`] routes only Flex tensors (with or without autodiff) here.
#[backend_extension(Flex, Autodiff, Cube: cfg(any(feature = "wgpu", feature = "cuda")))]
pub trait AffineReluBackend: Backend {
    /// `x` `[B, C, H, W]`, `scale`, `shift` `[C]` -> `relu(x * scale + shift)`.
    fn affine_relu(x: FloatTensor<Self>, scale: FloatTensor<Self>, shift: FloatTensor<Self>) -> FloatTensor<Self> {
        let [c] = scale.shape().dims();
        let per_channel = |t| Self::float_reshape(t, Shape::new([1, c, 1, 1]));
        let y = Self::float_add(Self::float_mul(x, per_channel(scale)), per_channel(shift));
        Self::float_clamp_min(y, 0f32.into())
    }

    /// The gradient to `x` for output gradient `grad`, from the output `y`:
    /// `grad * scale * (y > 0)`.
    fn affine_relu_grad(grad: FloatTensor<Self>, y: FloatTensor<Self>, scale: FloatTensor<Self>) -> FloatTensor<Self> {
        let [c] = scale.shape().dims();
        // y >= 0, so sign(y) is the ReLU's mask.
        let g = Self::float_mul(grad, Self::float_reshape(scale, Shape::new([1, c, 1, 1])));
        Self::float_mul(g, Self::float_sign(y))
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl AffineReluBackend for burn::backend::Cube {}

/// `t` as a contiguous f32 tensor starting at its buffer's start (copied if it is not).
pub(crate) fn contiguous_f32(t: FlexTensor) -> FlexTensor {
    let t = if t.dtype() == DType::F32 { t } else { FlexTensor::from_data(t.into_data().convert::<f32>()) };
    if t.is_contiguous() && t.layout().start_offset() == 0 { t } else { t.to_contiguous() }
}

/// `f(plane, channel, out)` over the `[B, C, H, W]` planes of `shape`, in parallel.
fn per_plane(shape: &Shape, f: impl Fn(usize, usize, &mut [f32]) + Sync) -> FlexTensor {
    let [_, c, h, w] = shape.dims();
    let mut out = vec![0f32; shape.num_elements()];
    out.par_chunks_mut((h * w).max(1)).enumerate().for_each(|(p, o)| f(p, p % c, o));
    FlexTensor::from_data(TensorData::new(out, shape.clone()))
}

impl AffineReluBackend for Flex {
    fn affine_relu(x: FloatTensor<Self>, scale: FloatTensor<Self>, shift: FloatTensor<Self>) -> FloatTensor<Self> {
        let (x, scale, shift) = (contiguous_f32(x), contiguous_f32(scale), contiguous_f32(shift));
        let (xs, s, t) = (x.storage::<f32>(), scale.storage::<f32>(), shift.storage::<f32>());
        let plane = xs.len() / (x.shape().dims::<4>()[0] * s.len()).max(1);
        per_plane(&x.shape(), |p, ch, out| {
            for (o, &v) in out.iter_mut().zip(&xs[p * plane..(p + 1) * plane]) {
                *o = (v * s[ch] + t[ch]).max(0.0);
            }
        })
    }

    fn affine_relu_grad(grad: FloatTensor<Self>, y: FloatTensor<Self>, scale: FloatTensor<Self>) -> FloatTensor<Self> {
        let (grad, y, scale) = (contiguous_f32(grad), contiguous_f32(y), contiguous_f32(scale));
        let (gs, ys, s) = (grad.storage::<f32>(), y.storage::<f32>(), scale.storage::<f32>());
        let plane = gs.len() / (grad.shape().dims::<4>()[0] * s.len()).max(1);
        per_plane(&grad.shape(), |p, ch, out| {
            let (g, y) = (&gs[p * plane..(p + 1) * plane], &ys[p * plane..(p + 1) * plane]);
            for ((o, &g), &y) in out.iter_mut().zip(g).zip(y) {
                *o = if y > 0.0 { g * s[ch] } else { 0.0 };
            }
        })
    }
}

#[derive(Debug)]
struct AffineReluStep;

impl<B: Backend + AffineReluBackend> Backward<B, 1> for AffineReluStep {
    /// The output and the scale.
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (y, scale) = ops.state;
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::affine_relu_grad(grad, y, scale));
        }
    }
}

impl<B: Backend + AffineReluBackend, C: CheckpointStrategy> AffineReluBackend for Autodiff<B, C> {
    /// Gradients flow to `x` only: [`affine_relu`] routes tracked scales and shifts to the
    /// composed ops.
    fn affine_relu(x: FloatTensor<Self>, scale: FloatTensor<Self>, shift: FloatTensor<Self>) -> FloatTensor<Self> {
        let (x, gx) = x.into_parts();
        let scale = scale.into_primitive();
        let shift = shift.into_primitive();
        match AffineReluStep.prepare::<C>([gx]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let y = B::affine_relu(x, scale.clone(), shift);
                prep.finish((y.clone(), scale), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::affine_relu(x, scale, shift)),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution};

    use super::*;

    /// The fused pass equals the composed ops forward and in the gradient to `x`, with
    /// values on both sides of the ReLU.
    #[test]
    fn equals_the_composed_ops() {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::random([2, 3, 5, 4], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let scale = Tensor::<1>::from_floats([0.5, -2.0, 1.5], &device);
        let shift = Tensor::<1>::from_floats([0.1, 0.3, -0.2], &device);
        let probe = Tensor::<4>::random([2, 3, 5, 4], Distribution::Normal(0.0, 1.0), &device);
        let a = relu(x.clone() * scale.clone().reshape([1, 3, 1, 1]) + shift.clone().reshape([1, 3, 1, 1]));
        let b = affine_relu(x.clone(), scale, shift);
        let zeros: f32 = b.clone().equal_elem(0.0).float().mean().into_scalar();
        assert!(zeros > 0.2 && zeros < 0.8, "both sides of the ReLU ({zeros} zeros)");
        let diff: f32 = (a.clone() - b.clone()).abs().max().into_scalar();
        assert!(diff < 1e-6, "forward differs by {diff}");
        let ga = x.grad(&(a * probe.clone()).sum().backward()).expect("gradient");
        let gb = x.grad(&(b * probe).sum().backward()).expect("gradient");
        let diff: f32 = (ga - gb).abs().max().into_scalar();
        assert!(diff < 1e-6, "gradient differs by {diff}");
    }
}
