//! A full-size explanation on the CPU with random weights: SEAN at a published preset and
//! DenseNet121, a few Adam steps, printing the time per step and the peak memory.
//!
//!     cargo run --release --example explain_full_size [celebamhq|celeba|bdd] [STEPS]

use std::time::Instant;

use burn::tensor::{Device, Distribution, Int, Tensor};
use steex::classifier::{DenseNet, DenseNetConfig};
use steex::explain::{ExplainSettings, explain};
use steex::nn::Weights;
use steex::sean::{SeanConfig, SeanGenerator};
use steex::util::{gib, peak_rss_bytes};

fn main() {
    let preset = std::env::args().nth(1).unwrap_or_else(|| "celebamhq".into());
    let steps: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let Some(config) = SeanConfig::preset(&preset) else {
        eprintln!("unknown preset {preset}: expected celeba, celebamhq or bdd");
        std::process::exit(2);
    };
    let device = Device::flex().autodiff();
    let (h, w) = config.image_size();
    let l = config.labels as i64;
    let t = Instant::now();
    let g = SeanGenerator::random(config, 0, &device).expect("valid preset");
    let dconf = DenseNetConfig::densenet121(if preset == "bdd" { 4 } else { 3 });
    let c = DenseNet::load(&Weights::random(&dconf.expected_tensors(), &Default::default(), 1), dconf, &device)
        .expect("valid");
    let build = t.elapsed().as_secs_f64();
    let rows = Tensor::<1, Int>::arange(0..h as i64, &device).div_scalar((h as i64 + l - 1) / l);
    let mask = g.mask(rows.reshape([1, h, 1]).expand([1, h, w])).expect("labels in range");
    let image = Tensor::<4>::random([1, 3, h, w], Distribution::Uniform(-1.0, 1.0), &device);
    let settings = ExplainSettings { attribute: 0, steps, ..Default::default() };
    let mut times = Vec::new();
    let mut last = Instant::now();
    let t = Instant::now();
    let e = explain(&g, &c, image, &mask, &settings, &mut |r| {
        times.push(last.elapsed().as_secs_f64());
        last = Instant::now();
        eprintln!("step {}/{}: {:.2} s", r.step, r.steps, times.last().unwrap());
    })
    .expect("explanation");
    let total = t.elapsed().as_secs_f64();
    // The first report also includes encoding and the reconstruction.
    let per_step = if times.len() > 1 { times[1..].iter().sum::<f64>() / (times.len() - 1) as f64 } else { times[0] };
    println!(
        "{preset} {w}x{h} batch 1, {steps} steps: {:.0} ms/step (steady), total {:.1} s (build {:.1} s), p {:.3} -> {:.3}, peak RSS {:.2} GiB",
        per_step * 1000.0,
        total,
        build,
        e.images[0].initial_scores[0],
        e.images[0].final_scores[0],
        peak_rss_bytes().map(gib).unwrap_or(f64::NAN)
    );
}
