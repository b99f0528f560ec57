//! Images and label maps of any size: the resizes equal Pillow's (the published loaders'),
//! and a 1024x1024 image explains with its 512x512 mask (`tools/make_resize_fixtures.py`).

mod common;

use std::path::Path;

use common::*;
use steex::io::{LabelMap, read_image};

#[derive(serde::Deserialize)]
struct Pair {
    input: String,
    width: usize,
    height: usize,
    reference: String,
    kind: String,
}

fn pairs() -> Vec<Pair> {
    serde_json::from_str(&std::fs::read_to_string(fixture("resize/sizes.json")).unwrap()).unwrap()
}

#[test]
fn resizes_equal_pillows() {
    let pairs = pairs();
    assert_eq!(pairs.iter().filter(|p| p.kind == "image").count(), 4);
    assert_eq!(pairs.iter().filter(|p| p.kind == "mask").count(), 4);
    for p in &pairs {
        let input = fixture(&format!("resize/{}", p.input));
        let reference = image::open(fixture(&format!("resize/{}", p.reference))).unwrap();
        assert_eq!((reference.width() as usize, reference.height() as usize), (p.width, p.height));
        if p.kind == "mask" {
            let ours = LabelMap::read(&input).unwrap().resized_pil(p.height, p.width);
            let theirs = reference.to_luma8().into_raw();
            let differ = ours.labels.iter().zip(&theirs).filter(|(a, b)| a != b).count();
            assert_eq!(differ, 0, "{}: {differ} labels differ from Pillow's", p.reference);
            // The legacy rule (floor(dst * in / out)) would not match: the test can fail.
            let legacy = LabelMap::read(&input).unwrap().resized(p.height, p.width);
            assert_ne!(legacy.labels, theirs, "{}: the test cannot tell the rules apart", p.reference);
        } else {
            let ours = read_image(&input, (p.height, p.width)).unwrap();
            let theirs = reference.to_rgb8();
            let (h, w) = (p.height, p.width);
            let mut worst = 0f32;
            for (x, y, px) in theirs.enumerate_pixels() {
                for c in 0..3 {
                    let v = ours.data[c * h * w + y as usize * w + x as usize];
                    worst = worst.max(((v + 1.0) * 127.5 - px[c] as f32).abs());
                }
            }
            assert!(worst < 1e-3, "{}: off Pillow's by {worst} levels", p.reference);
        }
    }
}

#[test]
fn a_large_image_explains_with_its_half_size_mask() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    convert_explain_models(d);
    let (image, mask) = (fixture("resize/face_1024.png"), fixture("resize/face_mask_512.png"));
    let explain = |mask: &Path, out: &str| {
        run_bin(
            d,
            "steex",
            &[
                "explain",
                "--generator",
                "g.safetensors",
                "--classifier",
                "c.safetensors",
                "--image",
                image.to_str().unwrap(),
                "--mask",
                mask.to_str().unwrap(),
                "--attribute",
                "smile",
                "--steps",
                "2",
                "--noise",
                "off",
                "--out",
                out,
            ],
        )
    };
    let o = explain(&mask, "res");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The query the explanation used is Pillow's resize of the 1024x1024 file.
    let query = image::open(d.join("res/query.png")).unwrap().to_rgb8();
    let reference = image::open(fixture("resize/face_1024_to_64x64.png")).unwrap().to_rgb8();
    assert_eq!(query.dimensions(), (64, 64));
    assert!(query == reference, "query.png differs from Pillow's bicubic resize");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("res/result.json")).unwrap()).unwrap();
    assert!(v["final_scores"].is_array(), "{v}");

    // A mask of another aspect ratio is refused, naming both files and sizes.
    image::GrayImage::new(512, 256).save(d.join("wide.png")).unwrap();
    let o = explain(&d.join("wide.png"), "res2");
    assert_fails(&o, &["wide.png", "512x256", "face_1024.png", "1024x1024", "aspect ratios differ"]);
    assert!(!d.join("res2").join("result.json").exists());
}

#[test]
fn segment_resizes_to_size_as_pillow() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ck = fixture("deeplab/checkpoint.tar");
    let o = run_bin(d, "weights-convert", &["deeplab", "--input", ck.to_str().unwrap(), "--out", "s.safetensors"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let seg = |image: &Path, out: &str, size: Option<&str>| {
        let mut a = vec!["segment", "--segmenter", "s.safetensors", "--image", image.to_str().unwrap(), "--out", out];
        if let Some(s) = size {
            a.extend(["--size", s]);
        }
        let o = run_bin(d, "steex", &a);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        image::open(d.join(out)).unwrap().to_luma8()
    };
    let resized = seg(&fixture("resize/face_1024.png"), "a.png", Some("64x64"));
    let pillow = seg(&fixture("resize/face_1024_to_64x64.png"), "b.png", None);
    assert_eq!(resized.dimensions(), (64, 64));
    assert!(resized == pillow, "segmenting at --size differs from segmenting Pillow's resize");
    let o = run_bin(
        d,
        "steex",
        &["segment", "--segmenter", "s.safetensors", "--image", "x.png", "--out", "c.png", "--size", "64"],
    );
    assert_fails(&o, &["WIDTHxHEIGHT"]);
}
