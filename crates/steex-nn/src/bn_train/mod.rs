//! `torch.nn.BatchNorm2d` in train mode, optionally followed by its ReLU, as one CPU pass
//! each way: composed from tensor ops it is about ten full-size passes forward (means,
//! centring, variance, scale, shift, ReLU) and as many in the autodiff backward, each into a
//! fresh tensor, for each of DenseNet121's 121 batch norms. Here each channel's statistics,
//! output and gradients are computed by one thread while its `B x H x W` values are in
//! cache, channels in parallel.
//!
//! Forward: `y = relu((x - mean) * rstd * gamma + beta)`, `mean` and the biased variance
//! over `[B, H, W]`, `rstd = 1 / sqrt(var + 1e-5)`. Backward, with `g = dy * (y > 0)`, `N`
//! values per channel and `xhat = (x - mean) * rstd`: `dbeta = sum g`,
//! `dgamma = sum g xhat`, `dx = gamma rstd (g - dbeta / N - xhat dgamma / N)`.
//!
//! Other backends, and `STEEX_FUSED_BN=0`, take [`composed`].

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, DispatchDevice, Flex, Shape, TensorMetadata, backend_extension};
use burn::tensor::activation::relu as relu_op;
use burn::tensor::{Slice, Tensor};

/// PyTorch's default batch-norm epsilon.
pub const EPS: f32 = 1e-5;

/// False when `STEEX_FUSED_BN=0` is set (read once): train-mode batch norms then take
/// [`composed`], for comparisons.
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("STEEX_FUSED_BN").map_or(true, |v| v != "0"))
}

/// Whether [`batch_norm_train`] takes the fused op for `x` (a CPU tensor, not switched off).
pub fn fused_for(x: &Tensor<4>) -> bool {
    enabled() && matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_))
}

/// Train-mode batch norm (then `relu` if asked) with the batch's statistics: the output
/// and the per-channel mean and biased variance (outside the autodiff graph).
///
/// # Shapes
/// - `x`: `[B, C, H, W]`
/// - `gamma`, `beta`: `[C]`
/// - output: `[B, C, H, W]`, mean `[C]`, variance `[C]`
pub fn batch_norm_train(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    relu: bool,
) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
    if !fused_for(&x) {
        return composed(x, gamma, beta, relu);
    }
    let c = x.dims()[1];
    let (y, stats) =
        <Dispatch as BnTrainBackend>::bn_train(x.into_dispatch(), gamma.into_dispatch(), beta.into_dispatch(), relu);
    let stats = Tensor::<2>::from_dispatch(stats).detach();
    let mean = stats.clone().slice([0..1, 0..c]).reshape([c]);
    (Tensor::from_dispatch(y), mean, stats.slice([1..2, 0..c]).reshape([c]))
}

/// [`batch_norm_train`] composed from tensor ops (any backend; autodiff differentiates it).
///
/// # Shapes
/// - `x`: `[B, C, H, W]`
/// - `gamma`, `beta`: `[C]`
/// - output: `[B, C, H, W]`, mean `[C]`, variance `[C]`
pub fn composed(x: Tensor<4>, gamma: Tensor<1>, beta: Tensor<1>, relu: bool) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
    let c = x.dims()[1];
    let over = |t: Tensor<4>| t.mean_dim(0).mean_dim(2).mean_dim(3);
    let mean = over(x.clone());
    let centered = x - mean.clone();
    let var = over(centered.clone() * centered.clone());
    let y = centered * var.clone().add_scalar(EPS).sqrt().recip();
    let y = y * gamma.reshape([1, c, 1, 1]) + beta.reshape([1, c, 1, 1]);
    let y = if relu { relu_op(y) } else { y };
    (y, mean.detach().reshape([c]), var.detach().reshape([c]))
}

/// The operation; [`batch_norm_train`] routes only Flex tensors (with or without autodiff)
/// here. The defaults compose tensor ops.
#[backend_extension(Flex, Autodiff, Cube: cfg(any(feature = "wgpu", feature = "cuda")))]
pub trait BnTrainBackend: Backend {
    /// `x` `[B, C, H, W]`, `gamma`, `beta` `[C]` -> the output `[B, C, H, W]` and the
    /// statistics `[2, C]` (mean, biased variance).
    fn bn_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        composed_forward::<Self>(x, gamma, beta, relu)
    }

    /// The gradients to `x`, `gamma` and `beta` for the output gradient `grad`, from the
    /// input, the statistics of [`BnTrainBackend::bn_train`] and the affine parameters.
    fn bn_train_grad(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        composed_grad::<Self>(x, grad, stats, gamma, beta, relu)
    }
}

