//! Images per hour `steex explain-dir` can reach on this machine: one batch of the celeba
//! (or another) preset with random weights for a few steps, extrapolated to the full run.
//!
//!     cargo run --release --example dataset_throughput [celeba|celebamhq|bdd] [BATCH] [STEPS] [TARGET_STEPS] [--device cpu|wgpu|cuda]
//!
//! A batch's time is encoding and reconstruction, `STEPS` optimisation steps and one final
//! forward; the run to `TARGET_STEPS` (default 100) is extrapolated as the measured time plus
//! `TARGET_STEPS - STEPS` steady steps (the mean of the steps after the first). Writing the
//! result files (a few PNGs and `.npy` arrays per image) is not included.

use std::time::Instant;

use steex::bench_support::random_setup;
use steex::explain::{ExplainSettings, explain};
use steex::sean::ForwardPath;

fn main() {
    let (device, device_arg, args) = steex::device::from_args_or_exit();
    let arg = |i: usize| args.get(i - 1).cloned();
    let preset = arg(1).unwrap_or_else(|| "celeba".into());
    let batch: usize = arg(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let steps: usize = arg(3).and_then(|s| s.parse().ok()).unwrap_or(4).max(2);
    let target: usize = arg(4).and_then(|s| s.parse().ok()).unwrap_or(100);
    let device = device.autodiff();
    let s = random_setup(&preset, batch, ForwardPath::Fast, &device).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let settings = ExplainSettings { attribute: 0, steps, ..Default::default() };
    let mut times = Vec::new();
    let mut last = Instant::now();
    let t = Instant::now();
    explain(&s.generator, &s.classifier, s.images, &s.mask, &settings, &mut |r| {
        times.push(last.elapsed().as_secs_f64());
        last = Instant::now();
        eprintln!("step {}/{}: {:.2} s", r.step, r.steps, times.last().unwrap());
    })
    .expect("explanation");
    let measured = t.elapsed().as_secs_f64();
    let steady = times[1..].iter().sum::<f64>() / (times.len() - 1) as f64;
    let full = measured + (target.saturating_sub(steps)) as f64 * steady;
    println!(
        "{{\"preset\":\"{preset}\",\"batch\":{batch},\"steps_measured\":{steps},\"seconds_measured\":{measured:.2},\"seconds_per_step\":{steady:.3},\"target_steps\":{target},\"seconds_per_batch\":{full:.1},\"seconds_per_image\":{:.1},\"images_per_hour\":{:.1},\"device\":\"{device_arg}\",\"threads\":{}}}",
        full / batch as f64,
        3600.0 * batch as f64 / full,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
}
