//! `steex prepare` on the fake dataset layouts of `tools/make_prepare_fixtures.py`, against
//! the published preprocessing run on the same files (a line-for-line port of `g_mask.py`;
//! torchvision's `CenterCrop(150)` + `Resize(128, BICUBIC)`).

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn prepare(args: &[&str]) -> std::process::Output {
    let mut a = vec!["prepare"];
    a.extend(args);
    run_bin(Path::new("."), "steex", &a)
}

fn ok(o: &std::process::Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("--json prints the summary")
}

fn gray(p: &Path) -> Vec<u8> {
    image::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).to_luma8().into_raw()
}

fn root() -> PathBuf {
    fixture("prepare/celebamaskhq/CelebAMask-HQ")
}

/// Images the fixture's `g_mask` port wrote, with the split STEEX's mapping rule gives.
const WRITTEN: [(usize, &str); 5] = [(0, "train"), (1, "test"), (2, "train"), (3, "test"), (2001, "train")];

#[test]
fn celebamaskhq_label_maps_equal_g_mask() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hq");
    let s =
        ok(&prepare(&["celebamaskhq", "--root", root().to_str().unwrap(), "--out", out.to_str().unwrap(), "--json"]));
    for (k, split) in WRITTEN {
        let ours = gray(&out.join(format!("{split}/labels/{k}.png")));
        let theirs = gray(&fixture(&format!("prepare/celebamaskhq/g_mask/{k}.png")));
        assert_eq!(ours.len(), 512 * 512);
        let differ = ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
        assert_eq!(differ, 0, "image {k}: {differ} pixels differ from g_mask.py's");
        let img = std::fs::read(out.join(format!("{split}/images/{k}.jpg"))).unwrap();
        assert_eq!(img, std::fs::read(root().join(format!("CelebA-HQ-img/{k}.jpg"))).unwrap(), "image {k} copied");
    }
    // The comparison means something: image 0 has every part, overlapping.
    let ids: std::collections::BTreeSet<u8> = gray(&out.join("train/labels/0.png")).into_iter().collect();
    assert!(ids.len() >= 12, "image 0 has only ids {ids:?}");
    // The parts g_mask.py would stop at are recorded and skipped, naming the file.
    assert_eq!((s["n_images"].as_u64(), s["n_written"].as_u64(), s["n_failed"].as_u64()), (Some(7), Some(5), Some(2)));
    let failed = s["failed"].to_string();
    for needle in ["00004_hair.png", "256x256", "00005_nose.png", "cannot decode"] {
        assert!(failed.contains(needle), "{needle} not in {failed}");
    }
    for k in [4, 5] {
        assert!(
            !out.join(format!("test/labels/{k}.png")).exists() && !out.join(format!("train/labels/{k}.png")).exists()
        );
    }
    assert_eq!(s["per_split"]["train"], 3);
    assert_eq!(s["per_split"]["test"], 2);
    assert_eq!(s["split"]["rule"], "mapping");
    assert!(s["missing_parts"]["hat"].as_u64().unwrap() >= 3, "{}", s["missing_parts"]);
    let notes = s["notes"].to_string();
    for needle in ["1 images listed", "1 images have no part file", "copied CelebAMask-HQ-attribute-anno.txt"] {
        assert!(notes.contains(needle), "{needle} not in {notes}");
    }
    let attrs = std::fs::read(out.join("CelebAMask-HQ-attribute-anno.txt")).unwrap();
    assert_eq!(attrs, std::fs::read(root().join("CelebAMask-HQ-attribute-anno.txt")).unwrap());
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("prepare.json")).unwrap()).unwrap();
    assert_eq!(on_disk, s);
}

