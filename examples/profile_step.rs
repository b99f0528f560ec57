//! Where an explanation step's time goes: the generator's forward and backward to the style
//! codes, and the decision model's forward and backward to the image, timed separately
//! (random weights).
//!
//!     cargo run --release --example profile_step [celeba|celebamhq|bdd] [plain|fast] [--device cpu|wgpu|cuda]

use std::time::Instant;

use burn::tensor::{Distribution, Tensor};
use steex::bench_support::random_setup;
use steex::classifier::DecisionModel;
use steex::sean::{ForwardPath, NoiseMode};

fn main() {
    steex::alloc::tune_allocator();
    let (device, _, args) = steex::device::from_args_or_exit();
    let preset = args.first().cloned().unwrap_or_else(|| "celeba".into());
    let path = if args.get(1).map(String::as_str) == Some("plain") { ForwardPath::Plain } else { ForwardPath::Fast };
    let device = device.autodiff();
    let s = random_setup(&preset, 1, path, &device).expect("valid preset");
    let c = s.generator.config().clone();
    let z0 = Tensor::<3>::random([1, c.labels, c.style_length], Distribution::Normal(0.0, 0.3), &device);
    let (h, w) = c.image_size();
    for round in 0..3 {
        let t = Instant::now();
        let z = z0.clone().require_grad();
        let img = s.generator.generate(&s.mask, z.clone(), NoiseMode::Seeded(0)).expect("fits");
        let _ = img.clone().into_data();
        let g_fwd = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let grads = img.sum().backward();
        let _ = z.grad(&grads).expect("gradient").into_data();
        let g_bwd = t.elapsed().as_secs_f64();
        let x = Tensor::<4>::random([1, 3, h, w], Distribution::Uniform(-1.0, 1.0), &device).require_grad();
        let t = Instant::now();
        let l = s.classifier.logits(x.clone());
        let _ = l.clone().into_data();
        let c_fwd = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let grads = l.sum().backward();
        let _ = x.grad(&grads).expect("gradient").into_data();
        let c_bwd = t.elapsed().as_secs_f64();
        println!(
            "{preset} {path:?} round {round}: generator forward {:.0} ms, backward {:.0} ms; classifier forward {:.0} ms, backward {:.0} ms",
            g_fwd * 1e3,
            g_bwd * 1e3,
            c_fwd * 1e3,
            c_bwd * 1e3
        );
    }
}
