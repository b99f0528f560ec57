//! SEAN generator and encoder against PyTorch (`tools/make_fixtures.py`, our reference
//! modules checked against the published code), loaded through `weights-convert sean`.

mod common;

use common::*;
use steex::io::{Array, LabelMap, read_weights};
use steex::sean::{NoiseMode, SeanGenerator, SemanticMask};
use weights_convert::models::{SeanSize, convert_sean_file};

struct Loaded {
    g: SeanGenerator,
    mask: SemanticMask,
    image: burn::tensor::Tensor<4>,
    _dir: tempfile::TempDir,
}

/// Converts `dir/latest_net_G.pth` to a temporary safetensors file and loads it.
fn load(dir: &str) -> Loaded {
    load_on(dir, &test_device())
}

/// [`load`] onto `device` (the test device with autodiff, for gradients).
fn load_on(dir: &str, device: &burn::tensor::Device) -> Loaded {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(&format!("{dir}/meta.json"))).unwrap()).unwrap();
    let size = SeanSize::Explicit {
        width: meta["width"].as_u64().unwrap() as usize,
        aspect_ratio: meta["aspect_ratio"].as_f64().unwrap(),
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("g.safetensors");
    convert_sean_file(&fixture(&format!("{dir}/latest_net_G.pth")), &size).unwrap().write(&out).unwrap();
    let g = SeanGenerator::from_weights(&read_weights(&out).unwrap(), device).unwrap();
    let labels = LabelMap::read(&fixture(&format!("{dir}/mask.png"))).unwrap();
    let mask = g.mask(labels.to_tensor(device)).unwrap();
    let image = npy(&format!("{dir}/image.npy")).to_tensor::<4>(device);
    Loaded { g, mask, image, _dir: tmp }
}

/// Checks encode, generate and reconstruct against PyTorch; returns the mean pixel change
/// between the reconstruction and the image of `z_custom`.
fn check_model(dir: &str) -> f64 {
    let m = load(dir);
    let device = test_device();
    let codes = Array::from_tensor(m.g.encode(m.image.clone(), &m.mask).unwrap());
    let want = npy(&format!("{dir}/codes.npy"));
    assert_signal(&want, "reference codes");
    let e_codes = max_abs_diff(&codes, &want);
    assert!(e_codes <= 1e-4, "{dir}: codes max abs err {e_codes}");

    let z = npy(&format!("{dir}/z_custom.npy"));
    let img = Array::from_tensor(m.g.generate(&m.mask, z.to_tensor::<3>(&device), NoiseMode::Off).unwrap());
    let want = npy(&format!("{dir}/gen_nonoise.npy"));
    assert_signal(&want, "reference image");
    let e_img = max_abs_diff(&img, &want);
    assert!(e_img <= 5e-4, "{dir}: image max abs err {e_img}");

    let recon = Array::from_tensor(m.g.generate(&m.mask, codes.to_tensor::<3>(&device), NoiseMode::Off).unwrap());
    let e_recon = max_abs_diff(&recon, &npy(&format!("{dir}/recon_nonoise.npy")));
    assert!(e_recon <= 5e-4, "{dir}: reconstruction max abs err {e_recon}");
    // How far the image moves between the codes and z_custom (codes + 0.3 N(0, 1)), ours and
    // PyTorch's (meta.json): far more than the tolerances above where the fixture's style
    // path was strengthened, so that a wrong style path cannot pass.
    let moved =
        img.data.iter().zip(&recon.data).map(|(a, b)| (a - b).abs() as f64).sum::<f64>() / img.data.len() as f64;
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(&format!("{dir}/meta.json"))).unwrap()).unwrap();
    if let Some(want) = meta["code_response"].as_f64() {
        assert!((moved - want).abs() < 1e-3, "{dir}: code response {moved} vs PyTorch {want}");
    }
    eprintln!(
        "{dir}: codes {e_codes:.2e}, generated {e_img:.2e}, reconstruction {e_recon:.2e}; image moved {moved:.4}"
    );
    moved
}

