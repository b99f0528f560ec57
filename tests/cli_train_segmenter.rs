//! `steex train segmenter` end to end on a dataset made here: resume to the same bytes as an
//! uninterrupted run, the output loaded by `steex segment` with no flags, validation metrics
//! in the log, and bad masks refused before training.

mod common;

use std::path::Path;

use common::*;

/// A reduced DeepLabV3, fast enough for tests.
const BACKBONE: &str = "resnet50:width=2,layers=1-1-1-1,head=8";

/// `n` 32x32 images with masks of 3 classes: a left region (class 1, red) and a right one
/// (class 2, blue) split at a column that varies, a top row of class 0.
fn make_set(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir.join("img")).unwrap();
    std::fs::create_dir_all(dir.join("masks")).unwrap();
    for i in 0..n {
        let split = 8 + (i as u32 * 5) % 16;
        let label = |x: u32, y: u32| {
            if y < 2 {
                0u8
            } else if x < split {
                1
            } else {
                2
            }
        };
        let img = image::RgbImage::from_fn(32, 32, |x, y| match label(x, y) {
            0 => image::Rgb([20, 20, 20]),
            1 => image::Rgb([200, 40 + (x * 3) as u8, 40]),
            _ => image::Rgb([40, 60, 200 - (y * 2) as u8]),
        });
        img.save(dir.join(format!("img/{i:02}.png"))).unwrap();
        image::GrayImage::from_fn(32, 32, |x, y| image::Luma([label(x, y)]))
            .save(dir.join(format!("masks/{i:02}.png")))
            .unwrap();
    }
}

fn train(cwd: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["train", "segmenter", "--classes", "3", "--size", "32", "--batch", "3", "--seed", "4"];
    args.extend(["--backbone", BACKBONE, "--lr", "1e-3"]);
    args.extend_from_slice(extra);
    run_bin(cwd, "steex", &args)
}

fn ok(out: &std::process::Output) {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn segmenter_trains_resumes_to_the_same_bytes_and_segment_loads_it() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    make_set(&cwd.join("train"), 6);
    make_set(&cwd.join("val"), 2);
    let data = ["--images", "train/img", "--masks", "train/masks", "--flip"];
    let mut a = data.to_vec();
    a.extend(["--epochs", "2", "--out", "a.safetensors", "--log", "a.jsonl"]);
    a.extend(["--val-images", "val/img", "--val-masks", "val/masks"]);
    ok(&train(cwd, &a));
    let mut b = data.to_vec();
    b.extend(["--epochs", "1", "--out", "b1.safetensors", "--checkpoints", "ck"]);
    ok(&train(cwd, &b));
    let mut b2 = data.to_vec();
    b2.extend(["--epochs", "2", "--out", "b2.safetensors", "--resume", "ck"]);
    ok(&train(cwd, &b2));
    let bytes = |n: &str| std::fs::read(cwd.join(n)).unwrap();
    assert_ne!(bytes("a.safetensors"), bytes("b1.safetensors"));
    assert!(bytes("a.safetensors") == bytes("b2.safetensors"), "1 epoch + resume differs from 2 epochs");
    // The ASPP's dropout (0.5 by default, as torchvision) is applied: without it the same
    // run ends elsewhere; a probability outside [0, 1) is refused.
    let mut c = data.to_vec();
    c.extend(["--epochs", "2", "--out", "c.safetensors", "--dropout", "0"]);
    c.extend(["--val-images", "val/img", "--val-masks", "val/masks"]);
    ok(&train(cwd, &c));
    assert_ne!(bytes("a.safetensors"), bytes("c.safetensors"), "--dropout 0 changed nothing");
    let mut d = data.to_vec();
    d.extend(["--out", "d.safetensors", "--dropout", "1"]);
    let o = train(cwd, &d);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--dropout 1"));

    let log = std::fs::read_to_string(cwd.join("a.jsonl")).unwrap();
    let epochs: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|l: &serde_json::Value| l["event"] == "epoch")
        .collect();
    assert_eq!(epochs.len(), 2);
    for k in ["mean_iou", "pixel_accuracy"] {
        let v = epochs[1]["val"][k].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{k} {v}");
    }
    // `steex segment` takes the output with no flags.
    let out = run_bin(
        cwd,
        "steex",
        &["segment", "--segmenter", "a.safetensors", "--image", "val/img/00.png", "--out", "s.png"],
    );
    ok(&out);
    let m = image::open(cwd.join("s.png")).unwrap();
    assert_eq!((m.width(), m.height()), (32, 32));
}

#[test]
fn bad_masks_are_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    make_set(&cwd.join("d"), 3);
    let refused = |needles: &[&str]| {
        let out = train(cwd, &["--images", "d/img", "--masks", "d/masks", "--epochs", "1", "--out", "x.safetensors"]);
        assert_fails(&out, needles);
        assert!(!cwd.join("x.safetensors").exists() && !cwd.join("x.safetensors.ckpt").exists());
    };
    // A label id >= the class count.
    image::GrayImage::from_pixel(32, 32, image::Luma([7])).save(cwd.join("d/masks/01.png")).unwrap();
    refused(&["01.png", "label id 7"]);
    // A mask of another size.
    image::GrayImage::from_pixel(16, 32, image::Luma([1])).save(cwd.join("d/masks/01.png")).unwrap();
    refused(&["01.png", "16x32"]);
    // A missing mask.
    std::fs::remove_file(cwd.join("d/masks/01.png")).unwrap();
    refused(&["01.png", "missing"]);
    // An empty folder.
    for e in std::fs::read_dir(cwd.join("d/img")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    refused(&["d/img", "no PNG/JPEG"]);
}
