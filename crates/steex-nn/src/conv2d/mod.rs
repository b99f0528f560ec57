//! Any 2D convolution of a burn [`Conv2d`] (stride, padding, dilation; one group) with a
//! fast backward on the CPU, for training: see [`flex`] for the products. Models call
//! [`conv2d`] where they would call `Conv2d::forward`; grouped or asymmetrically padded
//! convolutions, other dtypes and other backends take burn's own.

pub mod flex;
mod op;

pub use op::Conv2dBackend;

use burn::backend::Dispatch;
use burn::backend::ops::ConvOptions;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;

/// False when `STEEX_FAST_CONV=0` is set (read once): every [`conv2d`] then takes burn's
/// own convolution, for comparisons.
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("STEEX_FAST_CONV").map_or(true, |v| v != "0"))
}

/// `conv.forward(x)` through [`Conv2dBackend::conv2d_fast`].
///
/// # Shapes
/// - `x`: `[B, C, H, W]`
/// - output: `[B, K, Ho, Wo]`
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let pad = match &conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => [*top, *left],
        PaddingConfig2d::Valid => [0, 0],
        _ => return conv.forward(x),
    };
    if conv.groups != 1 || !enabled() {
        return conv.forward(x);
    }
    let options = ConvOptions::new(conv.stride, pad, conv.dilation, 1);
    let y = Tensor::from_dispatch(<Dispatch as Conv2dBackend>::conv2d_fast(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        options,
    ));
    match &conv.bias {
        Some(b) => {
            let k = b.dims()[0];
            y + b.val().reshape([1, k, 1, 1])
        }
        None => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::{Param, ParamId};
    use burn::tensor::{Device, Distribution};

    fn layer(k: usize, c: usize, kernel: usize, stride: usize, pad: usize, dilation: usize, device: &Device) -> Conv2d {
        Conv2d {
            weight: Param::initialized(
                ParamId::new(),
                Tensor::random([k, c, kernel, kernel], Distribution::Normal(0.0, 0.3), device).require_grad(),
            ),
            bias: Some(Param::initialized(
                ParamId::new(),
                Tensor::random([k], Distribution::Normal(0.0, 0.3), device).require_grad(),
            )),
            stride: [stride, stride],
            kernel_size: [kernel, kernel],
            dilation: [dilation, dilation],
            groups: 1,
            padding: PaddingConfig2d::Explicit(pad, pad, pad, pad),
        }
    }

    fn max_rel(a: Tensor<4>, b: Tensor<4>) -> f32 {
        let scale = a.clone().abs().max().into_scalar::<f32>().max(1e-6);
        (a - b).abs().max().into_scalar::<f32>() / scale
    }

    /// Forward and all three gradients equal burn's convolution, for strides, paddings and
    /// dilations that leave taps reading only padding (kernel 3, dilation 6 on 5 x 5).
    #[test]
    fn matches_burn_in_every_direction() {
        let device = Device::flex().autodiff();
        // (k, c, kernel, stride, pad, dilation, hw)
        for (k, c, kernel, stride, pad, dilation, hw) in [
            (5, 16, 3, 1, 1, 1, 7),
            (4, 18, 1, 1, 0, 1, 5),
            (4, 18, 1, 1, 0, 1, 16),
            (20, 16, 1, 1, 0, 1, 5),
            (3, 16, 1, 2, 0, 1, 7),
            (6, 3, 7, 2, 3, 1, 11),
            (4, 17, 3, 1, 2, 2, 6),
            (3, 16, 3, 1, 6, 6, 5),
            (2, 16, 3, 2, 1, 1, 8),
        ] {
            let conv = layer(k, c, kernel, stride, pad, dilation, &device);
            let x = Tensor::<4>::random([2, c, hw, hw], Distribution::Normal(0.0, 1.0), &device).require_grad();
            let ours = conv2d(&conv, x.clone());
            let theirs = conv.forward(x.clone());
            assert_eq!(ours.dims(), theirs.dims());
            let e = max_rel(theirs.clone(), ours.clone());
            assert!(e < 1e-5, "forward {e} for {:?}", (k, c, kernel, stride, pad, dilation));
            // A weighting that is not symmetric, so a wrong tap or transpose shows.
            let wgt = Tensor::<4>::random(ours.dims(), Distribution::Normal(0.0, 1.0), &device);
            let g1 = (ours * wgt.clone()).sum().backward();
            let g2 = (theirs * wgt).sum().backward();
            let dx = max_rel(x.grad(&g2).unwrap(), x.grad(&g1).unwrap());
            let w = conv.weight.val();
            let dw = max_rel(w.grad(&g2).unwrap(), w.grad(&g1).unwrap());
            let b = conv.bias.as_ref().unwrap().val();
            let db = (b.grad(&g2).unwrap() - b.grad(&g1).unwrap()).abs().max().into_scalar::<f32>();
            assert!(
                dx < 1e-5 && dw < 1e-5 && db < 1e-4,
                "grads x {dx} w {dw} b {db} for {:?}",
                (k, c, kernel, stride, pad, dilation)
            );
        }
    }

    #[test]
    fn dead_taps_are_found() {
        // Dilation 36 on a 32 x 32 map: only the centre tap reads the image.
        let g = flex::Geometry::new([1, 1, 32, 32], [1, 1, 3, 3], &ConvOptions::new([1, 1], [36, 36], [36, 36], 1))
            .unwrap();
        assert_eq!(g.live_taps(), vec![4]);
        let g = flex::Geometry::new([1, 1, 32, 32], [1, 1, 3, 3], &ConvOptions::new([1, 1], [12, 12], [12, 12], 1))
            .unwrap();
        assert_eq!(g.live_taps().len(), 9);
    }
}
