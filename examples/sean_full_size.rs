//! Full-size SEAN presets (random weights): build, encode and generate once, printing the
//! time of each step and the peak memory.
//!
//!     cargo run --release --example sean_full_size [celebamhq|bdd|celeba ...] [--device cpu|wgpu|cuda]

use std::time::Instant;

use burn::tensor::{Distribution, Int, Tensor};
use steex::bench_support::{gib, peak_rss_bytes};
use steex::sean::{NoiseMode, SeanConfig, SeanGenerator};

fn main() {
    let (device, _, presets) = steex::device::from_args_or_exit();
    let presets = if presets.is_empty() { vec!["celebamhq".to_string(), "bdd".to_string()] } else { presets };
    for name in presets {
        let Some(config) = SeanConfig::preset(&name) else {
            eprintln!("unknown preset {name}: expected celeba, celebamhq or bdd");
            std::process::exit(2);
        };
        let (h, w) = config.image_size();
        let t = Instant::now();
        let g = SeanGenerator::random(config.clone(), 0, &device).expect("a valid preset");
        let build = t.elapsed();
        // A mask of horizontal bands over every label, and a random image.
        let l = config.labels as i64;
        let rows = Tensor::<1, Int>::arange(0..h as i64, &device).div_scalar((h as i64 + l - 1) / l);
        let labels = rows.reshape([1, h, 1]).expand([1, h, w]);
        let mask = g.mask(labels).expect("labels in range");
        let image = Tensor::<4>::random([1, 3, h, w], Distribution::Uniform(-1.0, 1.0), &device);
        let t = Instant::now();
        let codes = g.encode(image, &mask).expect("shapes fit");
        let _ = codes.clone().into_data();
        let encode = t.elapsed();
        let t = Instant::now();
        let out = g.generate(&mask, codes, NoiseMode::Seeded(0)).expect("shapes fit");
        let out = out.into_data();
        let generate = t.elapsed();
        let v = out.as_slice::<f32>().expect("f32");
        assert!(v.iter().all(|x| x.is_finite() && x.abs() <= 1.0));
        println!(
            "{name}: {w}x{h}, build {:.2} s, encode {:.2} s, generate {:.2} s, peak RSS {:.2} GiB",
            build.as_secs_f64(),
            encode.as_secs_f64(),
            generate.as_secs_f64(),
            peak_rss_bytes().map(gib).unwrap_or(f64::NAN)
        );
    }
}
