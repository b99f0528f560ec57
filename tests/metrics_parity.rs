//! `steex metrics`' models and formulas against PyTorch and pytorch-fid
//! (`tools/make_metrics_fixtures.py`): the Frechet distance on Gaussian features, the FID
//! Inception's features and FID on images, the face embedder (FVA) and the oracle (MNAC).

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use steex::inception::FidInception;
use steex::io::{Array, read_image_native, read_weights};
use steex::metrics;
use steex::metrics::models::{FaceEmbedder, INPUT_SIZE, Oracle, face_input};
use weights_convert::Checkpoint;
use weights_convert::metrics_models::{convert_face, convert_inception, convert_oracle};

fn json(rel: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixture(rel)).unwrap()).unwrap()
}

/// max |a - b| / max |b|.
fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, &v| m.max(v.abs() as f64));
    assert!(scale > 0.0);
    got.iter().zip(want).fold(0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs())) / scale
}

fn load(
    convert: fn(&Checkpoint) -> weights_convert::Result<weights_convert::Converted>,
    path: &std::path::Path,
    dir: &std::path::Path,
) -> steex::nn::Weights {
    let out = dir.join("w.safetensors");
    convert(&Checkpoint::open(path).unwrap()).unwrap().write(&out).unwrap();
    read_weights(&out).unwrap()
}

#[test]
fn frechet_distance_matches_pytorch_fid() {
    let a = npy("metrics/frechet_a.npy");
    let b = npy("metrics/frechet_b.npy");
    let want = json("metrics/frechet.json")["fid"].as_f64().unwrap();
    let got = metrics::fid_from_features(&a.data, &b.data, a.shape[1]).unwrap();
    let rel = (got - want).abs() / want.abs();
    eprintln!("Frechet distance: ours {got:.10}, pytorch-fid {want:.10}, relative error {rel:.2e}");
    assert!(rel < 1e-3, "relative error {rel}");
    // The argument order and the second set matter: FID(b, a), and FID(a, c) with `c` another
    // set (other mean and covariance), each against pytorch-fid's own value.
    let c = npy("metrics/frechet_c.npy");
    let d = a.shape[1];
    let meta = json("metrics/frechet.json");
    for (x, y, key) in [(&b, &a, "fid_ba"), (&a, &c, "fid_ac")] {
        let want = meta[key].as_f64().unwrap();
        let got = metrics::fid_from_features(&x.data, &y.data, d).unwrap();
        let rel = (got - want).abs() / want.abs();
        eprintln!("{key}: ours {got:.10}, pytorch-fid {want:.10}, relative error {rel:.2e}");
        assert!(rel < 1e-3, "{key}: relative error {rel}");
    }
    assert!((meta["fid_ac"].as_f64().unwrap() - want).abs() > 0.1 * want, "the swapped set must change FID");
}

/// Images of a folder as `[3, H, W]` planes in [0, 1], as pytorch-fid's `ToTensor` gives.
fn unit_images(dir: &std::path::Path, names: &[String]) -> Vec<(Vec<f32>, usize, usize)> {
    names
        .iter()
        .map(|n| {
            let a = read_image_native(&dir.join(n)).unwrap();
            (a.data.iter().map(|v| (v + 1.0) / 2.0).collect(), a.shape[2], a.shape[3])
        })
        .collect()
}

fn inception_parity(dir: &std::path::Path, name: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let device = test_device();
    let w = load(convert_inception, &dir.join(format!("{name}.pth")), tmp.path());
    let model = FidInception::from_weights(&w, &device).unwrap();
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap()).unwrap();
    let names: Vec<String> =
        meta["images"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    let dims = meta["dims"].as_u64().unwrap() as usize;
    assert_eq!(model.config().feature_dim(), dims);
    let mut feats = Vec::new();
    for set in ["real", "fake"] {
        let got = model.features(&unit_images(&dir.join(set), &names), &device).unwrap();
        let want = steex::io::read_npy(&dir.join(format!("{name}_features_{set}.npy"))).unwrap();
        assert_signal(&want, "reference features");
        let e = rel_err(&got, &want.data);
        eprintln!("{name} features ({set}): relative error {e:.2e}");
        assert!(e < 1e-4, "{name} {set}: feature relative error {e}");
        feats.push(got);
    }
    let want = meta["fid"].as_f64().unwrap();
    let got = metrics::fid_from_features(&feats[0], &feats[1], dims).unwrap();
    let rel = (got - want).abs() / want.abs();
    eprintln!("{name} FID: ours {got:.6}, pytorch-fid {want:.6}, relative error {rel:.2e}");
    assert!(rel < 1e-3, "{name}: FID relative error {rel}");
}

#[test]
fn fid_inception_matches_pytorch_fid_reduced_width() {
    inception_parity(&fixture("metrics"), "inception_div16");
}

#[test]
fn fid_inception_matches_pytorch_fid_full_size_when_present() {
    let dir = fixture("full/metrics");
    if !dir.join("inception_full.pth").exists() {
        skip_full("metrics_parity inception_full", "not present (tools/make_metrics_fixtures.py --full)");
        return;
    }
    inception_parity(&dir, "inception_full");
}

