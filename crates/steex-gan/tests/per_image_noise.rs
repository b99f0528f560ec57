//! The noise `steex train generator` draws (`NoiseMode::SeededPerImage`: one map per image,
//! as SEAN's `randn(B, ...)`) against PyTorch replaying the same stream one map per image
//! (`tools/make_gan_step_fixtures.py --per-image-noise`, `NoiseReplay(per_image=True)`): the
//! reduced generator of the step fixture in train mode on its batch of two, to 1e-4 of the
//! reference's largest magnitude. The shared maps of
//! `NoiseMode::Seeded` give another image (the fixture tells the two apart), and a batch
//! of one draws the same under both modes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::{Device, Int, Tensor, TensorData};
use steex_gan::generator_step::resolve;
use steex_nn::{TrainMode, Weights};
use steex_sean::{ForwardPath, NoiseMode, SeanConfig, SeanGenerator};

fn fixture(name: &str) -> Weights {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/gan_step").join(name);
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    Weights::from_safetensors(bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn values(w: &Weights, name: &str) -> Vec<f32> {
    let shape = w.shape(name).unwrap_or_else(|| panic!("fixture lacks {name}"));
    w.values(name, &shape).unwrap()
}

/// The step fixture's reduced generator as a train-mode forward builds it (spectral norm
/// resolved after one power iteration), on the plain (published) path.
fn generator(device: &Device) -> SeanGenerator {
    let w = fixture("g_init.safetensors");
    let tensors: BTreeMap<String, (Vec<usize>, Tensor<1>)> = w
        .names()
        .into_iter()
        .map(|n| {
            let v = values(&w, &n);
            let len = v.len();
            (n.clone(), (w.shape(&n).unwrap(), Tensor::from_data(TensorData::new(v, [len]), device)))
        })
        .collect();
    let (resolved, _) = resolve(&tensors, true).unwrap();
    let sean = SeanConfig::new(4, 64).with_ngf(1).with_style_length(8).with_spade_hidden(8).with_encoder_ngf(4);
    let g = SeanGenerator::load(&Weights::from_tensors(resolved, &sean.to_metadata()).unwrap(), sean, device);
    g.unwrap().with_path(ForwardPath::Plain)
}

/// `max |a - b|` over `max |b|`.
fn rel(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[test]
fn per_image_noise_matches_the_reference_replay_for_a_batch_of_two() {
    let device = Device::flex().autodiff();
    let g = generator(&device);
    let inputs = fixture("inputs.safetensors");
    let real = Tensor::<4>::from_data(TensorData::new(values(&inputs, "real"), [2, 3, 64, 64]), &device);
    let labels: Vec<i64> = values(&inputs, "labels").iter().map(|v| *v as i64).collect();
    let labels = Tensor::<3, Int>::from_data(TensorData::new(labels, [2, 64, 64]), &device);
    let want = values(&fixture("per_image_noise.safetensors"), "fake");
    // In train mode (batch statistics), as the step's first forward; in eval mode this
    // reduced generator saturates.
    let run = |labels: Tensor<3, Int>, real: Tensor<4>, noise| -> Vec<f32> {
        let mode = TrainMode::begin();
        let mask = g.mask(labels).unwrap();
        let codes = g.encode(real, &mask).unwrap();
        let out = steex_nn::host(g.generate(&mask, codes, noise).unwrap());
        mode.finish();
        out
    };
    let got = run(labels.clone(), real.clone(), NoiseMode::SeededPerImage(9));
    let r = rel(&got, &want);
    eprintln!("per-image noise against the reference replay: {r:.2e}");
    assert!(r <= 1e-4, "{r:e}");
    // The maps one image's worth apart: the second image differs, far beyond the tolerance.
    let shared = run(labels.clone(), real.clone(), NoiseMode::Seeded(9));
    let n = want.len() / 2;
    let r = rel(&shared[n..], &want[n..]);
    eprintln!("shared maps against the per-image reference, second image: {r:.2e}");
    assert!(r > 1e-2, "shared maps reproduce the per-image reference ({r:e})");
    // A batch of one: the same image under both modes, bit for bit.
    let (l1, r1) = (labels.narrow(0, 0, 1), real.narrow(0, 0, 1));
    assert_eq!(run(l1.clone(), r1.clone(), NoiseMode::SeededPerImage(9)), run(l1, r1, NoiseMode::Seeded(9)));
}
