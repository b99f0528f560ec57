//! [`batch_norm_train_cat`]: the train-mode batch norm (then ReLU) of a channel
//! concatenation, as a dense layer's `norm1` takes it, without writing the concatenation.
//!
//! A DenseNet layer normalises `cat(features)`; concatenating copies every earlier feature
//! again in every layer (quadratic in the block's depth), and the backward of the
//! concatenation hands each feature a strided view of the gradient that every later add
//! re-reads. Here each channel is read where its feature holds it and its gradient is
//! written into a tensor of that feature's shape. A feature's statistics are the same in
//! every later layer: the caller passes those of the channels it has seen (`known`) and
//! only the new channels' are computed (the same function on the same values: the same
//! bits).
//!
//! Only Flex tensors (with or without autodiff) take the fused op; others, and
//! `STEEX_FUSED_BN=0`, concatenate and take [`super::batch_norm_train`].

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, NodeGuard, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, Backend, BackendTensor, DispatchAutodiffContext as Context, DispatchKindConversion, DispatchTensor, Flex,
    GradientCheckpointingStrategy as Strategy,
};
use burn::tensor::{Tensor, TensorData};

use super::{Constant, flex};

/// Train-mode batch norm (then `relu` if asked) of `Tensor::cat(xs, 1)` with the batch's
/// statistics: the output and the per-channel mean and biased variance (outside the
/// autodiff graph), as [`super::batch_norm_train`] gives them.
///
/// `known` carries statistics between the layers of a dense block: pass the same vector,
/// empty at first, to each layer's call. When fused, the call takes the statistics of the
/// leading channels from it and leaves those of all of `xs`'s channels there (`[2, C]`:
/// means, then variances); otherwise it leaves it empty.
///
/// # Shapes
/// - `xs`: `[B, C_i, H, W]` each, `C = sum C_i`
/// - `gamma`, `beta`: `[C]`
/// - output: `[B, C, H, W]`, mean `[C]`, variance `[C]`
pub fn batch_norm_train_cat(
    xs: &[Tensor<4>],
    known: &mut Vec<f32>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    relu: bool,
) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
    let device = gamma.device();
    let fused = !xs.is_empty() && xs.len() <= MAX_FEATURES && xs.iter().all(super::fused_for);
    let run = || {
        let xs: Vec<DispatchTensor> = xs.iter().map(|x| x.clone().into_dispatch()).collect();
        let (gamma, beta) = (gamma.clone().into_dispatch(), beta.clone().into_dispatch());
        let context = gamma.autodiff;
        if xs.iter().chain([&beta]).any(|t| t.autodiff != context) {
            return None;
        }
        let known = std::mem::take(known);
        match context {
            Context::Disabled => routed::<Flex>(xs, known, gamma, beta, relu),
            Context::Enabled(Strategy::Disabled) => {
                routed::<Autodiff<Flex, NoCheckpointing>>(xs, known, gamma, beta, relu)
            }
            Context::Enabled(Strategy::Balanced) => {
                routed::<Autodiff<Flex, BalancedCheckpointing>>(xs, known, gamma, beta, relu)
            }
        }
    };
    match fused.then(run).flatten() {
        Some((y, stats)) => {
            *known = crate::host(Tensor::<2>::from_dispatch(stats));
            let c = known.len() / 2;
            let t = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [c]), &device);
            (Tensor::from_dispatch(y), t(&known[..c]), t(&known[c..]))
        }
        None => {
            known.clear();
            super::batch_norm_train(Tensor::cat(xs.to_vec(), 1), gamma, beta, relu)
        }
    }
}

/// The most features one call fuses (the autodiff step's parents are counted at compile
/// time); more are concatenated first.
pub const MAX_FEATURES: usize = 64;