#[test]
fn square_model_with_19_labels_matches_pytorch() {
    let _ = check_model("sean_sq");
}

#[test]
fn wide_model_with_20_labels_matches_pytorch() {
    let moved = check_model("sean_wide");
    // 100 x the image tolerance (5e-4): the strengthened style path (tools/make_fixtures.py).
    assert!(moved >= 0.05, "sean_wide: the image moves by {moved} with its codes, expected >= 0.05");
}

#[test]
fn absent_labels_give_zero_codes() {
    let m = load("sean_sq");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("sean_sq/meta.json")).unwrap()).unwrap();
    let present: Vec<usize> =
        meta["present_labels"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let codes = Array::from_tensor(m.g.encode(m.image, &m.mask).unwrap());
    let s = codes.shape[2];
    let absent: Vec<usize> = (0..19).filter(|j| !present.contains(j)).collect();
    assert!(absent.len() >= 5, "the fixture should leave several labels absent");
    for j in 0..19 {
        let row = &codes.data[j * s..(j + 1) * s];
        let zero = row.iter().all(|&v| v == 0.0);
        assert_eq!(zero, absent.contains(&j), "label {j}: zero row {zero}");
    }
}

#[test]
fn seeded_noise_is_reproducible_and_reference_noise_matches_its_scale() {
    let m = load("sean_sq");
    let device = test_device();
    let z = npy("sean_sq/z_custom.npy").to_tensor::<3>(&device);
    let run = |mode| Array::from_tensor(m.g.generate(&m.mask, z.clone(), mode).unwrap());
    let a = run(NoiseMode::Seeded(3));
    assert_eq!(a, run(NoiseMode::Seeded(3)), "same seed, different images");
    let mean_abs = |x: &Array, y: &Array| {
        x.data.iter().zip(&y.data).map(|(p, q)| (p - q).abs() as f64).sum::<f64>() / x.data.len() as f64
    };
    assert!(mean_abs(&a, &run(NoiseMode::Seeded(4))) > 1e-3, "different seeds give the same image");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("sean_sq/meta.json")).unwrap()).unwrap();
    let want = meta["noisy_pair_mean_abs_diff"].as_f64().unwrap();
    let got = mean_abs(&run(NoiseMode::Reference), &run(NoiseMode::Reference));
    assert!(got > 0.5 * want && got < 2.0 * want, "reference noise: pair diff {got}, PyTorch {want}");
    eprintln!("noisy pair mean abs diff: ours {got:.4}, PyTorch {want:.4}");
}

#[test]
fn bad_masks_and_codes_are_refused() {
    let m = load("sean_sq");
    let device = test_device();
    // A label id >= L (not 255).
    let mut labels = LabelMap::read(&fixture("sean_sq/mask.png")).unwrap();
    labels.labels[5] = 19;
    let e = m.g.mask(labels.to_tensor(&device)).unwrap_err().to_string();
    assert!(e.contains("label id 19"), "{e}");
    // 255 is unknown: mapped to L - 1.
    labels.labels[5] = 255;
    let sm = m.g.mask(labels.to_tensor(&device)).unwrap();
    let v = sm.labels().into_data().convert::<i64>().try_to_vec::<i64>().unwrap();
    assert_eq!(v[5], 18);
    // Codes of the wrong shape.
    let z = burn::tensor::Tensor::<3>::zeros([1, 18, 24], &device);
    let e = m.g.generate(&m.mask, z, NoiseMode::Off).unwrap_err().to_string();
    assert!(e.contains("[1, 19, 24]"), "{e}");
}

