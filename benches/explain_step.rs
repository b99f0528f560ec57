//! Explanation speed: ms per optimisation step and peak memory, per preset, batch size and
//! generator path (plain = the published computation, fast = the default), with random
//! weights. Prints one JSON line per configuration on stdout.
//!
//!     cargo bench --bench explain_step                      # the CPU grid
//!     cargo bench --bench explain_step -- celeba 8 fast 3   # one configuration
//!     STEEX_BENCH_GRID=full cargo bench --bench explain_step  # every preset x batch x path
//!     cargo bench --features wgpu --bench explain_step -- --device wgpu celeba 1 fast 6
//!
//! `--device cpu|wgpu|cuda` (default cpu) chooses the backend. Each configuration runs in its
//! own process so that its peak memory is its own; on a GPU, `device_reserved_gib` is what
//! burn's memory pools hold at the end (their high-water mark: pages are kept for reuse).

use std::process::Command;
use std::time::Instant;

use steex::bench_support::{device_reserved_gib, gib, peak_rss_bytes, random_setup};
use steex::device::{DeviceArg, select, take_device_arg};
use steex::explain::{ExplainSettings, explain};
use steex::sean::ForwardPath;

fn one(arg: DeviceArg, preset: &str, batch: usize, path: ForwardPath, steps: usize) {
    let device = select(arg).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2)
    });
    let device = device.autodiff();
    let s = random_setup(preset, batch, path, &device).expect("valid configuration");
    let settings = ExplainSettings { attribute: 0, steps, ..Default::default() };
    let mut times = Vec::new();
    let mut last = Instant::now();
    explain(&s.generator, &s.classifier, s.images, &s.mask, &settings, &mut |_| {
        times.push(last.elapsed().as_secs_f64());
        last = Instant::now();
    })
    .expect("explanation");
    if std::env::var_os("STEEX_PROFILE").is_some() {
        let (f, b) = steex::nn::conv3x3::kernel_seconds();
        eprintln!(
            "conv3x3 kernel: forward {:.0} ms, input gradient {:.0} ms in total over {} forwards",
            f * 1e3,
            b * 1e3,
            times.len()
        );
    }
    // The first step also encodes and reconstructs: report the steady steps' median (which
    // a stray interruption of the machine does not move; tools/bench_reference.py reports
    // the same for the published loop), and their mean.
    let mut steady = if times.len() > 1 { times[1..].to_vec() } else { times.clone() };
    steady.sort_by(f64::total_cmp);
    let n = steady.len();
    let ms = 1000.0 * (steady[(n - 1) / 2] + steady[n / 2]) / 2.0;
    let mean = 1000.0 * steady.iter().sum::<f64>() / n as f64;
    let step_ms: Vec<String> = times.iter().map(|t| format!("{:.1}", t * 1e3)).collect();
    println!(
        "{{\"impl\":\"steex-rs\",\"preset\":\"{preset}\",\"batch\":{batch},\"path\":\"{}\",\"steps\":{steps},\"step_ms\":[{}],\"ms_per_step\":{ms:.1},\"ms_per_step_mean\":{mean:.1},\"ms_per_step_per_image\":{:.1},\"peak_rss_gib\":{:.3},\"device_reserved_gib\":{},\"device\":\"{arg}\",\"adapter\":{:?},\"threads\":{}}}",
        if path == ForwardPath::Fast { "fast" } else { "plain" },
        step_ms.join(","),
        ms / batch as f64,
        peak_rss_bytes().map(gib).unwrap_or(f64::NAN),
        device_reserved_gib(&device).map_or("null".into(), |g| format!("{g:.3}")),
        steex::device::describe(&device),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
}

fn main() {
    steex::alloc::tune_allocator();
    let (arg, args) = take_device_arg(std::env::args().skip(1).collect()).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2)
    });
    // `cargo bench` passes `--bench`.
    let args: Vec<String> = args.into_iter().filter(|a| !a.starts_with("--")).collect();
    if args.len() >= 3 {
        let path = if args[2] == "plain" { ForwardPath::Plain } else { ForwardPath::Fast };
        let steps = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
        let Ok(batch) = args[1].parse() else {
            eprintln!("error: batch size `{}` is not a number", args[1]);
            std::process::exit(2)
        };
        one(arg, &args[0], batch, path, steps);
        return;
    }
    let full = std::env::var("STEEX_BENCH_GRID").is_ok_and(|v| v == "full");
    let mut grid = vec![
        ("celeba", 1, "fast"),
        ("celebamhq", 1, "fast"),
        ("bdd", 1, "fast"),
        ("celeba", 8, "fast"),
        ("celeba", 1, "plain"),
        ("celebamhq", 1, "plain"),
    ];
    if full {
        grid = ["celeba", "celebamhq", "bdd"]
            .into_iter()
            .flat_map(|p| [1, 8].into_iter().flat_map(move |b| ["fast", "plain"].into_iter().map(move |m| (p, b, m))))
            .collect();
    }
    let exe = std::env::current_exe().expect("own path");
    for (p, b, m) in grid {
        let status = Command::new(&exe)
            .args(["--device", arg.name(), p, &b.to_string(), m, "3"])
            .status()
            .expect("run a configuration");
        if !status.success() {
            eprintln!("{p} batch {b} {m}: failed");
        }
    }
}
