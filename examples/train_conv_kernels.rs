//! Convolutions of a training step, timed one by one on the CPU backend: burn's `conv2d`
//! forward, its gradient to the input and its gradient to the weights, against steex-nn's
//! weight gradient, on the shapes of DeepLabV3-ResNet101 at 256 x 256, batch 8.
//!
//!     cargo run --release --example train_conv_kernels

use burn::backend::flex::FlexTensor;
use burn::backend::ops::{ConvOptions, ModuleOps};
use burn::backend::{Flex, TensorMetadata};
use steex::nn::conv2d::flex;

mod kernel_bench;

use kernel_bench::random;

/// The best of 3 timed calls after a warm-up, in seconds.
fn time(f: impl FnMut()) -> f64 {
    kernel_bench::best_of(3, f)
}

fn main() {
    // As `steex train` runs: freed blocks kept in the heap (without it, every buffer above
    // 32 MiB is a fresh mapping, page-faulted on each call, which penalises the kernels with
    // large scratch, such as Winograd's, more than training does).
    steex::alloc::tune_allocator();
    steex::alloc::keep_large_blocks();
    // (batch, cin, cout, hw, kernel, stride, dilation)
    let shapes = [
        (8, 3, 64, 256, 7, 2, 1),
        (8, 64, 64, 64, 3, 1, 1),
        (8, 256, 64, 64, 1, 1, 1),
        (8, 64, 256, 64, 1, 1, 1),
        (8, 1024, 256, 32, 1, 1, 1),
        (8, 256, 256, 32, 3, 1, 2),
        (8, 256, 1024, 32, 1, 1, 1),
        (8, 512, 512, 32, 3, 1, 4),
        (8, 2048, 256, 32, 3, 1, 12),
    ];
    println!(
        "| B cin->cout @HW k s d | GFLOP | burn fwd / x-grad / w-grad ms | ours fwd / x-grad / w-grad ms | max rel err fwd / x / w |"
    );
    for (b, cin, cout, hw, k, s, d) in shapes {
        let pad = d * (k - 1) / 2;
        let opts = ConvOptions::new([s, s], [pad, pad], [d, d], 1);
        let x = random(&[b, cin, hw, hw], 1);
        let w = random(&[cout, cin, k, k], 2);
        let y = Flex::conv2d(x.clone(), w.clone(), None, opts.clone());
        let ho = y.shape()[2];
        let g = random(&[b, cout, ho, ho], 3);
        let flop = 2.0 * (b * cin * cout * k * k * ho * ho) as f64 * 1e-9;
        let burn = [
            time(|| drop(Flex::conv2d(x.clone(), w.clone(), None, opts.clone()))),
            time(|| drop(Flex::conv2d_x_backward(x.clone(), w.clone(), g.clone(), opts.clone()))),
            time(|| drop(Flex::conv2d_weight_backward(x.clone(), w.clone(), g.clone(), opts.clone()))),
        ];
        let ours = [
            time(|| drop(flex::forward(&x, &w, &opts))),
            time(|| drop(flex::input_grad(&x, &w, &g, &opts))),
            time(|| drop(flex::weight_grad(&x, &w, &g, &opts))),
        ];
        let pairs = [
            (Flex::conv2d(x.clone(), w.clone(), None, opts.clone()), flex::forward(&x, &w, &opts).unwrap()),
            (
                Flex::conv2d_x_backward(x.clone(), w.clone(), g.clone(), opts.clone()),
                flex::input_grad(&x, &w, &g, &opts).unwrap(),
            ),
            (
                Flex::conv2d_weight_backward(x.clone(), w.clone(), g.clone(), opts.clone()),
                flex::weight_grad(&x, &w, &g, &opts).unwrap(),
            ),
        ];
        let errs: Vec<String> = pairs.into_iter().map(|(a, bb)| format!("{:.1e}", rel_err(a, bb))).collect();
        let ms = |t: [f64; 3]| format!("{:.0} / {:.0} / {:.0}", t[0] * 1e3, t[1] * 1e3, t[2] * 1e3);
        println!(
            "| {b} {cin}->{cout} @{hw} k{k} s{s} d{d} | {flop:.1} | {} | {} | {} |",
            ms(burn),
            ms(ours),
            errs.join(" / ")
        );
    }
}

fn rel_err(a: FlexTensor, b: FlexTensor) -> f32 {
    let (a, b) = (a.into_data(), b.into_data());
    let (a, b) = (a.as_slice::<f32>().unwrap(), b.as_slice::<f32>().unwrap());
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |m, (p, q)| m.max((p - q).abs())) / scale
}