/// [`CatOp::bn_train_cat`] on the tensors as `B`'s (the extension macro does not route a
/// `Vec` of tensors); `None` when one is not.
fn routed<B: CatOp>(
    xs: Vec<DispatchTensor>,
    known: Vec<f32>,
    gamma: DispatchTensor,
    beta: DispatchTensor,
    relu: bool,
) -> Option<(DispatchTensor, DispatchTensor)>
where
    DispatchTensor: DispatchKindConversion<B>,
{
    let float = |t| match <DispatchTensor as DispatchKindConversion<B>>::try_into_backend(t) {
        Ok(BackendTensor::Float(t)) => Some(t),
        _ => None,
    };
    // The features, then gamma and beta.
    let tensors = xs.into_iter().chain([gamma, beta]).map(float).collect::<Option<Vec<_>>>()?;
    let (y, stats) = B::bn_train_cat(tensors, &known, relu);
    let wrap = |t| <DispatchTensor as DispatchKindConversion<B>>::from_backend(BackendTensor::Float(t));
    Some((wrap(y), wrap(stats)))
}

/// The operation on Flex tensors, with and without autodiff.
trait CatOp: Backend {
    /// `tensors`: the features `[B, C_i, H, W]`, then `gamma` and `beta` `[C]`; `known`
    /// `[2, K]` -> the output `[B, C, H, W]` and the statistics `[2, C]` (mean, biased
    /// variance).
    fn bn_train_cat(
        tensors: Vec<FloatTensor<Self>>,
        known: &[f32],
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

impl CatOp for Flex {
    fn bn_train_cat(mut tensors: Vec<FlexTensor>, known: &[f32], relu: bool) -> (FlexTensor, FlexTensor) {
        let (beta, gamma) = (tensors.pop().expect("beta"), tensors.pop().expect("gamma"));
        flex::forward_cat(tensors, known, gamma, beta, relu)
    }
}

/// The autodiff step of `N - 2` features: parents are the features, `gamma`, `beta`.
#[derive(Debug)]
struct CatStep<const N: usize>;

impl<const N: usize> Backward<Flex, N> for CatStep<N> {
    /// The features, the statistics, `gamma`, `beta` and whether a ReLU follows.
    type State = (Vec<FlexTensor>, FlexTensor, FlexTensor, FlexTensor, bool);

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        let (xs, stats, gamma, beta, relu) = ops.state;
        let (dxs, dgamma, dbeta) = flex::backward_cat(xs, grad, stats, gamma, beta, relu);
        for (node, g) in ops.parents.into_iter().zip(dxs.into_iter().chain([dgamma, dbeta])) {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, g);
            }
        }
    }
}

