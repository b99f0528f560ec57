//! The fast path's ACE modulation as one backend operation on the CPU.
//!
//! Composed from tensor ops, an ACE layer with its noise, batch norm, style gather,
//! blending and leaky ReLU makes about a dozen passes over its activation forward and as
//! many backward, each into a freshly allocated tensor. Here (on Flex) it is one pass each
//! way:
//!
//! ```text
//! xin = x + n * nv                      (noise, one map per image shared by the channels)
//! xn  = xin * s + t                     (param_free_norm, eval mode)
//! o   = xn * (1 + G + Sg[idx]) + (B + Sb[idx])
//! out = leaky_relu(o, 0.2)  or  o
//! ```
//!
//! where `G`, `B` are the mask-only maps of [`crate::ace::AceCache`] and `Sg`, `Sb` the
//! blended style responses per 3x3 label neighbourhood ([`crate::neighbourhood`]), gathered
//! per pixel by `idx`. The backward recomputes `xn` and `o` and returns the gradients of
//! `x`, of the responses (summed per neighbourhood), of `G`, `B` and of the per-channel
//! `nv`, `s`, `t` when they are tracked. Other backends keep the composed ops
//! ([`is_fused`] says which path a device takes).

mod flex;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, Backend, DispatchDevice, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Device, Int, Tensor};

/// What an ACE layer adds to its modulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AceFlags {
    /// A noise map is given.
    pub noise: bool,
    /// Style responses are given.
    pub style: bool,
    /// A leaky ReLU (slope 0.2) follows.
    pub leaky: bool,
}

impl AceFlags {
    fn bits(self) -> u32 {
        self.noise as u32 | (self.style as u32) << 1 | (self.leaky as u32) << 2
    }

    fn from_bits(b: u32) -> Self {
        AceFlags { noise: b & 1 != 0, style: b & 2 != 0, leaky: b & 4 != 0 }
    }
}

/// Whether tensors on `device` take the fused operation (the Flex CPU backend).
pub fn is_fused(device: &Device) -> bool {
    // An autodiff device wraps the backend's device: look through it.
    matches!(device.clone().inner().as_dispatch(), DispatchDevice::Flex(_))
}

/// The fused ACE modulation (see the module docs).
#[backend_extension(Flex, Autodiff)]
pub trait AceBackend: Backend {
    /// `x` `[B, C, H, W]`, `noise` `[B, 1, H, W]`, `nv`, `scale`, `shift` `[C]`, `styles`
    /// `[B, 2C, U]`, `index` `[B, H W]`, `gamma`, `beta` `[B, C, H, W]`; `flags` as
    /// [`AceFlags`] bits. Inputs a flag turns off are not read.
    #[allow(clippy::too_many_arguments)]
    fn ace_modulate(
        x: FloatTensor<Self>,
        noise: FloatTensor<Self>,
        nv: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        styles: FloatTensor<Self>,
        index: IntTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        flags: u32,
    ) -> FloatTensor<Self>;
}

/// The backward kernel of [`AceBackend::ace_modulate`] on a concrete backend.
pub trait AceKernels: Backend {
    /// Gradients for output gradient `grad`: `(x, styles, gamma, beta, [3, C] of nv, scale,
    /// shift)`; the maps of `gamma` and `beta` only when `maps` is set.
    #[allow(clippy::too_many_arguments)]
    fn ace_modulate_backward(grad: FloatTensor<Self>, inputs: &AceInputs<Self>, maps: bool) -> AceGrads<Self>;
}

/// The saved inputs of one modulation.
#[derive(Debug, Clone)]
pub struct AceInputs<B: Backend> {
    pub x: FloatTensor<B>,
    pub noise: FloatTensor<B>,
    pub nv: FloatTensor<B>,
    pub scale: FloatTensor<B>,
    pub shift: FloatTensor<B>,
    pub styles: FloatTensor<B>,
    pub index: IntTensor<B>,
    pub gamma: FloatTensor<B>,
    pub beta: FloatTensor<B>,
    pub flags: AceFlags,
}

/// Gradients of one modulation.
#[derive(Debug)]
pub struct AceGrads<B: Backend> {
    pub x: FloatTensor<B>,
    pub styles: Option<FloatTensor<B>>,
    pub gamma: Option<FloatTensor<B>>,
    pub beta: Option<FloatTensor<B>>,
    /// `[C]` each: nv, scale, shift.
    pub channels: [FloatTensor<B>; 3],
}