/// The `face_query` / `face_cf` images at 224x224 as one `[n, 3, 224, 224]` batch in [-1, 1].
fn batch(set: &str, names: &[String], map: impl Fn(&[f32]) -> Vec<f32>, device: &Device) -> Tensor<4> {
    let mut data = Vec::new();
    for n in names {
        let a = read_image_native(&fixture(&format!("metrics/{set}/{n}"))).unwrap();
        assert_eq!(a.shape, [1, 3, INPUT_SIZE, INPUT_SIZE]);
        data.extend(map(&a.data));
    }
    Tensor::from_data(TensorData::new(data, [names.len(), 3, INPUT_SIZE, INPUT_SIZE]), device)
}

#[test]
fn face_embedder_and_oracle_match_torch_fva_and_mnac() {
    let tmp = tempfile::tempdir().unwrap();
    let device = test_device();
    let meta = json("metrics/face.json");
    let names: Vec<String> =
        meta["images"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();

    let face =
        FaceEmbedder::from_weights(&load(convert_face, &fixture("metrics/face_w4.pth"), tmp.path()), &device).unwrap();
    let eq = Array::from_tensor(face.embed(batch("face_query", &names, face_input, &device)).unwrap());
    let ec = Array::from_tensor(face.embed(batch("face_cf", &names, face_input, &device)).unwrap());
    for (got, rel) in [(&eq, "metrics/face_embed_query.npy"), (&ec, "metrics/face_embed_cf.npy")] {
        let want = npy(rel);
        let e = rel_err(&got.data, &want.data);
        eprintln!("face embeddings {rel}: relative error {e:.2e}");
        assert!(e < 1e-4, "{rel}: relative error {e}");
    }
    let dim = face.dim();
    let cos: Vec<f64> = (0..names.len())
        .map(|i| {
            metrics::cosine_similarity(&eq.data[i * dim..(i + 1) * dim], &ec.data[i * dim..(i + 1) * dim]).unwrap()
        })
        .collect();
    let want_cos: Vec<f64> = meta["cosine"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let cos_err = cos.iter().zip(&want_cos).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    let fva = metrics::fva(&eq.data, &ec.data, dim).unwrap();
    let threshold = meta["fva_threshold"].as_f64().unwrap();
    let fva_at = metrics::fva_at(&eq.data, &ec.data, dim, threshold).unwrap();
    eprintln!(
        "FVA: ours {fva} / torch {}; at {threshold:.6}: ours {fva_at} / torch {}; max cosine error {cos_err:.2e}",
        meta["fva"], meta["fva_at_threshold"]
    );
    assert!(cos_err < 1e-5, "cosine error {cos_err}");
    // The fixture can tell embedders apart: its cosines lie on both sides of the published
    // 0.5 threshold, so FVA is neither 0 nor 1, and a constant embedder (every cosine 1)
    // gets another FVA.
    assert!(want_cos.iter().any(|&c| c < 0.45) && want_cos.iter().any(|&c| c > 0.55), "{want_cos:?}");
    assert!(fva > 0.0 && fva < 1.0, "FVA {fva}");
    let constant = vec![0.25f32; eq.data.len()];
    assert_ne!(metrics::fva(&constant, &constant, dim).unwrap(), meta["fva"].as_f64().unwrap());
    assert_eq!(fva, meta["fva"].as_f64().unwrap());
    assert_eq!(fva_at, meta["fva_at_threshold"].as_f64().unwrap());

    let oracle =
        Oracle::from_weights(&load(convert_oracle, &fixture("metrics/oracle_w4.tar"), tmp.path()), &device).unwrap();
    assert_eq!(oracle.num_outputs(), 40);
    let lq = Array::from_tensor(oracle.logits(batch("face_query", &names, <[f32]>::to_vec, &device)).unwrap());
    let lc = Array::from_tensor(oracle.logits(batch("face_cf", &names, <[f32]>::to_vec, &device)).unwrap());
    for (got, rel) in [(&lq, "metrics/oracle_logits_query.npy"), (&lc, "metrics/oracle_logits_cf.npy")] {
        let want = npy(rel);
        assert_signal(&want, rel);
        let e = rel_err(&got.data, &want.data);
        eprintln!("oracle logits {rel}: relative error {e:.2e}");
        assert!(e < 1e-4, "{rel}: relative error {e}");
    }
    let target = meta["mnac_target"].as_u64().unwrap() as usize;
    let n = names.len();
    let mnac = metrics::mnac(&lq.data, &lc.data, 40, &vec![Some(target); n]).unwrap();
    let mnac_all = metrics::mnac(&lq.data, &lc.data, 40, &vec![None; n]).unwrap();
    eprintln!(
        "MNAC: ours {mnac} / torch {} (all attributes: {mnac_all} / {})",
        meta["mnac"], meta["mnac_all_attributes"]
    );
    assert_eq!(mnac, meta["mnac"].as_f64().unwrap());
    assert_eq!(mnac_all, meta["mnac_all_attributes"].as_f64().unwrap());
}
