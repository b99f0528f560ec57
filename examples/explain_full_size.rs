//! A full-size explanation with random weights: SEAN at a published preset and DenseNet121, a
//! few Adam steps, printing the time per step and the peak memory.
//!
//!     cargo run --release --example explain_full_size [celebamhq|celeba|bdd] [STEPS] [plain|fast] [--device cpu|wgpu|cuda]

use std::time::Instant;

use steex::bench_support::{gib, peak_rss_bytes, random_setup};
use steex::explain::{ExplainSettings, explain};
use steex::sean::ForwardPath;

fn main() {
    let (device, _, args) = steex::device::from_args_or_exit();
    let preset = args.first().cloned().unwrap_or_else(|| "celebamhq".into());
    let steps: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    let path = if args.get(2).map(String::as_str) == Some("plain") { ForwardPath::Plain } else { ForwardPath::Fast };
    let device = device.autodiff();
    let t = Instant::now();
    let s = random_setup(&preset, 1, path, &device).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let build = t.elapsed().as_secs_f64();
    let settings = ExplainSettings { attribute: 0, steps, ..Default::default() };
    let mut times = Vec::new();
    let mut last = Instant::now();
    let t = Instant::now();
    let e = explain(&s.generator, &s.classifier, s.images, &s.mask, &settings, &mut |r| {
        times.push(last.elapsed().as_secs_f64());
        last = Instant::now();
        eprintln!("step {}/{}: {:.2} s", r.step, r.steps, times.last().unwrap());
    })
    .expect("explanation");
    let total = t.elapsed().as_secs_f64();
    // The first report also includes encoding and the reconstruction.
    let per_step = if times.len() > 1 { times[1..].iter().sum::<f64>() / (times.len() - 1) as f64 } else { times[0] };
    println!(
        "{preset} batch 1, {path:?} path, {steps} steps: {:.0} ms/step (steady), total {:.1} s (build {:.1} s), p {:.3} -> {:.3}, peak RSS {:.2} GiB",
        per_step * 1000.0,
        total,
        build,
        e.images[0].initial_scores[0],
        e.images[0].final_scores[0],
        peak_rss_bytes().map(gib).unwrap_or(f64::NAN)
    );
}