#[test]
fn fast_and_plain_paths_agree() {
    use steex::sean::ForwardPath;
    let m = load("sean_wide");
    let device = test_device();
    let z = npy("sean_wide/z_custom.npy").to_tensor::<3>(&device);
    assert_eq!(m.g.path(), ForwardPath::Fast, "the fast path is the default");
    let fast = Array::from_tensor(m.g.generate(&m.mask, z.clone(), NoiseMode::Seeded(5)).unwrap());
    let plain_g = m.g.clone().with_path(ForwardPath::Plain);
    let plain = Array::from_tensor(plain_g.generate(&m.mask, z, NoiseMode::Seeded(5)).unwrap());
    let err = max_abs_diff(&fast, &plain);
    assert!(err <= 1e-5, "fast vs plain: {err}");
    // A mask prepared by another generator is not trusted: the cache is recomputed.
    let other = load("sean_wide");
    let again = Array::from_tensor(
        m.g.generate(&other.mask, npy("sean_wide/z_custom.npy").to_tensor::<3>(&device), NoiseMode::Seeded(5)).unwrap(),
    );
    assert!(max_abs_diff(&again, &fast) <= 1e-6);
}

/// The fast path's gradient to the style codes equals the plain path's, on a mask some of
/// whose labels vanish at the coarse sizes (the fast path leaves those labels out of the
/// style products there; their codes get no gradient from those layers either way).
#[test]
fn fast_and_plain_gradients_agree() {
    use burn::tensor::{Distribution, Tensor};
    use steex::sean::ForwardPath;
    let device = test_device().autodiff();
    let m = load_on("sean_wide", &device);
    let labels = m.g.config().labels;
    let coarse = m.mask.neighbourhoods(0).labels.len();
    assert!(coarse < labels, "the mask keeps all {labels} labels at the coarsest size: the test needs fewer");
    let z0 = npy("sean_wide/z_custom.npy").to_tensor::<3>(&device);
    let [_, _, h, w] = m.image.dims();
    let r = Tensor::<4>::random([1, 3, h, w], Distribution::Normal(0.0, 1.0), &device);
    let grad = |g: &SeanGenerator| {
        let z = z0.clone().require_grad();
        let img = g.generate(&m.mask, z.clone(), NoiseMode::Seeded(5)).unwrap();
        let grads = (img * r.clone()).sum().backward();
        Array::from_tensor(z.grad(&grads).expect("a gradient to the codes"))
    };
    let fast = grad(&m.g);
    let plain = grad(&m.g.clone().with_path(ForwardPath::Plain));
    assert_signal(&plain, "gradient to the codes");
    let scale = plain.data.iter().fold(0f32, |a, v| a.max(v.abs()));
    let err = max_abs_diff(&fast, &plain);
    assert!(err <= 1e-4 * scale, "fast vs plain gradient: {err} at scale {scale}");
}

#[test]
fn folded_and_direct_style_convolutions_agree() {
    use burn::tensor::{Distribution, Tensor};
    use steex::sean::ace::StyleBranch;
    let m = load("sean_sq");
    let device = test_device();
    let st = m.g.up_1.ace_0.style.as_ref().unwrap();
    let onehot = m.mask.at_scale(3);
    let [b, l, _, _] = onehot.dims();
    let v = Tensor::<3>::random([b, l, 24], Distribution::Normal(0.0, 1.0), &device);
    let map = StyleBranch::style_map(v.clone(), onehot.clone());
    let c = st.conv_gamma().weight.dims()[0];
    let direct = Tensor::cat(vec![st.conv_gamma().forward(map.clone()), st.conv_beta().forward(map)], 1);
    let bias = Tensor::cat(vec![st.conv_gamma_bias.val(), st.conv_beta_bias.val()], 0);
    let direct = Array::from_tensor(direct - bias.reshape([1, 2 * c, 1, 1]));
    let folded = Array::from_tensor(st.style_convs_folded(v, onehot));
    assert_signal(&direct, "style convolution");
    assert!(max_abs_diff(&direct, &folded) <= 1e-5, "folded {}", max_abs_diff(&direct, &folded));
}
