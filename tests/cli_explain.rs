//! `steex explain` as a user runs it, on the committed fixtures.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn bin(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_BIN_EXE_steex")).with_file_name(name)
}

fn run(cwd: &Path, args: &[&str]) -> Output {
    steex_command().args(args).current_dir(cwd).output().unwrap()
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let conv = |args: &[&str]| {
        let o = Command::new(bin("weights-convert")).args(args).current_dir(d).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let g = fixture("sean_sq/latest_net_G.pth");
    let c = fixture("explain/checkpoint.tar");
    conv(&["sean", "--input", g.to_str().unwrap(), "--out", "g.safetensors", "--width", "64", "--aspect-ratio", "1"]);
    conv(&["densenet", "--input", c.to_str().unwrap(), "--out", "c.safetensors"]);
    for f in ["image.npy", "mask.png"] {
        std::fs::copy(fixture(&format!("sean_sq/{f}")), d.join(f)).unwrap();
    }
    dir
}

const BASE: [&str; 8] =
    ["explain", "--generator", "g.safetensors", "--classifier", "c.safetensors", "--image", "image.npy", "--mask"];

#[test]
fn writes_every_result_file_and_keeps_frozen_rows() {
    let dir = setup();
    let d = dir.path();
    let mut args = BASE.to_vec();
    args.extend([
        "mask.png",
        "--attribute",
        "smile",
        "--regions",
        "skin,mouth",
        "--steps",
        "3",
        "--noise",
        "off",
        "--out",
        "res",
    ]);
    let o = run(d, &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.stdout.is_empty(), "explain prints nothing on stdout");
    let res = d.join("res");
    for f in [
        "query.png",
        "reconstruction.png",
        "counterfactual.png",
        "difference.png",
        "report.png",
        "counterfactual.npy",
        "z_initial.npy",
        "z_final.npy",
        "result.json",
    ] {
        assert!(res.join(f).is_file(), "missing {f}");
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(res.join("result.json")).unwrap()).unwrap();
    for key in [
        "initial_scores",
        "final_scores",
        "initial_logits",
        "final_logits",
        "target",
        "success",
        "loss_decision",
        "loss_proximity",
        "steps_run",
        "regions",
        "attribute",
        "settings",
    ] {
        assert!(v.get(key).is_some(), "result.json lacks {key}");
    }
    assert_eq!(v["attribute"]["name"], "smile");
    assert_eq!(v["regions"][1]["name"], "mouth");
    assert_eq!(v["steps_run"], 3);
    assert_eq!(v["final_scores"].as_array().unwrap().len(), 3);
    let z0 = steex::io::read_npy(&res.join("z_initial.npy")).unwrap();
    let z1 = steex::io::read_npy(&res.join("z_final.npy")).unwrap();
    assert_eq!(z0.shape, vec![1, 19, 24]);
    for j in 0..19 {
        let same = z0.data[j * 24..(j + 1) * 24] == z1.data[j * 24..(j + 1) * 24];
        assert_eq!(same, j != 1 && j != 10, "row {j}");
    }
    let cf = steex::io::read_npy(&res.join("counterfactual.npy")).unwrap();
    assert_eq!(cf.shape, vec![1, 3, 64, 64]);
    // Only the result folder was created: no temporary folders left beside it.
    let names: Vec<String> =
        std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!names.iter().any(|n| n.contains(".tmp")), "{names:?}");

    // A non-empty result folder needs --force, and is left as it was without it.
    let o = run(d, &args);
    assert_fails(&o, &["res", "--force"]);
    assert!(res.join("result.json").is_file());
    args.push("--force");
    let o = run(d, &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn bad_arguments_fail_clearly_and_write_nothing() {
    let dir = setup();
    let d = dir.path();
    let mut bad = image::open(d.join("mask.png")).unwrap().to_luma8();
    bad.put_pixel(0, 0, image::Luma([30]));
    bad.save(d.join("bad.png")).unwrap();
    let case = |extra: &[&str]| {
        let mut a = BASE.to_vec();
        a.extend(extra);
        a.extend(["--steps", "1", "--out", "res"]);
        run(d, &a)
    };
    assert_fails(&case(&["mask.png", "--attribute", "smile", "--regions", "moustache"]), &["moustache", "upper_lip"]);
    assert_fails(&case(&["mask.png", "--attribute", "7"]), &["attribute id 7", "out of range"]);
    assert_fails(&case(&["mask.png", "--attribute", "grumpy"]), &["grumpy", "male, smile, young"]);
    assert_fails(&case(&["bad.png", "--attribute", "smile"]), &["bad.png", "label id 30"]);
    assert_fails(&case(&["mask.png", "--attribute", "smile", "--region-ids", "25"]), &["25", "out of range"]);
    assert!(!d.join("res").exists(), "a failing run left a result folder");
}
