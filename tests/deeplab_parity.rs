//! DeepLabV3 against torchvision (`tools/make_fixtures.py`), through `weights-convert deeplab`.

mod common;

use std::path::Path;

use common::*;
use steex::io::{Array, load_segmenter};
use weights_convert::Checkpoint;
use weights_convert::models::convert_deeplab;

/// Max |error| / std of the reference logits, and the share of pixels whose argmax differs
/// among those whose top two reference logits are not tied.
fn check(dir: &Path) -> (f64, usize) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("s.safetensors");
    convert_deeplab(&Checkpoint::open(dir.join("checkpoint.tar")).unwrap(), None).unwrap().write(&out).unwrap();
    let device = test_device();
    let (model, _) = load_segmenter(&out, &device).unwrap();
    let x = steex::io::read_npy(&dir.join("input.npy")).unwrap();
    let want = steex::io::read_npy(&dir.join("logits.npy")).unwrap();
    assert_signal(&want, "reference logits");
    let got = Array::from_tensor(model.forward(x.to_tensor::<4>(&device)));
    assert_eq!(got.shape, want.shape);
    let n = want.data.len() as f64;
    let mean = want.data.iter().map(|&v| v as f64).sum::<f64>() / n;
    let std = (want.data.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
    let err = max_abs_diff(&got, &want) as f64 / std;
    let (c, h, w) = (want.shape[1], want.shape[2], want.shape[3]);
    let (ga, wa) =
        (steex::deeplab::argmax_classes(&got.data, c, h, w), steex::deeplab::argmax_classes(&want.data, c, h, w));
    let mut disagree = 0;
    for p in 0..h * w {
        let mut v: Vec<f32> = (0..c).map(|k| want.data[k * h * w + p]).collect();
        v.sort_by(|a, b| b.total_cmp(a));
        if v[0] - v[1] > 1e-6 * std as f32 && ga[p] != wa[p] {
            disagree += 1;
        }
    }
    eprintln!("{}: max abs err / std {err:.2e}, argmax disagreements {disagree}", dir.display());
    (err, disagree)
}

#[test]
fn reduced_deeplab_matches_torchvision() {
    let (err, disagree) = check(&fixture("deeplab"));
    assert!(err <= 1e-4, "logit error {err} x std");
    assert_eq!(disagree, 0);
}

/// Full-width deeplabv3_resnet50/101 from `tools/make_fixtures.py --full`; runs when present.
#[test]
fn full_width_deeplab_matches_when_present() {
    for name in ["deeplabv3_resnet50", "deeplabv3_resnet101"] {
        let dir = fixture(&format!("full/{name}"));
        if !dir.join("checkpoint.tar").exists() {
            skip_full(&format!("deeplab_parity {name}"), "not present (tools/make_fixtures.py --full)");
            continue;
        }
        let (err, disagree) = check(&dir);
        assert!(err <= 1e-4, "{name}: logit error {err} x std");
        assert_eq!(disagree, 0, "{name}");
    }
}

#[test]
fn segment_and_explain_from_an_image_alone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |b: &str, args: &[&str]| {
        let o = run_bin(d, b, args);
        assert!(o.status.success(), "{b} {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        o
    };
    let f = |r: &str| fixture(r).to_str().unwrap().to_string();
    run("weights-convert", &["deeplab", "--input", &f("deeplab/checkpoint.tar"), "--out", "s.safetensors"]);
    run(
        "weights-convert",
        &[
            "sean",
            "--input",
            &f("sean_wide/latest_net_G.pth"),
            "--out",
            "g.safetensors",
            "--width",
            "128",
            "--aspect-ratio",
            "2",
        ],
    );
    run("weights-convert", &["resnet", "--input", &f("resnet_bottleneck/checkpoint.tar"), "--out", "c.safetensors"]);
    run(
        "steex",
        &[
            "segment",
            "--segmenter",
            "s.safetensors",
            "--image",
            &f("deeplab/input.npy"),
            "--out",
            "m.png",
            "--labels",
            "generator",
            "--logits",
            "l.npy",
        ],
    );
    let m = image::open(d.join("m.png")).unwrap();
    assert!(matches!(m, image::DynamicImage::ImageLuma8(_)));
    assert_eq!((m.width(), m.height()), (128, 64));
    assert!(d.join("m.preview.png").is_file());
    // 20 classes, BDD convention: class k -> label k - 1, class 0 -> 255.
    let raw = run(
        "steex",
        &["segment", "--segmenter", "s.safetensors", "--image", &f("deeplab/input.npy"), "--out", "r.png"],
    );
    drop(raw);
    let (m, r) = (image::open(d.join("m.png")).unwrap().to_luma8(), image::open(d.join("r.png")).unwrap().to_luma8());
    for (a, b) in m.pixels().zip(r.pixels()) {
        assert_eq!(a[0], if b[0] == 0 { 255 } else { b[0] - 1 });
    }
    // The mask feeds explain directly, and explain can segment by itself.
    let image = f("deeplab/input.npy");
    for (out, source) in [("e1", ["--mask", "m.png"]), ("e2", ["--segmenter", "s.safetensors"])] {
        let mut args = vec!["explain", "--generator", "g.safetensors", "--classifier", "c.safetensors"];
        args.extend(["--image", &image, source[0], source[1], "--attribute", "stop", "--steps", "2", "--out", out]);
        run("steex", &args);
    }
    assert_eq!(std::fs::read(d.join("e1/z_final.npy")).unwrap(), std::fs::read(d.join("e2/z_final.npy")).unwrap());

    // The dataset path: `segment-dir` writes the mask `segment` writes, and `explain-dir`
    // on those masks equals `explain-dir --segmenter` and `explain` on the one image.
    std::fs::create_dir(d.join("imgs")).unwrap();
    std::fs::copy(&image, d.join("imgs/a.npy")).unwrap();
    run("steex", &["segment-dir", "--images", "imgs", "--segmenter", "s.safetensors", "--out", "masks"]);
    let luma = |p: &str| image::open(d.join(p)).unwrap().to_luma8().into_raw();
    assert_eq!(luma("masks/a.png"), luma("m.png"), "segment-dir's mask differs from segment's");
    for (out, source) in [("d1", ["--masks", "masks"]), ("d2", ["--segmenter", "s.safetensors"])] {
        let mut args = vec!["explain-dir", "--generator", "g.safetensors", "--classifier", "c.safetensors"];
        args.extend(["--images", "imgs", source[0], source[1], "--attribute", "stop", "--steps", "2", "--out", out]);
        run("steex", &args);
    }
    let z = |p: &str| std::fs::read(d.join(p)).unwrap();
    assert_eq!(z("d1/a/z_final.npy"), z("d2/a/z_final.npy"), "explain-dir: --masks vs --segmenter");
    assert_eq!(z("d1/a/z_final.npy"), z("e1/z_final.npy"), "explain-dir vs explain");
}