/// [`BnTrainBackend::bn_train`] composed from `B`'s tensor ops.
fn composed_forward<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    relu: bool,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let [b, c, h, w] = x.shape().dims();
    let n = (b * h * w) as f32;
    let per_channel = |t| B::float_reshape(t, Shape::new([1, c, 1, 1]));
    let over = |t| B::float_div_scalar(B::float_sum_dim(B::float_sum_dim(B::float_sum_dim(t, 0), 2), 3), n.into());
    let mean = over(x.clone());
    let centered = B::float_sub(x, mean.clone());
    let var = over(B::float_mul(centered.clone(), centered.clone()));
    let rstd = B::float_recip(B::float_sqrt(B::float_add_scalar(var.clone(), EPS.into())));
    let y = B::float_mul(B::float_mul(centered, rstd), per_channel(gamma));
    let y = B::float_add(y, per_channel(beta));
    let y = if relu { B::float_clamp_min(y, 0f32.into()) } else { y };
    let row = |t| B::float_reshape(t, Shape::new([1, c]));
    (y, B::float_cat(vec![row(mean), row(var)], 0))
}

/// [`BnTrainBackend::bn_train_grad`] composed from `B`'s tensor ops.
fn composed_grad<B: Backend>(
    x: FloatTensor<B>,
    grad: FloatTensor<B>,
    stats: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    relu: bool,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let [b, c, h, w] = x.shape().dims();
    let n = (b * h * w) as f32;
    let per_channel = |t| B::float_reshape(t, Shape::new([1, c, 1, 1]));
    let row = |t, i: usize| per_channel(B::float_slice(t, &[Slice::from(i..i + 1), Slice::from(0..c)]));
    let (mean, var) = (row(stats.clone(), 0), row(stats, 1));
    let rstd = B::float_recip(B::float_sqrt(B::float_add_scalar(var, EPS.into())));
    let xhat = B::float_mul(B::float_sub(x, mean), rstd.clone());
    let (gamma, beta) = (per_channel(gamma), per_channel(beta));
    let g = if relu {
        let pre = B::float_add(B::float_mul(xhat.clone(), gamma.clone()), beta);
        // sign(max(pre, 0)) is the ReLU's mask.
        B::float_mul(grad, B::float_sign(B::float_clamp_min(pre, 0f32.into())))
    } else {
        grad
    };
    let over = |t| B::float_sum_dim(B::float_sum_dim(B::float_sum_dim(t, 0), 2), 3);
    let dbeta = over(g.clone());
    let dgamma = over(B::float_mul(g.clone(), xhat.clone()));
    let inner = B::float_sub(
        B::float_sub(g, B::float_div_scalar(dbeta.clone(), n.into())),
        B::float_mul(xhat, B::float_div_scalar(dgamma.clone(), n.into())),
    );
    let dx = B::float_mul(inner, B::float_mul(gamma, rstd));
    let flat = |t| B::float_reshape(t, Shape::new([c]));
    (dx, flat(dgamma), flat(dbeta))
}

mod cat;
mod flex;

pub use cat::{MAX_FEATURES, batch_norm_train_cat};

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl BnTrainBackend for burn::backend::Cube {}

impl BnTrainBackend for Flex {
    fn bn_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        flex::forward(x, gamma, beta, relu)
    }

    fn bn_train_grad(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        flex::backward(x, grad, stats, gamma, beta, relu)
    }
}

#[derive(Debug)]
struct BnTrainStep;

impl<B: Backend + BnTrainBackend> Backward<B, 3> for BnTrainStep {
    /// The input, the statistics, `gamma`, `beta` and whether a ReLU follows.
    type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, bool);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, stats, gamma, beta, relu) = ops.state;
        let (dx, dgamma, dbeta) = B::bn_train_grad(x, grad, stats, gamma, beta, relu);
        for (node, g) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

/// A tensor outside the graph (the statistics).
#[derive(Debug)]
struct Constant;

impl<B: Backend> Backward<B, 0> for Constant {
    type State = ();

    fn backward(self, _ops: Ops<(), 0>, _grads: &mut Gradients, _checkpointer: &mut Checkpointer) {}
}

