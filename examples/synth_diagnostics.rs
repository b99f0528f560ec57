//! Where the synthetic world's explanations put their change: per region, the share of the
//! pixel change and how far the codes moved; the decision model's gradient per region at the
//! query's codes; how much of a lamp-only change leaks out of the lamp.
//!
//!     cargo run --release --example synth_diagnostics -- [--models DIR] [--scenes N]
//!         [--lr X] [--eps X] [--steps N] [--lambda X] [--early-stop K]
//!
//! The settings default to the demo's (`steex::demo::DemoOptions::default()`).

use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use steex::classifier::DecisionModel;
use steex::demo::DemoOptions;
use steex::explain::explain;
use steex::sean::NoiseMode;
use steex::synth::scene::{HEIGHT, HELD_OUT_SEED, LAMP, REGIONS, WIDTH, scene};

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    steex::io::host(t)
}

/// Per pixel of a scene: 0 in the lamp, 1 outside it but within 2 px of it (the ring), 2
/// elsewhere.
fn zones(sc: &steex::synth::Scene) -> Vec<u8> {
    let is_lamp = |y: i64, x: i64| {
        (0..HEIGHT as i64).contains(&y)
            && (0..WIDTH as i64).contains(&x)
            && sc.labels[y as usize * WIDTH + x as usize] as usize == LAMP
    };
    (0..HEIGHT * WIDTH)
        .map(|p| {
            let (y, x) = ((p / WIDTH) as i64, (p % WIDTH) as i64);
            if is_lamp(y, x) {
                0
            } else if (-2..=2).any(|dy| (-2..=2).any(|dx| is_lamp(y + dy, x + dx))) {
                1
            } else {
                2
            }
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |f: &str| args.iter().position(|a| a == f).and_then(|i| args.get(i + 1)).cloned();
    let num = |f: &str, d: f64| flag(f).and_then(|s| s.parse().ok()).unwrap_or(d);
    let dir = PathBuf::from(flag("--models").unwrap_or_else(|| "assets/synthetic".into()));
    let n = num("--scenes", 25.0) as usize;
    let device = Device::flex().autodiff();
    let g = steex::io::load_generator(&dir.join("generator.safetensors"), &device)?;
    let c = steex::io::load_classifier(&dir.join("classifier.safetensors"), &device)?;
    let scenes: Vec<_> = (0..n as u64).map(|i| scene(HELD_OUT_SEED + i)).collect();
    let px = HEIGHT * WIDTH;
    let zone: Vec<Vec<u8>> = scenes.iter().map(zones).collect();
    let lens: Vec<Vec<bool>> = scenes.iter().map(|s| s.lens()).collect();
    let batch = steex::synth::batch_of(&scenes, &device);
    let images = batch.images;
    let mask = g.mask(batch.labels)?;
    let z0 = g.encode(images.clone(), &mask)?.detach();
    let [_, l, s] = z0.dims();
    let z = z0.clone().require_grad();
    let rec = g.generate(&mask, z.clone(), NoiseMode::Off)?;
    let logits = c.logits(rec.clone());
    let lh = host(logits.clone().detach());
    let real = host(c.logits(images.clone().detach()));
    let grads = logits.sum().backward();
    let gz = host(z.grad(&grads).ok_or("no gradient")?);
    let (mut acc_real, mut acc_rec) = (0, 0);
    let mut gnorm = vec![0f64; l];
    for i in 0..n {
        acc_real += ((real[i] > 0.0) == scenes[i].stop) as usize;
        acc_rec += ((lh[i] > 0.0) == scenes[i].stop) as usize;
        for j in 0..l {
            let r = &gz[(i * l + j) * s..(i * l + j + 1) * s];
            gnorm[j] += r.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt() / n as f64;
        }
    }
    // The decision model's own gradient, on the reconstructions: share inside the lamp.
    let x = rec.clone().detach().require_grad();
    let gx = host(x.grad(&c.logits(x.clone()).sum().backward()).ok_or("no gradient")?);
    let mut inside = 0f64;
    for (i, sc) in scenes.iter().enumerate() {
        let (mut a, mut t) = (0f64, 0f64);
        for ch in 0..3 {
            for p in 0..px {
                let v = gx[(i * 3 + ch) * px + p].abs() as f64;
                t += v;
                if sc.labels[p] as usize == LAMP {
                    a += v;
                }
            }
        }
        inside += a / t.max(1e-30) / n as f64;
    }
    println!("share of |d logit / d pixel| inside the lamp: {inside:.3}");
    // Where each region's code gradient comes from: the decision model's pixel gradient kept
    // on one set of pixels (lamp, 2-px ring around it, the rest), through the generator.
    for (name, keep) in [("lamp", 0), ("ring", 1), ("rest", 2)] {
        let m: Vec<f32> = zone
            .iter()
            .flat_map(|z| {
                let v: Vec<f32> = z.iter().map(|&k| (k == keep) as u8 as f32).collect();
                [v.clone(), v.clone(), v].concat()
            })
            .collect();
        let w = Tensor::<4>::from_data(
            TensorData::new(gx.iter().zip(&m).map(|(a, b)| a * b).collect::<Vec<f32>>(), [n, 3, HEIGHT, WIDTH]),
            &device,
        );
        let z = z0.clone().require_grad();
        let img = g.generate(&mask, z.clone(), NoiseMode::Off)?;
        let gz = host(z.grad(&(img * w).sum().backward()).ok_or("no gradient")?);
        let mut line = format!("  code gradient through {name:<5}:");
        for j in 0..l {
            let mut t = 0f64;
            for i in 0..n {
                t += gz[(i * l + j) * s..(i * l + j + 1) * s].iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt()
                    / n as f64;
            }
            line += &format!(" {}={t:.3}", REGIONS[j]);
        }
        println!("{line}");
    }
    let rec_h = host(rec.detach());
    let real_h = host(images.clone());
    let mae = rec_h.iter().zip(&real_h).map(|(a, b)| (a - b).abs() as f64).sum::<f64>() / rec_h.len() as f64;
    println!(
        "accuracy real {:.3}, on reconstructions {:.3}; reconstruction MAE {mae:.4}",
        acc_real as f64 / n as f64,
        acc_rec as f64 / n as f64
    );
    println!("mean |d logit / d z_region| at z0:");
    for j in 0..l {
        println!("  {:<10} {:.3e}", REGIONS[j], gnorm[j]);
    }
    // Code scale.
    let z0h = host(z0.clone());
    for j in 0..l {
        let mut lo = f32::MAX;
        let mut hi = f32::MIN;
        for i in 0..n {
            for v in &z0h[(i * l + j) * s..(i * l + j + 1) * s] {
                lo = lo.min(*v);
                hi = hi.max(*v);
            }
        }
        println!("  code range {:<10} [{lo:.2}, {hi:.2}]", REGIONS[j]);
    }

    // Defaults: the demo's settings (early stop 0: off).
    let d = DemoOptions::default();
    let options = DemoOptions {
        steps: num("--steps", d.steps as f64) as usize,
        lr: num("--lr", d.lr),
        adam_eps: num("--eps", d.adam_eps),
        lambda_prox: num("--lambda", d.lambda_prox),
        early_stop: num("--early-stop", d.early_stop as f64) as usize,
        ..d
    };
    for (name, regions) in
        [("general", None), ("lamp only", Some(vec![LAMP])), ("all but lamp", Some((0..LAMP).collect()))]
    {
        let t = std::time::Instant::now();
        let e = explain(&g, &c, images.clone(), &mask, &options.explain_settings(regions), &mut |_| {})?;
        let secs = t.elapsed().as_secs_f64();
        let cf = host(e.counterfactual.clone());
        let rc = host(e.reconstruction.clone());
        let mut share = vec![0f64; l + 1]; // per region, plus ring around the lamp
        let mut dz = vec![0f64; l];
        let mut ok = 0;
        let mut steps = 0;
        let mut fr = 0f64;
        let mut lens_share = 0f64;
        for (i, sc) in scenes.iter().enumerate() {
            let r = &e.images[i];
            steps += r.steps_run;
            if !r.success {
                if std::env::var("SHOW_FAILURES").is_ok() {
                    println!(
                        "    failed: scene {i} stop={} score {:.3} -> {:.3} ({} steps)",
                        sc.stop, r.initial_scores[0], r.final_scores[0], r.steps_run
                    );
                }
                continue;
            }
            ok += 1;
            let mut per = vec![0f64; l + 1];
            let mut tot = 0f64;
            for ch in 0..3 {
                for p in 0..px {
                    let d = (cf[(i * 3 + ch) * px + p] - rc[(i * 3 + ch) * px + p]).abs() as f64;
                    per[sc.labels[p] as usize] += d;
                    tot += d;
                }
            }
            // Ring: non-lamp pixels within 2 px of the lamp.
            for p in 0..px {
                if zone[i][p] == 1 {
                    for ch in 0..3 {
                        per[l] += (cf[(i * 3 + ch) * px + p] - rc[(i * 3 + ch) * px + p]).abs() as f64;
                    }
                }
            }
            let mut in_lens = 0f64;
            for p in (0..px).filter(|&p| lens[i][p]) {
                for ch in 0..3 {
                    in_lens += (cf[(i * 3 + ch) * px + p] - rc[(i * 3 + ch) * px + p]).abs() as f64;
                }
            }
            if tot > 0.0 {
                for k in 0..=l {
                    share[k] += per[k] / tot;
                }
                fr += per[LAMP] / tot;
                lens_share += in_lens / tot;
            }
            for (j, d) in dz.iter_mut().enumerate() {
                let a = &e.z_initial[(i * l + j) * s..(i * l + j + 1) * s];
                let b = &e.z_final[(i * l + j) * s..(i * l + j + 1) * s];
                *d += a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>().sqrt();
            }
        }
        let k = ok.max(1) as f64;
        println!(
            "{name}: success {ok}/{n}, mean steps {:.1}, lamp share {:.3} (lens {:.3}), {:.2} s/explanation",
            steps as f64 / n as f64,
            fr / k,
            lens_share / k,
            secs / n as f64
        );
        for j in 0..l {
            println!("  {:<10} pixel share {:.3}  |dz| {:.3}", REGIONS[j], share[j] / k, dz[j] / k);
        }
        println!("  ring(2px)  pixel share {:.3}", share[l] / k);
    }
    Ok(())
}