/// Records the step of `N` parents (the features, `gamma`, `beta`) for the output `y`.
fn record<const N: usize, C: CheckpointStrategy>(
    guards: Vec<NodeGuard>,
    state: <CatStep<N> as Backward<Flex, N>>::State,
    y: FlexTensor,
) -> FloatTensor<Autodiff<Flex, C>> {
    let guards: [NodeGuard; N] = guards.try_into().unwrap_or_else(|_| unreachable!("{N} parents"));
    match CatStep::<N>.prepare::<C>(guards).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(state, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

/// `record::<N, C>` for the runtime parent count (features + 2, at most `MAX_FEATURES + 2`).
macro_rules! record_n {
    ($n:expr, $guards:expr, $state:expr, $y:expr; $($k:literal)*) => {
        match $n {
            $($k => record::<$k, C>($guards, $state, $y),)*
            n => unreachable!("{n} parents: more than MAX_FEATURES features are concatenated first"),
        }
    };
}

impl<C: CheckpointStrategy> CatOp for Autodiff<Flex, C> {
    fn bn_train_cat(
        tensors: Vec<FloatTensor<Self>>,
        known: &[f32],
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (mut prims, guards): (Vec<FlexTensor>, Vec<NodeGuard>) =
            tensors.into_iter().map(|t| t.into_parts()).unzip();
        let (y, stats) = Flex::bn_train_cat(prims.clone(), known, relu);
        let (beta, gamma) = (prims.pop().expect("beta"), prims.pop().expect("gamma"));
        let state = (prims, stats.clone(), gamma, beta, relu);
        let y = record_n!(guards.len(), guards, state, y;
            3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34
            35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63 64
            65 66);
        (y, Constant.prepare::<C>([]).compute_bound().stateless(stats))
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution};

    use super::super::{EPS, batch_norm_train};
    use super::*;

    fn max_rel<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        let scale = a.clone().abs().max().into_scalar::<f32>().max(1e-6);
        (a - b).abs().max().into_scalar::<f32>() / scale
    }

    /// Features of 3, 2 and 4 channels with means far from zero and values on both sides
    /// of the ReLU: the fused op equals concatenating and normalising forward (output and
    /// statistics) and in the gradient to every feature, `gamma` and `beta`; statistics
    /// carried from a call on the first two features are the ones computed, and are used.
    #[test]
    fn equals_concatenating_then_normalising() {
        let device = Device::flex().autodiff();
        let [b, h, w] = [3, 5, 6];
        let xs: Vec<Tensor<4>> = [3usize, 2, 4]
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let x = Tensor::<4>::random([b, c, h, w], Distribution::Normal(i as f64 - 1.0, 1.5), &device);
                x.detach().require_grad()
            })
            .collect();
        let c = 9;
        let gamma = Tensor::<1>::random([c], Distribution::Normal(1.0, 0.5), &device).require_grad();
        let beta = Tensor::<1>::random([c], Distribution::Normal(0.0, 0.5), &device).require_grad();
        let probe = Tensor::<4>::random([b, c, h, w], Distribution::Normal(0.0, 1.0), &device);
        let head = |t: &Tensor<1>| t.clone().narrow(0, 0, 5);
        for relu in [true, false] {
            let (ya, ma, va) = batch_norm_train(Tensor::cat(xs.clone(), 1), gamma.clone(), beta.clone(), relu);
            let mut fresh = Vec::new();
            let (yb, mb, vb) = batch_norm_train_cat(&xs, &mut fresh, gamma.clone(), beta.clone(), relu);
            assert!(max_rel(ma, mb.clone()) < 1e-5 && max_rel(va, vb.clone()) < 1e-5, "statistics");
            assert_eq!(fresh, [crate::host(mb), crate::host(vb)].concat(), "left in `known`");
            let e = max_rel(ya.clone(), yb.clone());
            assert!(e < 1e-5, "output {e} (relu {relu})");
            // Carried from the first two features: the same values, the same output.
            let mut known = Vec::new();
            batch_norm_train_cat(&xs[..2], &mut known, head(&gamma), head(&beta), relu);
            assert_eq!(known.len(), 10);
            assert_eq!([&known[..5], &known[5..]], [&fresh[..5], &fresh[9..14]], "the first two features'");
            let (yc, _, _) = batch_norm_train_cat(&xs, &mut known, gamma.clone(), beta.clone(), relu);
            assert_eq!(known, fresh, "carried statistics are the computed ones");
            assert_eq!(crate::host(yc), crate::host(yb.clone()));
            let ga = (ya * probe.clone()).sum().backward();
            let gb = (yb * probe.clone()).sum().backward();
            for (i, x) in xs.iter().enumerate() {
                let e = max_rel(x.grad(&ga).unwrap(), x.grad(&gb).unwrap());
                assert!(e < 1e-5, "gradient to feature {i}: {e} (relu {relu})");
            }
            for (name, p) in [("gamma", &gamma), ("beta", &beta)] {
                let e = max_rel(p.grad(&ga).unwrap(), p.grad(&gb).unwrap());
                assert!(e < 1e-5, "gradient to {name}: {e} (relu {relu})");
            }
        }
        // Carried statistics are used as given: a mean 1 higher for channel 0 lowers its
        // output (no ReLU) by gamma_0 / std_0.
        let mut known = Vec::new();
        batch_norm_train_cat(&xs[..2], &mut known, head(&gamma), head(&beta), false);
        let mut shifted = known.clone();
        shifted[0] += 1.0;
        let (y, _, _) = batch_norm_train_cat(&xs, &mut known.clone(), gamma.clone(), beta.clone(), false);
        let (y_shifted, _, _) = batch_norm_train_cat(&xs, &mut shifted, gamma.clone(), beta.clone(), false);
        let want = crate::host(gamma.narrow(0, 0, 1))[0] / (known[5] + EPS).sqrt();
        let got = crate::host((y - y_shifted).narrow(1, 0, 1));
        assert!(got.iter().all(|d| (d - want).abs() < 1e-4 * want.abs().max(1.0)), "{:?} vs {want}", &got[..3]);
    }
}