impl<B: Backend + BnTrainBackend, C: CheckpointStrategy> BnTrainBackend for Autodiff<B, C> {
    fn bn_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (x, gx) = x.into_parts();
        let (gamma, gg) = gamma.into_parts();
        let (beta, gb) = beta.into_parts();
        let (y, stats) = B::bn_train(x.clone(), gamma.clone(), beta.clone(), relu);
        let y = match BnTrainStep.prepare::<C>([gx, gg, gb]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((x, stats.clone(), gamma, beta, relu), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        (y, Constant.prepare::<C>([]).compute_bound().stateless(stats))
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::TensorData;
    use burn::backend::flex::FlexTensor;
    use burn::tensor::{Device, Distribution};

    use super::*;

    fn max_rel(a: Tensor<1>, b: Tensor<1>) -> f32 {
        let scale = a.clone().abs().max().into_scalar::<f32>().max(1e-6);
        (a - b).abs().max().into_scalar::<f32>() / scale
    }

    /// The fused op equals [`composed`] forward (output and statistics) and in all three
    /// gradients, with and without the ReLU, on a batch whose channels have means far from
    /// zero (the centring matters) and values on both sides of the ReLU.
    #[test]
    fn equals_the_composed_ops() {
        let device = Device::flex().autodiff();
        for relu in [true, false] {
            for [b, c, h, w] in [[3, 5, 6, 7], [2, 4, 5, 5], [1, 3, 1, 1 + 16]] {
                let offset = Tensor::<1>::from_floats([3.0, -2.0, 0.5, 10.0, -7.0], &device).narrow(0, 0, c);
                let x = Tensor::<4>::random([b, c, h, w], Distribution::Normal(0.0, 1.5), &device)
                    + offset.reshape([1, c, 1, 1]);
                let x = x.detach().require_grad();
                let gamma = Tensor::<1>::random([c], Distribution::Normal(1.0, 0.5), &device).require_grad();
                let beta = Tensor::<1>::random([c], Distribution::Normal(0.0, 0.5), &device).require_grad();
                let probe = Tensor::<4>::random([b, c, h, w], Distribution::Normal(0.0, 1.0), &device);
                let (ya, ma, va) = composed(x.clone(), gamma.clone(), beta.clone(), relu);
                let (yb, mb, vb) = batch_norm_train(x.clone(), gamma.clone(), beta.clone(), relu);
                if relu {
                    let zeros: f32 = yb.clone().equal_elem(0.0).float().mean().into_scalar();
                    assert!(zeros > 0.1 && zeros < 0.9, "both sides of the ReLU ({zeros} zeros)");
                }
                let flat = |t: Tensor<4>| t.reshape([b * c * h * w]);
                let e = [max_rel(flat(ya.clone()), flat(yb.clone())), max_rel(ma, mb), max_rel(va, vb)];
                assert!(e.iter().all(|&e| e < 1e-5), "forward {e:?} (relu {relu}, {:?})", [b, c, h, w]);
                let ga = (ya * probe.clone()).sum().backward();
                let gb = (yb * probe).sum().backward();
                let e = [
                    max_rel(flat(x.grad(&ga).unwrap()), flat(x.grad(&gb).unwrap())),
                    max_rel(gamma.grad(&ga).unwrap(), gamma.grad(&gb).unwrap()),
                    max_rel(beta.grad(&ga).unwrap(), beta.grad(&gb).unwrap()),
                ];
                assert!(
                    e.iter().all(|&e| e < 1e-5),
                    "gradients x, gamma, beta {e:?} (relu {relu}, {:?})",
                    [b, c, h, w]
                );
            }
        }
    }

    /// The composed defaults of [`BnTrainBackend`] (other backends' bodies) equal the Flex
    /// kernels forward and backward.
    #[test]
    fn defaults_equal_the_kernels() {
        let device = Device::flex();
        let flex = |t: Tensor<4>| FlexTensor::from_data(t.into_data());
        let host = |t: FlexTensor| t.into_data().try_into_vec::<f32>().unwrap();
        let close = |a: Vec<f32>, b: Vec<f32>, what: &str| {
            let scale = a.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
            let e = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale;
            assert!(a.len() == b.len() && e < 1e-5, "{what}: {e}");
        };
        let x = flex(Tensor::random([2, 3, 4, 5], Distribution::Normal(1.0, 2.0), &device));
        let dy = flex(Tensor::random([2, 3, 4, 5], Distribution::Normal(0.0, 1.0), &device));
        let g = FlexTensor::from_data(TensorData::new(vec![1.5f32, -0.5, 0.8], [3]));
        let bt = FlexTensor::from_data(TensorData::new(vec![0.2f32, 0.1, -0.3], [3]));
        for relu in [true, false] {
            let (ya, sa) = composed_forward::<Flex>(x.clone(), g.clone(), bt.clone(), relu);
            let (yb, sb) = flex::forward(x.clone(), g.clone(), bt.clone(), relu);
            close(host(ya), host(yb), "output");
            close(host(sa), host(sb.clone()), "statistics");
            let a = composed_grad::<Flex>(x.clone(), dy.clone(), sb.clone(), g.clone(), bt.clone(), relu);
            let b = flex::backward(x.clone(), dy.clone(), sb, g.clone(), bt.clone(), relu);
            close(host(a.0), host(b.0), "dx");
            close(host(a.1), host(b.1), "dgamma");
            close(host(a.2), host(b.2), "dbeta");
        }
    }
}
