//! The convolutions of one DenseNet121 training step (batch 32 at 128 x 128), timed one by
//! one on the CPU backend: forward, gradient to the input, gradient to the weights, each
//! shape weighted by how often the network runs it. Prints a table and the step's totals.
//!
//!     cargo run --release --example densenet_conv_kernels [-- BATCH]

use burn::backend::flex::FlexTensor;
use burn::backend::ops::{ConvOptions, ModuleOps};
use burn::backend::{Flex, Shape};
use steex::nn::bn_train::BnTrainBackend;
use steex::nn::conv2d::flex as c2;
use steex::nn::conv3x3::flex as c3;
use steex::nn::pool::{PoolBackend, Window};

mod kernel_bench;

use kernel_bench::random;

/// The best of 5 timed calls after a warm-up, in seconds.
fn time(f: impl FnMut()) -> f64 {
    kernel_bench::best_of(5, f)
}

fn main() {
    // As `steex train` runs: freed blocks kept in the heap (without it, every buffer above
    // 32 MiB is a fresh mapping, page-faulted on each call, which penalises the kernels with
    // large scratch, such as Winograd's, more than training does).
    steex::alloc::tune_allocator();
    steex::alloc::keep_large_blocks();
    let b: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(32);
    // (c0, layers, hw) of DenseNet121's blocks at 128 x 128; transitions after the first three.
    let blocks = [(64, 6, 32), (128, 12, 16), (256, 24, 8), (512, 16, 4)];
    println!("| shape | count | fwd ms | x-grad ms | w-grad ms | step ms |");
    let mut total = [0f64; 3];
    let mut row = |name: String, count: usize, t: [f64; 3]| {
        let step: f64 = t.iter().sum::<f64>() * count as f64;
        for i in 0..3 {
            total[i] += t[i] * count as f64;
        }
        println!(
            "| {name} | {count} | {:.2} | {:.2} | {:.2} | {:.1} |",
            t[0] * 1e3,
            t[1] * 1e3,
            t[2] * 1e3,
            step * 1e3
        );
    };
    let one = ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
    for (bi, &(c0, n, hw)) in blocks.iter().enumerate() {
        // 1x1 conv1 of each layer: c0 + 32 j -> 128; timed at three widths and interpolated
        // by timing every layer (cheap enough).
        let mut t1 = [0f64; 3];
        for j in 0..n {
            let c = c0 + 32 * j;
            let x = random(&[b, c, hw, hw], 1);
            let w = random(&[128, c, 1, 1], 2);
            let g = random(&[b, 128, hw, hw], 3);
            t1[0] += time(|| drop(c2::forward(&x, &w, &one)));
            t1[1] += time(|| drop(c2::input_grad(&x, &w, &g, &one)));
            t1[2] += time(|| drop(c2::weight_grad(&x, &w, &g, &one)));
        }
        row(format!("block{} conv1 {c0}..{} -> 128 @{hw}", bi + 1, c0 + 32 * (n - 1)), 1, t1);
        let x = random(&[b, 128, hw, hw], 4);
        let w = random(&[9, 32, 128], 5);
        let bias = random(&[32], 6);
        let g = random(&[b, 32, hw, hw], 7);
        let t3 = [
            time(|| drop(c3::forward(x.clone(), w.clone(), bias.clone()))),
            time(|| drop(c3::input_grad(g.clone(), w.clone()))),
            time(|| drop(c3::weight_grad(&x, &g))),
        ];
        row(format!("block{} conv2 3x3 128 -> 32 @{hw}", bi + 1), n, t3);
        if bi < 3 {
            let c = c0 + 32 * n;
            let x = random(&[b, c, hw, hw], 8);
            let w = random(&[c / 2, c, 1, 1], 9);
            let g = random(&[b, c / 2, hw, hw], 10);
            let t = [
                time(|| drop(c2::forward(&x, &w, &one))),
                time(|| drop(c2::input_grad(&x, &w, &g, &one))),
                time(|| drop(c2::weight_grad(&x, &w, &g, &one))),
            ];
            row(format!("transition{} {c} -> {} @{hw}", bi + 1, c / 2), 1, t);
        }
    }
    // Batch norms (train mode, with the ReLU) of the same step: norm1 of every layer on its
    // concatenated input, norm2 on the bottleneck, the transitions' norms.
    let mut bn = [0f64; 2];
    for (bi, &(c0, n, hw)) in blocks.iter().enumerate() {
        let mut widths: Vec<usize> = (0..n).map(|j| c0 + 32 * j).collect();
        widths.extend(std::iter::repeat_n(128, n));
        if bi < 3 {
            widths.push(c0 + 32 * n);
        }
        let mut t = [0f64; 2];
        for c in widths {
            let x = random(&[b, c, hw, hw], 11);
            let g = random(&[b, c, hw, hw], 12);
            let (gamma, beta) = (random(&[c], 13), random(&[c], 14));
            let (_, stats) = <Flex as BnTrainBackend>::bn_train(x.clone(), gamma.clone(), beta.clone(), true);
            t[0] += time(|| drop(<Flex as BnTrainBackend>::bn_train(x.clone(), gamma.clone(), beta.clone(), true)));
            t[1] += time(|| {
                drop(<Flex as BnTrainBackend>::bn_train_grad(
                    x.clone(),
                    g.clone(),
                    stats.clone(),
                    gamma.clone(),
                    beta.clone(),
                    true,
                ))
            });
        }
        println!("| block{} batch norms | fwd {:.1} ms | bwd {:.1} ms |", bi + 1, t[0] * 1e3, t[1] * 1e3);
        bn[0] += t[0];
        bn[1] += t[1];
    }
    // The stem and the pools, on burn's own kernels.
    let x = random(&[b, 3, 128, 128], 15);
    let w = random(&[64, 3, 7, 7], 16);
    let stem = ConvOptions::new([2, 2], [3, 3], [1, 1], 1);
    let t0 = time(|| drop(Flex::conv2d(x.clone(), w.clone(), None, stem.clone())));
    let t1 = time(|| drop(c2::forward(&x, &w, &stem)));
    let g0 = random(&[b, 64, 64, 64], 17);
    let t2 = time(|| drop(c2::weight_grad(&x, &w, &g0, &stem)));
    println!("| conv0 | burn fwd {:.1} ms | ours fwd {:.1} ms | w-grad {:.1} ms |", t0 * 1e3, t1 * 1e3, t2 * 1e3);
    let y = random(&[b, 64, 64, 64], 18);
    // burn's pool0: 3x3, stride 2, padding 1, dilation 1.
    let (k, st, pad, dil) = ([3, 3], [2, 2], [1, 1], [1, 1]);
    let burn_pool =
        |y: FlexTensor| Flex::max_pool2d_with_indices(y, k, st, pad, dil, false, burn::backend::IntDType::I64);
    let mp = burn_pool(y.clone());
    let t0 = time(|| drop(burn_pool(y.clone())));
    let gp = random(&[b, 64, 32, 32], 19);
    let t1 = time(|| {
        drop(Flex::max_pool2d_with_indices_backward(y.clone(), k, st, pad, dil, false, gp.clone(), mp.indices.clone()))
    });
    let win = Window { kernel: 3, stride: 2, padding: 1 };
    let (_, at) = <Flex as PoolBackend>::max_pool_indexed(y.clone(), win);
    let t2 = time(|| drop(<Flex as PoolBackend>::max_pool_indexed(y.clone(), win)));
    let shape = Shape::new([b, 64, 64, 64]);
    let t3 = time(|| drop(<Flex as PoolBackend>::max_pool_grad(shape.clone(), gp.clone(), at.clone(), win)));
    println!(
        "| pool0 max 3x3/2 | burn fwd {:.1} ms, bwd {:.1} ms | ours fwd {:.1} ms, bwd {:.1} ms |",
        t0 * 1e3,
        t1 * 1e3,
        t2 * 1e3,
        t3 * 1e3
    );
    for (c, hw) in [(128, 32), (256, 16), (512, 8)] {
        let y = random(&[b, c, hw, hw], 20);
        let g = random(&[b, c, hw / 2, hw / 2], 21);
        let t0 = time(|| drop(Flex::avg_pool2d(y.clone(), [2, 2], [2, 2], [0, 0], true, false)));
        let t1 = time(|| drop(Flex::avg_pool2d_backward(y.clone(), g.clone(), [2, 2], [2, 2], [0, 0], true, false)));
        let t2 = time(|| drop(<Flex as PoolBackend>::avg_pool2x2(y.clone())));
        let shape = Shape::new([b, c, hw, hw]);
        let t3 = time(|| drop(<Flex as PoolBackend>::avg_pool2x2_grad(shape.clone(), g.clone())));
        println!(
            "| avg pool {c} @{hw} | burn fwd {:.1} ms, bwd {:.1} ms | ours fwd {:.1} ms, bwd {:.1} ms |",
            t0 * 1e3,
            t1 * 1e3,
            t2 * 1e3,
            t3 * 1e3
        );
    }
    println!("batch norms per step: fwd {:.0} ms, bwd {:.0} ms", bn[0] * 1e3, bn[1] * 1e3);
    println!(
        "total per step: fwd {:.0} ms, x-grad {:.0} ms, w-grad {:.0} ms, all {:.0} ms",
        total[0] * 1e3,
        total[1] * 1e3,
        total[2] * 1e3,
        total.iter().sum::<f64>() * 1e3
    );
}
