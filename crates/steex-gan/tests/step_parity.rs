//! Parity of one whole SEAN GAN iteration (generator step, then discriminator step) with
//! PyTorch, on the fixtures of `tools/make_gan_step_fixtures.py` (`tests/fixtures/gan_step/`,
//! references in float64, the generator's seeded noise replayed): the loss terms to 1e-5
//! relative; the fakes of both forwards, Adam's change of every parameter (generator with its
//! encoder, discriminator) and the parameter after it, and every buffer after the iteration
//! (spectral norm's `u`, `v`, the generator's running statistics) to 1e-4 of the reference's
//! largest magnitude; every gradient to 5e-4. Figures printed (`--nocapture`).

use std::path::PathBuf;

use burn::tensor::{Device, Int, Tensor, TensorData};
use steex_gan::discriminator::MultiscaleDiscriminatorConfig;
use steex_gan::generator_step::{GanTrainer, training_shapes};
use steex_gan::train::{DiscriminatorTrainer, GanLossConfig, GanOptimConfig};
use steex_gan::vgg::Vgg19Config;
use steex_nn::{HostTensors, Weights};
use steex_sean::{NoiseMode, SeanConfig};

const TOL: f32 = 1e-4;
const LOSS_TOL: f32 = 1e-5;
/// Gradients: a bias's at the full 64x64 size sums 8192 float32 products per channel (seen:
/// up to ~1.2e-4 of the largest, on `up_3`'s SPADE biases, against a float64 reference); the
/// updates they drive are held to [`TOL`].
const GRAD_TOL: f32 = 5e-4;

