//! Full-size DenseNet121 (random weights) at 256x256: forward, and forward + backward to the
//! input (what each explanation step needs), timed per call.
//!
//!     cargo run --release --example densenet_full_size [CALLS] [--device cpu|wgpu|cuda]

use std::time::Instant;

use burn::tensor::{Distribution, Tensor};
use steex::bench_support::{gib, peak_rss_bytes};
use steex::classifier::{DecisionModel, DenseNet, DenseNetConfig};
use steex::nn::Weights;

fn main() {
    let (device, _, args) = steex::device::from_args_or_exit();
    let calls: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(3);
    let device = device.autodiff();
    let config = DenseNetConfig::densenet121(3);
    let w = Weights::random(&config.expected_tensors(), &Default::default(), 0);
    let model = DenseNet::load(&w, config, &device).expect("a valid model");
    drop(w);
    let x = Tensor::<4>::random([1, 3, 256, 256], Distribution::Uniform(-1.0, 1.0), &device);

    let mut fwd = Vec::new();
    for _ in 0..calls {
        let t = Instant::now();
        let _ = model.logits(x.clone().detach()).into_data();
        fwd.push(t.elapsed().as_secs_f64());
    }
    let mut bwd = Vec::new();
    let mut norm = 0.0;
    for _ in 0..calls {
        let t = Instant::now();
        let xi = x.clone().detach().require_grad();
        let logits = model.logits(xi.clone());
        let grads = logits.slice([0..1, 1..2]).sum().backward();
        let g = xi.grad(&grads).expect("input gradient");
        norm = g.square().sum().into_scalar::<f32>().sqrt();
        bwd.push(t.elapsed().as_secs_f64());
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    println!(
        "DenseNet121 256x256 batch 1: forward {:.3} s/call, forward+backward (input gradient, |g| = {norm:.3e}) {:.3} s/call (median of {calls}), peak RSS {:.2} GiB",
        med(&mut fwd),
        med(&mut bwd),
        peak_rss_bytes().map(gib).unwrap_or(f64::NAN)
    );
}
