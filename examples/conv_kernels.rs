//! Convolution kernels of the explanation step, timed one by one: burn's `conv2d` against
//! the 3x3 convolution the models use, forward and forward + backward to the input
//! (random data, the CPU backend).
//!
//!     cargo run --release --example conv_kernels

use std::time::Instant;

use burn::module::{Param, ParamId};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Distribution, Tensor};

fn time<F: FnMut()>(mut f: F) -> f64 {
    f();
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    let device = Device::flex().autodiff();
    matmul_ceiling(&Device::flex());
    let shapes = [(1024, 1024, 4), (1024, 1024, 8), (1024, 512, 16), (512, 256, 32), (256, 128, 64), (128, 64, 128)];
    println!(
        "| cin -> cout @ HxW | GFLOP | burn fwd GFLOP/s | burn fwd+bwd(x) ms | fast fwd GFLOP/s | fast fwd+bwd(x) ms |"
    );
    for (cin, cout, hw) in shapes {
        let weight = Tensor::<4>::random([cout, cin, 3, 3], Distribution::Normal(0.0, 0.02), &device);
        let bias = Tensor::<1>::random([cout], Distribution::Normal(0.0, 0.02), &device);
        let conv = Conv2d {
            weight: Param::initialized(ParamId::new(), weight.clone()),
            bias: Some(Param::initialized(ParamId::new(), bias.clone())),
            stride: [1, 1],
            kernel_size: [3, 3],
            dilation: [1, 1],
            groups: 1,
            padding: PaddingConfig2d::Explicit(1, 1, 1, 1),
        };
        let fast = steex::nn::Conv3x3::from_conv(&conv);
        let conv = burn::module::Module::no_grad(conv);
        let fast = burn::module::Module::no_grad(fast);
        let x = Tensor::<4>::random([1, cin, hw, hw], Distribution::Normal(0.0, 1.0), &device);
        let flop = 2.0 * 9.0 * (cin * cout * hw * hw) as f64;
        let a = conv.forward(x.clone()).into_data();
        let b = fast.forward(x.clone()).into_data();
        let err = a
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .zip(b.as_slice::<f32>().unwrap())
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max);
        let burn_fwd = time(|| {
            let _ = conv.forward(x.clone()).into_data();
        });
        let burn_bwd = time(|| {
            let xg = x.clone().require_grad();
            let g = conv.forward(xg.clone()).sum().backward();
            let _ = xg.grad(&g).unwrap().into_data();
        });
        let fast_fwd = time(|| {
            let _ = fast.forward(x.clone()).into_data();
        });
        let fast_bwd = time(|| {
            let xg = x.clone().require_grad();
            let g = fast.forward(xg.clone()).sum().backward();
            let _ = xg.grad(&g).unwrap().into_data();
        });
        println!(
            "| {cin} -> {cout} @ {hw} | {:.2} | {:.0} | {:.1} | {:.0} | {:.1} | (max diff {err:.1e})",
            flop / 1e9,
            flop / burn_fwd / 1e9,
            burn_bwd * 1e3,
            flop / fast_fwd / 1e9,
            fast_bwd * 1e3
        );
    }
}

/// Matrix products of the sizes the convolutions reduce to, for the machine's ceiling.
#[allow(dead_code)]
fn matmul_ceiling(device: &Device) {
    for (m, k, n) in [(2048usize, 2048usize, 2048usize), (1024, 9216, 64), (256, 2304, 4096), (64, 1152, 16384)] {
        let a = Tensor::<2>::random([m, k], Distribution::Normal(0.0, 1.0), device);
        let b = Tensor::<2>::random([k, n], Distribution::Normal(0.0, 1.0), device);
        let t = time(|| {
            let _ = a.clone().matmul(b.clone()).into_data();
        });
        println!("matmul {m}x{k}x{n}: {:.0} GFLOP/s", 2.0 * (m * k * n) as f64 / t / 1e9);
    }
}
