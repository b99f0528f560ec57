//! Convolution kernels of the explanation step, timed one by one: burn's `conv2d` against
//! the 3x3 convolution the models use, forward and forward + backward to the input
//! (random data, the CPU backend).
//!
//!     cargo run --release --example conv_kernels

use burn::module::{Param, ParamId};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Distribution, Tensor};

mod kernel_bench;

/// The best of 5 timed calls after a warm-up, in seconds.
fn time(f: impl FnMut()) -> f64 {
    kernel_bench::best_of(5, f)
}

fn main() {
    // As `steex explain` runs: freed blocks up to 32 MiB kept for reuse.
    steex::alloc::tune_allocator();
    let device = Device::flex().autodiff();
    matmul_ceiling(&Device::flex());
    style_products(&device);
    ace_fused(&device);
    if std::env::args().any(|a| a == "--products") {
        return;
    }
    let shapes = [(1024, 1024, 4), (1024, 1024, 8), (1024, 512, 16), (512, 256, 32), (256, 128, 64), (128, 64, 128)];
    println!(
        "| cin -> cout @ HxW | GFLOP | burn fwd GFLOP/s | burn fwd+bwd(x) ms | fast fwd GFLOP/s | fast fwd+bwd(x) ms | held Winograd fwd GFLOP/s | held fwd+bwd(x) ms |"
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
        // The same layer holding its Winograd weights (as a frozen generator's wide layers
        // do), where the plane takes Winograd.
        let held = if steex::nn::conv3x3::winograd_plane_fits(hw, hw) {
            let held = fast.clone().with_winograd_weights();
            let fwd = time(|| {
                let _ = held.forward(x.clone()).into_data();
            });
            let bwd = time(|| {
                let xg = x.clone().require_grad();
                let g = held.forward(xg.clone()).sum().backward();
                let _ = xg.grad(&g).unwrap().into_data();
            });
            format!("{:.0} | {:.1}", flop / fwd / 1e9, bwd * 1e3)
        } else {
            "- | -".to_string()
        };
        println!(
            "| {cin} -> {cout} @ {hw} | {:.2} | {:.0} | {:.1} | {:.0} | {:.1} | {held} | (max diff {err:.1e})",
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

/// The style branch's products at celeba's widest layer (C = 1024, S = 512, L = 19).
#[allow(dead_code)]
fn style_products(device: &Device) {
    let (c2, s, l) = (2048usize, 512usize, 19usize);
    let offsets = Tensor::<2>::random([c2 * 9, s], Distribution::Normal(0.0, 0.02), device).unsqueeze_dim::<3>(0);
    let fc = Tensor::<3>::random([l, s, s], Distribution::Normal(0.0, 0.02), device);
    let z = Tensor::<3>::random([l, 1, s], Distribution::Normal(0.0, 1.0), device);
    let v = Tensor::<3>::random([1, s, l], Distribution::Normal(0.0, 1.0), device);
    let t = time(|| {
        let _ = offsets.clone().matmul(v.clone()).into_data();
    });
    println!(
        "offsets [{}, {s}] x [{s}, {l}]: {:.1} ms ({:.1} GB/s of weights)",
        c2 * 9,
        t * 1e3,
        (c2 * 9 * s * 4) as f64 / t / 1e9
    );
    let t = time(|| {
        let vg = v.clone().require_grad();
        let g = offsets.clone().matmul(vg.clone()).sum().backward();
        let _ = vg.grad(&g).unwrap().into_data();
    });
    println!("  with backward to v: {:.1} ms", t * 1e3);
    let w2 = offsets.clone().reshape([c2 * 9, s]);
    let v2 = v.clone().reshape([s, l]).transpose();
    let t = time(|| {
        let _ = steex::nn::skinny::skinny_matmul(w2.clone(), v2.clone()).into_data();
    });
    println!("  skinny_matmul: {:.1} ms ({:.1} GB/s of weights)", t * 1e3, (c2 * 9 * s * 4) as f64 / t / 1e9);
    let t = time(|| {
        let vg = v2.clone().require_grad();
        let g = steex::nn::skinny::skinny_matmul(w2.clone(), vg.clone()).sum().backward();
        let _ = vg.grad(&g).unwrap().into_data();
    });
    println!("  skinny_matmul with backward to v: {:.1} ms", t * 1e3);
    let t = time(|| {
        let _ = z.clone().matmul(fc.clone()).into_data();
    });
    println!(
        "fc_mu [{l}] x [1, {s}] x [{s}, {s}]: {:.1} ms ({:.1} GB/s of weights)",
        t * 1e3,
        (l * s * s * 4) as f64 / t / 1e9
    );
    let t = time(|| {
        let zg = z.clone().require_grad();
        let g = zg.clone().matmul(fc.clone()).sum().backward();
        let _ = zg.grad(&g).unwrap().into_data();
    });
    println!("  with backward to z: {:.1} ms", t * 1e3);
}

/// The fused ACE modulation at up_3's size.
#[allow(dead_code)]
fn ace_fused(device: &Device) {
    use burn::tensor::Int;
    let (b, c, h, w) = (1usize, 128usize, 128usize, 128usize);
    let r = |s: [usize; 4]| Tensor::<4>::random(s, Distribution::Normal(0.0, 1.0), device);
    let (x, n, g, bt) = (r([b, c, h, w]), r([b, 1, h, w]), r([b, c, h, w]), r([b, c, h, w]));
    let v = |k: usize| Tensor::<1>::random([k], Distribution::Normal(0.0, 1.0), device);
    let styles = Tensor::<3>::random([b, 2 * c, 10], Distribution::Normal(0.0, 1.0), device);
    let idx = Tensor::<2, Int>::zeros([b, h * w], device);
    for style in [false, true] {
        let flags = steex::sean::fused::AceFlags { noise: true, style, leaky: true };
        let run = |x: &Tensor<4>| {
            let args = (n.clone(), v(c), v(c), v(c), styles.clone(), idx.clone(), g.clone(), bt.clone());
            steex::sean::fused::ace_modulate(
                x.clone(),
                args.0,
                args.1,
                args.2,
                args.3,
                args.4,
                args.5,
                args.6,
                args.7,
                flags,
            )
        };
        let t = time(|| {
            let _ = run(&x).into_data();
        });
        println!("fused ACE [{b}, {c}, {h}, {w}] style {style}: {:.2} ms", t * 1e3);
        let xg = x.clone().require_grad();
        let t = time(|| {
            let _ = run(&xg).into_data();
        });
        println!("  tracked input: {:.2} ms", t * 1e3);
        let t = time(|| {
            let gr = run(&xg).sum().backward();
            let _ = xg.grad(&gr).unwrap().into_data();
        });
        println!("  with backward: {:.2} ms", t * 1e3);
    }
}