#[test]
fn celebamaskhq_resumes_and_splits_by_the_official_partition() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hq");
    let r = root();
    let base = ["celebamaskhq", "--root", r.to_str().unwrap(), "--out", out.to_str().unwrap(), "--json"];
    ok(&prepare(&base));
    // A second run refuses the folder, a resumed one skips what is done.
    assert_fails(&prepare(&base), &["not empty", "--resume", "--force"]);
    std::fs::remove_file(out.join("test/labels/3.png")).unwrap();
    let mut resume = base.to_vec();
    resume.push("--resume");
    let s = ok(&prepare(&resume));
    assert_eq!((s["n_written"].as_u64(), s["n_skipped"].as_u64(), s["n_failed"].as_u64()), (Some(1), Some(4), Some(2)));
    assert_eq!(gray(&out.join("test/labels/3.png")), gray(&fixture("prepare/celebamaskhq/g_mask/3.png")));

    // CelebA's partition: image 2001 (CelebA 162771.jpg, validation) goes to test, where the
    // mapping's published threshold keeps it in train.
    let part = fixture("prepare/celebamaskhq/list_eval_partition.txt");
    let mut with_part = base.to_vec();
    with_part.extend(["--partition", part.to_str().unwrap(), "--force"]);
    let s = ok(&prepare(&with_part));
    assert_eq!(s["split"]["rule"], "partition");
    assert!(out.join("test/labels/2001.png").is_file() && !out.join("train/labels/2001.png").exists());
    assert_eq!(gray(&out.join("test/labels/2001.png")), gray(&fixture("prepare/celebamaskhq/g_mask/2001.png")));
}

#[test]
fn celebamaskhq_without_the_mapping_splits_by_a_seeded_fraction() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("CelebAMask-HQ");
    for sub in ["CelebA-HQ-img", "CelebAMask-HQ-mask-anno/0", "CelebAMask-HQ-mask-anno/1"] {
        std::fs::create_dir_all(copy.join(sub)).unwrap();
        for e in std::fs::read_dir(root().join(sub)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), copy.join(sub).join(e.file_name())).unwrap();
        }
    }
    let out = dir.path().join("hq");
    let args = ["celebamaskhq", "--root", copy.to_str().unwrap(), "--out", out.to_str().unwrap(), "--json"];
    let mut a = args.to_vec();
    a.extend(["--test-fraction", "0.5", "--seed", "3"]);
    let s = ok(&prepare(&a));
    assert_eq!(s["split"]["rule"], "fraction");
    assert_eq!(s["split"]["seed"], 3);
    let n = |split: &str| std::fs::read_dir(out.join(split).join("labels")).unwrap().count();
    assert_eq!(n("train") + n("test"), 5);
    assert!(s["notes"].to_string().contains("none copied"));
    let mut a = args.to_vec();
    a.extend(["--test-fraction", "1.5", "--force"]);
    assert_fails(&prepare(&a), &["--test-fraction 1.5"]);
}