fn fixture(dir: &str, name: &str) -> Weights {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(dir).join(name);
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    Weights::from_safetensors(bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn values(w: &Weights, name: &str) -> Vec<f32> {
    let shape = w.shape(name).unwrap_or_else(|| panic!("fixture lacks {name}"));
    w.values(name, &shape).unwrap()
}

fn host_tensors(w: &Weights) -> HostTensors {
    w.names().into_iter().map(|n| (n.clone(), (w.shape(&n).expect("listed"), values(w, &n)))).collect()
}

/// `max |got - want|` at most `tol * scale + allow`, `scale = max(max |want|, floor)` (an
/// absolute allowance on top of the relative limit); returns `max |got - want| / scale`.
fn compare(what: &str, got: &[f32], want: &[f32], tol: f32, floor: f32, allow: f32) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: {} values, expected {}", got.len(), want.len());
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(floor);
    assert!(scale > 0.0, "{what}: the reference is all zeros");
    let err = got.iter().zip(want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        err <= tol * scale + allow,
        "{what}: max abs err {err:.3e} / scale {scale:.3e} = {:.3e} > {tol:e} (allowance {allow:.1e})",
        err / scale
    );
    err / scale
}

/// `max |got - want| / max(max |want|, floor)`, at most `tol`; returns it.
fn check_floor(what: &str, got: &[f32], want: &[f32], tol: f32, floor: f32) -> f32 {
    compare(what, got, want, tol, floor, 0.0)
}

/// `max |got - want| / max |want|`, at most `tol`; returns it.
fn check(what: &str, got: &[f32], want: &[f32], tol: f32) -> f32 {
    check_floor(what, got, want, tol, 0.0)
}

/// The worst relative error seen per kind of check, printed at the end.
#[derive(Default)]
struct Worst(std::collections::BTreeMap<String, (f32, String)>);

impl Worst {
    fn add(&mut self, kind: &str, name: &str, rel: f32) {
        let e = self.0.entry(kind.to_string()).or_insert((0.0, String::new()));
        if rel >= e.0 {
            *e = (rel, name.to_string());
        }
    }
}

/// The reduced generator of the fixture.
fn sean() -> SeanConfig {
    SeanConfig::new(4, 64).with_ngf(1).with_style_length(8).with_spade_hidden(8).with_encoder_ngf(4)
}

fn discriminator() -> MultiscaleDiscriminatorConfig {
    MultiscaleDiscriminatorConfig::new(4).with_ndf(4).with_n_layers_d(3).with_num_d(2)
}

/// Adam's change against PyTorch's (taken in float64), leaving out the elements where it is
/// ill-conditioned in the gradient (checked through the gradient instead); returns how many
/// were kept and the relative error. With betas (0, 0.9) the first step is
/// `lr * g / (|g| + 1e-8)`: a gradient error `e` moves it by `lr * 1e-8 * e / g^2` (and can
/// flip its sign where `|g| <= e`), so with `e` the largest gradient error seen in the tensor
/// an element is kept where `|g| >= max(10 e, sqrt(1e-8 * e / (TOL / 10)))`.
///
/// `got` is the change as Rust's Adam computes it from its moments, in float64
/// (`-lr * m / (sqrt(v) / sqrt(1 - beta2) + eps)` after one step); `before`/`after` are the
/// float32 parameters, whose difference must agree too, within 2 ulp of the parameter (a
/// change of ~lr on a parameter of magnitude ~1 is resolved to ~1e-7 / 1e-4 in float32).
fn check_delta(
    what: &str,
    got: &[f64],
    want: &[f32],
    [grad, got_grad]: [&[f32]; 2],
    [before, after]: [&[f32]; 2],
) -> (Vec<bool>, f32) {
    let e = grad.iter().zip(got_grad).fold(0.0f64, |m, (a, b)| m.max((a - b).abs() as f64));
    let threshold = (10.0 * e).max((1e-8 * e / (TOL as f64 / 10.0)).sqrt()) as f32;
    // A gradient exactly zero in float64 is structural (a tap that only ever sees padding,
    // a label absent at that scale): the change must be nil, whatever the round-off.
    let keep: Vec<bool> = grad.iter().map(|g| *g == 0.0 || g.abs() >= threshold).collect();
    let scale = want.iter().zip(&keep).filter(|(_, k)| **k).fold(0.0f32, |m, (v, _)| m.max(v.abs()));
    for (i, k) in keep.iter().enumerate() {
        if grad[i] == 0.0 {
            let moved = (after[i] - before[i]).abs().max(got[i].abs() as f32);
            assert!(moved <= TOL * scale, "{what}[{i}]: moved by {moved:e} with a zero gradient");
        } else if *k {
            let stored = after[i] - before[i];
            let bound = TOL * scale + 2.0 * f32::EPSILON * before[i].abs().max(after[i].abs());
            assert!(
                (stored - want[i]).abs() <= bound,
                "{what}[{i}]: stored change {stored:e}, reference {:e}, bound {bound:e}",
                want[i]
            );
        }
    }
    let (g, w): (Vec<f32>, Vec<f32>) =
        got.iter().zip(want).zip(&keep).filter(|(_, k)| **k).map(|((a, b), _)| (*a as f32, *b)).unzip();
    let rel = if !g.is_empty() && w.iter().any(|v| *v != 0.0) { check(what, &g, &w, TOL) } else { 0.0 };
    (keep, rel)
}

#[test]
fn one_gan_iteration_matches_torch() {
    let device = Device::flex().autodiff();
    let g_init = host_tensors(&fixture("gan_step", "g_init.safetensors"));
    let d_init = host_tensors(&fixture("gan_step", "d_init.safetensors"));
    // The fixture's generator holds exactly the training layout.
    let names: Vec<&String> = g_init.keys().collect();
    let layout = training_shapes(&sean());
    assert_eq!(names, layout.keys().collect::<Vec<_>>());
    for (k, (s, _)) in &g_init {
        assert_eq!(s, &layout[k], "{k}");
    }
    let vw = fixture("gan", "vgg.safetensors");
    let vgg = Vgg19Config::new().with_width_divisor(16).load(&vw.root(), &device).unwrap();
    vw.finish().unwrap();
    let optim = GanOptimConfig::new();
    let d = DiscriminatorTrainer::new(discriminator(), &d_init, &optim, &device).unwrap();
    let mut t = GanTrainer::new(sean(), &g_init, d, Some(vgg), GanLossConfig::new(), optim, &device).unwrap();

    let inputs = fixture("gan_step", "inputs.safetensors");
    let real = Tensor::<4>::from_data(TensorData::new(values(&inputs, "real"), [2, 3, 64, 64]), &device);
    let labels: Vec<i64> = values(&inputs, "labels").iter().map(|v| *v as i64).collect();
    let labels = Tensor::<3, Int>::from_data(TensorData::new(labels, [2, 64, 64]), &device);
    let want = fixture("gan_step", "step.safetensors");

    // The fixture replays steex's `seed:9` noise stream.
    let l = t.step(labels, real, NoiseMode::Seeded(9)).unwrap();
    for (name, got) in [
        ("g_gan", l.gan),
        ("g_feat", l.feat),
        ("g_vgg", l.vgg),
        ("g_total", l.gan + l.feat + l.vgg),
        ("d_fake", l.d_fake),
        ("d_real", l.d_real),
    ] {
        let rel = check(name, &[got], &values(&want, name), LOSS_TOL);
        eprintln!("{name}: {got} (relative error {rel:.2e})");
    }
    let mut worst = Worst::default();
    // The generator's outputs in train mode: before its update (the generator step) and
    // after it (regenerated for the discriminator step).
    let (fake, fake2) = t.last_fakes().expect("a step was taken");
    for (name, got) in [("fake", fake), ("fake2", fake2)] {
        let rel = check(name, &steex_nn::host(got), &values(&want, name), TOL);
        eprintln!("{name}: relative error {rel:.2e}");
    }

    for (prefix, after, before, adam, lr) in [
        ("g", t.generator_params().export(), &g_init, t.generator_params().export_adam().0, 0.0001),
        ("d", t.discriminator().params().export(), &d_init, t.discriminator().params().export_adam().0, 0.0004),
    ] {
        let (mut deltas, mut left_out, mut total) = (0, 0, 0);
        let mut zero_in_theory = Vec::new();
        for (name, (_, v)) in &after {
            if steex_nn::params::is_buffer(name) {
                // A running mean takes momentum (0.1) times the batch mean of the regenerated
                // forward, which moves with any bias that its norm cancels (`up_2.conv_1.bias`
                // before `up_3`'s `ace_0` and `ace_s`; the gradient is zero in theory, see
                // below): each side steps such a bias by up to lr in an arbitrary direction,
                // so the two running means may differ by 0.1 * 2 * lr beyond round-off.
                let allow = if name.ends_with("running_mean") { 0.1 * 2.0 * lr as f32 } else { 0.0 };
                let reference = values(&want, &format!("{prefix}.after.{name}"));
                let rel = compare(&format!("{prefix} after {name}"), v, &reference, TOL, 0.0, allow);
                let kind = if name.ends_with("_u") || name.ends_with("_v") { "u, v" } else { "running stats" };
                worst.add(&format!("{prefix} {kind} after"), name, rel);
                continue;
            }
            let delta: Vec<f32> = v.iter().zip(&before[name].1).map(|(a, b)| a - b).collect();
            let (m, sq) = (&adam[&format!("exp_avg.{name}")].1, &adam[&format!("exp_avg_sq.{name}")].1);
            let adam_delta: Vec<f64> = m
                .iter()
                .zip(sq)
                .map(|(m, v)| -lr * *m as f64 / ((*v as f64).sqrt() / (1.0f64 - 0.9).sqrt() + 1e-8))
                .collect();
            let grad_name = format!("{prefix}.grad.{name}");
            if want.shape(&grad_name).is_none() {
                // No gradient in PyTorch (a tensor the loss does not reach): Adam leaves
                // the tensor as it is.
                assert!(delta.iter().all(|d| *d == 0.0), "{prefix} {name} moved without a gradient");
                continue;
            }
            let grad = values(&want, &grad_name);
            // beta1 = 0: the first moment after one step is the gradient.
            let got_grad = &adam[&format!("exp_avg.{name}")].1;
            let grad_scale = grad.iter().fold(0.0f32, |m, g| m.max(g.abs()));
            if grad_scale < 1e-12 {
                // Zero but for float64 round-off: a bias right before a batch norm (every
                // block's `conv_0.bias`, before `ace_1`). Rust's float32 gradient is
                // round-off too; Adam turns both into steps of at most lr (left out below).
                let g_max = got_grad.iter().fold(0.0f32, |m, g| m.max(g.abs()));
                zero_in_theory.push(format!("{name} ({g_max:.0e})"));
                assert!(g_max < 1e-6, "{prefix} grad {name}: {g_max:e}, expected round-off");
                assert!(delta.iter().all(|d| d.abs() <= lr as f32 * 1.001), "{prefix} {name}: a change beyond lr");
                left_out += delta.len();
                total += delta.len();
                continue;
            } else {
                // Relative to 1e-3 at least: a gradient far smaller than the network's
                // (up to ~10 here) is a sum of larger terms that cancel (a blending weight's,
                // over every pixel), whose float32 error scales with the terms, not the sum.
                let rel = check_floor(&format!("{prefix} grad {name}"), got_grad, &grad, GRAD_TOL, 1e-3);
                worst.add(&format!("{prefix} gradient"), name, rel);
            }
            assert!(delta.iter().all(|d| d.abs() <= lr as f32 * 1.001), "{prefix} {name}: a change beyond lr");
            let (keep, rel) = check_delta(
                &format!("{prefix} delta {name}"),
                &adam_delta,
                &values(&want, &format!("{prefix}.delta.{name}")),
                [&grad, got_grad],
                [&before[name].1, v],
            );
            left_out += keep.iter().filter(|k| !**k).count();
            worst.add(&format!("{prefix} Adam change"), name, rel);
            // The parameter after the step, on the well-conditioned elements.
            let (got, reference): (Vec<f32>, Vec<f32>) = before[name]
                .1
                .iter()
                .zip(values(&want, &format!("{prefix}.delta.{name}")))
                .zip(v.iter().zip(&keep))
                .filter(|(_, (_, k))| **k)
                .map(|((b, d), (a, _))| (*a, (*b as f64 + d as f64) as f32))
                .unzip();
            if !got.is_empty() {
                let rel = check(&format!("{prefix} param {name}"), &got, &reference, TOL);
                worst.add(&format!("{prefix} parameter after"), name, rel);
            }
            total += delta.len();
            deltas += 1;
        }
        eprintln!("{prefix}: {deltas} parameters' changes checked, {left_out} of {total} elements left out");
        eprintln!("{prefix}: gradients zero in theory (a bias before a norm): {}", zero_in_theory.join(", "));
        assert!(left_out * 100 < total, "{prefix}: too many ill-conditioned elements");
    }
    for (kind, (rel, name)) in &worst.0 {
        eprintln!("worst {kind}: {rel:.2e} ({name})");
    }
}