impl AceBackend for Flex {
    fn ace_modulate(
        x: FloatTensor<Self>,
        noise: FloatTensor<Self>,
        nv: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        styles: FloatTensor<Self>,
        index: IntTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        flags: u32,
    ) -> FloatTensor<Self> {
        let inputs =
            AceInputs { x, noise, nv, scale, shift, styles, index, gamma, beta, flags: AceFlags::from_bits(flags) };
        flex::forward(&inputs)
    }
}

impl AceKernels for Flex {
    fn ace_modulate_backward(grad: FloatTensor<Self>, inputs: &AceInputs<Self>, maps: bool) -> AceGrads<Self> {
        flex::backward(grad, inputs, maps)
    }
}

#[derive(Debug)]
struct AceStep;

impl<B: Backend + AceKernels> Backward<B, 8> for AceStep {
    type State = AceInputs<B>;

    fn backward(self, ops: Ops<Self::State, 8>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [nx, nnoise, nnv, ns, nt, nstyle, ng, nb] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let inputs = ops.state;
        let g = B::ace_modulate_backward(grad, &inputs, ng.is_some() || nb.is_some());
        // The noise is data (and an input a flag turns off is a placeholder): a tracked one
        // gets a zero gradient.
        let zeros = |t: &FloatTensor<B>| B::float_zeros(t.shape(), &t.device(), t.dtype().into());
        if let Some(node) = nnoise {
            grads.register::<B>(node.id, zeros(&inputs.noise));
        }
        let styles = g.styles.or_else(|| nstyle.as_ref().map(|_| zeros(&inputs.styles)));
        let [gnv, gs, gt] = g.channels;
        // Without noise, `nv` takes no part (as in the composed path: no gradient at all).
        let gnv = inputs.flags.noise.then_some(gnv);
        for (node, value) in [(nx, Some(g.x)), (nnv, gnv), (ns, Some(gs)), (nt, Some(gt))] {
            if let (Some(node), Some(value)) = (node, value) {
                grads.register::<B>(node.id, value);
            }
        }
        for (node, value) in [(nstyle, styles), (ng, g.gamma), (nb, g.beta)] {
            if let (Some(node), Some(value)) = (node, value) {
                grads.register::<B>(node.id, value);
            }
        }
    }
}

impl<B: Backend + AceBackend + AceKernels, C: CheckpointStrategy> AceBackend for Autodiff<B, C> {
    fn ace_modulate(
        x: FloatTensor<Self>,
        noise: FloatTensor<Self>,
        nv: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        styles: FloatTensor<Self>,
        index: IntTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        flags: u32,
    ) -> FloatTensor<Self> {
        let (x, g0) = x.into_parts();
        let (noise, g1) = noise.into_parts();
        let (nv, g2) = nv.into_parts();
        let (scale, g3) = scale.into_parts();
        let (shift, g4) = shift.into_parts();
        let (styles, g5) = styles.into_parts();
        let (gamma, g6) = gamma.into_parts();
        let (beta, g7) = beta.into_parts();
        let inputs =
            AceInputs { x, noise, nv, scale, shift, styles, index, gamma, beta, flags: AceFlags::from_bits(flags) };
        let run = |i: &AceInputs<B>| {
            B::ace_modulate(
                i.x.clone(),
                i.noise.clone(),
                i.nv.clone(),
                i.scale.clone(),
                i.shift.clone(),
                i.styles.clone(),
                i.index.clone(),
                i.gamma.clone(),
                i.beta.clone(),
                flags,
            )
        };
        match AceStep.prepare::<C>([g0, g1, g2, g3, g4, g5, g6, g7]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = run(&inputs);
                prep.finish(inputs, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(run(&inputs)),
        }
    }
}

/// The fused modulation on tensors (see the module docs); only for devices where
/// [`is_fused`] holds. Inputs a flag turns off may be any tensor of the device.
#[allow(clippy::too_many_arguments)]
pub fn ace_modulate(
    x: Tensor<4>,
    noise: Tensor<4>,
    nv: Tensor<1>,
    scale: Tensor<1>,
    shift: Tensor<1>,
    styles: Tensor<3>,
    index: Tensor<2, Int>,
    gamma: Tensor<4>,
    beta: Tensor<4>,
    flags: AceFlags,
) -> Tensor<4> {
    Tensor::from_dispatch(<burn::backend::Dispatch as AceBackend>::ace_modulate(
        x.into_dispatch(),
        noise.into_dispatch(),
        nv.into_dispatch(),
        scale.into_dispatch(),
        shift.into_dispatch(),
        styles.into_dispatch(),
        index.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        flags.bits(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_backend_takes_the_fused_path_with_and_without_autodiff() {
        assert!(is_fused(&Device::flex()));
        assert!(is_fused(&Device::flex().autodiff()));
    }
}
