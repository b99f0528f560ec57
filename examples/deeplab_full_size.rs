//! Full-size deeplabv3_resnet101 (random weights, 20 classes) on a 512x256 image: prints the
//! time and peak memory.
//!
//!     cargo run --release --example deeplab_full_size [50|101] [--device cpu|wgpu|cuda]

use std::time::Instant;

use burn::tensor::{Distribution, Tensor};
use steex::bench_support::{gib, peak_rss_bytes};
use steex::deeplab::{DeepLabConfig, DeepLabV3};
use steex::nn::Weights;

fn main() {
    let (device, _, args) = steex::device::from_args_or_exit();
    let depth: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(101);
    let config = DeepLabConfig::resnet(depth, 20).expect("depth 50 or 101");
    let w = Weights::random(&config.expected_tensors(), &Default::default(), 0);
    let model = DeepLabV3::load(&w, config, &device).expect("valid model");
    drop(w);
    let x = Tensor::<4>::random([1, 3, 256, 512], Distribution::Uniform(-1.0, 1.0), &device);
    let t = Instant::now();
    let y = model.forward(x).into_data();
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(y.shape().to_vec(), vec![1, 20, 256, 512]);
    println!(
        "deeplabv3_resnet{depth} 512x256: {secs:.2} s per image, peak RSS {:.2} GiB",
        peak_rss_bytes().map(gib).unwrap_or(f64::NAN)
    );
}
