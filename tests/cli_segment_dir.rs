//! `steex segment-dir`: a folder of images segmented in batches equals `steex segment` of
//! each; it resumes and shards as `explain-dir` does.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use steex::io::{Array, read_npy, write_npy};

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ck = fixture("deeplab/checkpoint.tar");
    let o = run_bin(d, "weights-convert", &["deeplab", "--input", ck.to_str().unwrap(), "--out", "s.safetensors"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let im = d.join("images");
    std::fs::create_dir_all(&im).unwrap();
    let q = read_npy(&fixture("deeplab/input.npy")).unwrap();
    for (i, k) in [1.0f32, 0.8, 0.95, 0.9].iter().enumerate() {
        let a = Array { shape: q.shape.clone(), data: q.data.iter().map(|v| (v * k).clamp(-1.0, 1.0)).collect() };
        write_npy(&im.join(format!("img{i}.npy")), &a).unwrap();
    }
    let (h, w) = (q.shape[2], q.shape[3]);
    std::fs::write(im.join("img4.png"), steex::io::png_bytes(&q.data, h, w)).unwrap();
    std::fs::write(im.join("img5.png"), b"\x89PNG not really").unwrap();
    dir
}

fn masks(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .map(|p| {
            (p.file_stem().unwrap().to_string_lossy().into_owned(), image::open(&p).unwrap().to_luma8().into_raw())
        })
        .collect()
}

fn seg_dir(d: &Path, out: &str, extra: &[&str]) -> std::process::Output {
    let mut a = vec!["segment-dir", "--images", "images", "--segmenter", "s.safetensors", "--out", out, "--batch", "2"];
    a.extend(extra);
    run_bin(d, "steex", &a)
}

fn ok(o: &std::process::Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn segments_a_folder_as_segment_does_and_resumes_and_shards() {
    let dir = setup();
    let d = dir.path();
    let s = ok(&seg_dir(d, "m", &["--json"]));
    assert_eq!((s["n_images"].as_u64(), s["n_written"].as_u64(), s["n_failed"].as_u64()), (Some(6), Some(5), Some(1)));
    assert!(s["failed"].to_string().contains("img5.png"), "{}", s["failed"]);
    let all = masks(&d.join("m"));
    assert_eq!(all.len(), 5);
    // Each mask equals `steex segment --labels generator` of the image alone.
    for (stem, ext) in [("img0", "npy"), ("img2", "npy"), ("img4", "png")] {
        let img = format!("images/{stem}.{ext}");
        let o = run_bin(
            d,
            "steex",
            &["segment", "--segmenter", "s.safetensors", "--image", &img, "--out", "one.png", "--labels", "generator"],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let one = image::open(d.join("one.png")).unwrap().to_luma8().into_raw();
        let distinct: std::collections::BTreeSet<u8> = one.iter().copied().collect();
        assert!(distinct.len() > 1, "{stem}: a one-label map cannot tell anything apart");
        assert_eq!(all[stem], one, "{stem}: segment-dir differs from segment");
    }
    // A non-empty --out needs --resume; a resumed run redoes only what is missing.
    assert_fails(&seg_dir(d, "m", &[]), &["not empty", "--resume"]);
    std::fs::remove_file(d.join("m/img2.png")).unwrap();
    let s = ok(&seg_dir(d, "m", &["--resume", "--json"]));
    assert_eq!((s["n_written"].as_u64(), s["n_skipped"].as_u64()), (Some(1), Some(4)));
    assert_eq!(masks(&d.join("m")), all);
    assert_fails(&seg_dir(d, "m", &["--resume", "--labels", "raw"]), &["segmented otherwise", "--force"]);
    // Two shards hold every mask once.
    ok(&seg_dir(d, "s0", &["--shard", "0/2", "--json"]));
    ok(&seg_dir(d, "s1", &["--shard", "1/2", "--json"]));
    let (s0, s1) = (masks(&d.join("s0")), masks(&d.join("s1")));
    assert!(s0.keys().all(|k| !s1.contains_key(k)), "shards overlap");
    let mut merged = s0;
    merged.extend(s1);
    assert_eq!(merged, all);
}