#[test]
fn prepare_refuses_what_is_not_the_dataset_and_outputs_inside_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("o");
    let o = prepare(&["celebamaskhq", "--root", d.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_fails(&o, &["not CelebAMask-HQ", "CelebA-HQ-img"]);
    let inside = root().join("prepared");
    let o = prepare(&["celebamaskhq", "--root", root().to_str().unwrap(), "--out", inside.to_str().unwrap()]);
    assert_fails(&o, &["inside the input"]);
    assert!(!inside.exists());
    let o = prepare(&["celeba", "--images", d.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_fails(&o, &["JPEG or PNG images"]);
}

#[test]
fn celeba_crops_within_rounding_of_torchvision() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c");
    let images = fixture("prepare/celeba/img_align_celeba");
    let part = fixture("prepare/celeba/list_eval_partition.txt");
    let s = ok(&prepare(&[
        "celeba",
        "--images",
        images.to_str().unwrap(),
        "--partition",
        part.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!((s["n_written"].as_u64(), s["n_failed"].as_u64()), (Some(5), Some(1)));
    assert!(s["failed"].to_string().contains("smaller than the 150x150 crop"), "{}", s["failed"]);
    let splits = [("000001", "train"), ("000002", "train"), ("000003", "val"), ("000004", "test"), ("000005", "test")];
    for (stem, split) in splits {
        let ours = image::open(out.join(format!("{split}/images/{stem}.png"))).unwrap().to_rgb8();
        let theirs = image::open(fixture(&format!("prepare/celeba/reference/{stem}.png"))).unwrap().to_rgb8();
        assert_eq!(ours.dimensions(), (128, 128));
        let d: Vec<i32> =
            ours.as_raw().iter().zip(theirs.as_raw()).map(|(a, b)| (*a as i32 - *b as i32).abs()).collect();
        let (max, mean) = (*d.iter().max().unwrap(), d.iter().sum::<i32>() as f64 / d.len() as f64);
        if stem == "000005" {
            // A PNG decodes identically: the crop and the resize are Pillow's, bit for bit.
            assert_eq!(max, 0, "{stem}: differs from torchvision's");
        } else {
            // JPEG decoders round differently (libjpeg-turbo vs the image crate's).
            assert!(max <= 4 && mean < 0.5, "{stem}: max {max} mean {mean} levels from torchvision's");
        }
    }
}

fn bdd_root() -> PathBuf {
    fixture("prepare/bdd/bdd100k")
}

/// Checks `out` against the fixture's port of STEEX's label transform.
fn bdd_matches_steex(out: &Path) {
    for (split, stem) in [("train", "a"), ("train", "b"), ("val", "e"), ("val", "f")] {
        let ours = gray(&out.join(format!("{split}/labels/{stem}.png")));
        let theirs = gray(&fixture(&format!("prepare/bdd/expected/{split}/{stem}.png")));
        assert_eq!(ours.len(), 32 * 16);
        assert_eq!(ours, theirs, "{split}/{stem}: differs from pix2pix_dataset.py's label ids");
        let ours = gray(&out.join(format!("{split}/segmenter_labels/{stem}.png")));
        let theirs = gray(&fixture(&format!("prepare/bdd/expected_segmenter/{split}/{stem}.png")));
        assert_eq!(ours, theirs, "{split}/{stem}: differs from BDDDataset_for_deeplab.py's label ids");
        let img = std::fs::read(out.join(format!("{split}/images/{stem}.jpg"))).unwrap();
        assert_eq!(img, std::fs::read(bdd_root().join(format!("seg/images/{split}/{stem}.jpg"))).unwrap());
    }
    // The comparison means something: b holds every id and the unknown one.
    let ids: std::collections::BTreeSet<u8> = gray(&out.join("train/labels/b.png")).into_iter().collect();
    assert_eq!(ids, (0..=19).collect(), "b's ids");
    let (generator, seg) = (gray(&out.join("train/labels/b.png")), gray(&out.join("train/segmenter_labels/b.png")));
    assert!(
        generator.iter().zip(&seg).any(|(g, s)| *g == 19 && *s == 0),
        "unknown is 19 for the generator, 0 for the segmenter"
    );
}

#[test]
fn bdd_label_maps_equal_pix2pix_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bdd");
    let root = bdd_root();
    let base = ["bdd", "--root", root.to_str().unwrap(), "--out", out.to_str().unwrap(), "--json"];
    let s = ok(&prepare(&base));
    bdd_matches_steex(&out);
    assert_eq!((s["n_images"].as_u64(), s["n_written"].as_u64(), s["n_failed"].as_u64()), (Some(6), Some(4), Some(2)));
    assert_eq!(s["per_split"]["train"], 2);
    assert_eq!(s["per_split"]["val"], 2);
    assert_eq!(s["split"]["rule"], "folders");
    let failed = s["failed"].to_string();
    for needle in ["train/c", "c_train_id.png", "label id 40", "expected 0-18 or 255", "train/d", "d_train_id.png"] {
        assert!(failed.contains(needle), "{needle} not in {failed}");
    }
    for stem in ["c", "d"] {
        assert!(!out.join(format!("train/labels/{stem}.png")).exists());
        assert!(!out.join(format!("train/images/{stem}.jpg")).exists());
    }
    // Resumes: what is done is skipped.
    std::fs::remove_file(out.join("val/labels/e.png")).unwrap();
    let mut resume = base.to_vec();
    resume.push("--resume");
    let s = ok(&prepare(&resume));
    assert_eq!((s["n_written"].as_u64(), s["n_skipped"].as_u64(), s["n_failed"].as_u64()), (Some(1), Some(3), Some(2)));
    bdd_matches_steex(&out);
}

#[test]
fn bdd_reads_the_newer_layout_and_names_the_folders_of_a_wrong_root() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("bdd100k");
    for split in ["train", "val"] {
        let (imgs, labs) = (copy.join("images/10k").join(split), copy.join("labels/sem_seg/masks").join(split));
        std::fs::create_dir_all(&imgs).unwrap();
        std::fs::create_dir_all(&labs).unwrap();
        for e in std::fs::read_dir(bdd_root().join("seg/images").join(split)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), imgs.join(e.file_name())).unwrap();
        }
        for e in std::fs::read_dir(bdd_root().join("seg/labels").join(split)).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().replace("_train_id.png", ".png");
            std::fs::copy(e.path(), labs.join(name)).unwrap();
        }
    }
    let out = dir.path().join("o");
    let s = ok(&prepare(&["bdd", "--root", copy.to_str().unwrap(), "--out", out.to_str().unwrap(), "--json"]));
    assert_eq!((s["n_written"].as_u64(), s["n_failed"].as_u64()), (Some(4), Some(2)));
    bdd_matches_steex(&out);

    let wrong = dir.path().join("not_bdd");
    std::fs::create_dir_all(wrong.join("images")).unwrap();
    let o = prepare(&["bdd", "--root", wrong.to_str().unwrap(), "--out", dir.path().join("o2").to_str().unwrap()]);
    assert_fails(&o, &["not BDD100k", "seg/images", "seg/labels", "images/10k"]);
    assert!(!dir.path().join("o2").exists());
}

#[test]
fn bdd_oia_actions_to_the_csv_of_the_published_loaders_images() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("oia_only");
    let oia = fixture("prepare/bdd/oia");
    let s = ok(&prepare(&["bdd", "--oia", oia.to_str().unwrap(), "--out", out.to_str().unwrap(), "--json"]));
    for split in ["train", "val"] {
        let ours = std::fs::read_to_string(out.join(format!("oia/{split}.csv"))).unwrap();
        let theirs = std::fs::read_to_string(fixture(&format!("prepare/bdd/expected_oia/{split}.csv"))).unwrap();
        assert_eq!(ours, theirs, "{split}: differs from the images and actions BDDOIADataset keeps");
    }
    // t4 (confuse) and t5 (no file) are left out; the note counts the missing file.
    let notes = s["notes"].to_string();
    assert!(notes.contains("BDD-OIA train: 3 images") && notes.contains("1 without a file"), "{notes}");
    assert_eq!(s["n_images"], 0);

    // The CSV is what `steex train classifier` reads: an epoch on it trains the four actions.
    let model = dir.path().join("oia.safetensors");
    let (train_csv, val_csv) = (out.join("oia/train.csv"), out.join("oia/val.csv"));
    let data = oia.join("data");
    let t = run_bin(
        Path::new("."),
        "steex",
        &[
            "train",
            "classifier",
            "--arch",
            "densenet121:growth=4,blocks=1-1,init=8,bn=2",
            "--size",
            "32x64",
            "--batch",
            "2",
            "--epochs",
            "1",
            "--images",
            data.to_str().unwrap(),
            "--labels",
            train_csv.to_str().unwrap(),
            "--val-images",
            data.to_str().unwrap(),
            "--val-labels",
            val_csv.to_str().unwrap(),
            "--attributes",
            "move_forward,stop,turn_left,turn_right",
            "--out",
            model.to_str().unwrap(),
        ],
    );
    assert!(t.status.success(), "train classifier on the CSV: {}", String::from_utf8_lossy(&t.stderr));
    assert!(model.is_file());

    let both = dir.path().join("both");
    let root = bdd_root();
    let s = ok(&prepare(&[
        "bdd",
        "--root",
        root.to_str().unwrap(),
        "--oia",
        oia.to_str().unwrap(),
        "--out",
        both.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(s["n_written"], 4);
    assert!(both.join("oia/val.csv").is_file() && both.join("train/segmenter_labels/a.png").is_file());

    // Neither input, or a folder that is not BDD-OIA: refused, naming what was expected.
    let none = prepare(&["bdd", "--out", dir.path().join("o3").to_str().unwrap()]);
    assert_fails(&none, &["--root", "--oia"]);
    let o = prepare(&["bdd", "--oia", root.to_str().unwrap(), "--out", dir.path().join("o4").to_str().unwrap()]);
    assert_fails(&o, &["not BDD-OIA", "train_25k_images_actions.json", "data"]);
    assert!(!dir.path().join("o4").exists());
}
