//! `steex classify` as a user runs it.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

#[test]
fn classify_prints_json_only_and_refuses_bad_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bin = |n: &str| Path::new(env!("CARGO_BIN_EXE_steex")).with_file_name(n);
    let ck = fixture("densenet/checkpoint.tar");
    let o = Command::new(bin("weights-convert"))
        .args(["densenet", "--input", ck.to_str().unwrap(), "--out", "c.safetensors", "--preset", "celeba"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = |args: &[&str]| steex_command().args(args).current_dir(d).output().unwrap();
    let img = fixture("densenet/input_64x128.npy");
    let o = run(&["classify", "--classifier", "c.safetensors", "--image", img.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is only JSON");
    assert_eq!(v["names"], serde_json::json!(["male", "smile", "young"]));
    let logits: Vec<f32> = v["logits"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    let want = npy("densenet/logits_64x128.npy");
    for (a, b) in logits.iter().zip(&want.data) {
        assert!((a - b).abs() <= 1e-3 * b.abs().max(1.0), "{a} vs {b}");
    }
    // Every probability against the sigmoid of PyTorch's logit (not of the printed one).
    let probs = v["probabilities"].as_array().unwrap();
    assert_eq!(probs.len(), want.data.len());
    for (p, &l) in probs.iter().zip(&want.data) {
        let (p, q) = (p.as_f64().unwrap(), 1.0 / (1.0 + (-(l as f64)).exp()));
        assert!((p - q).abs() < 1e-3, "probability {p} vs torch's {q}");
    }

    // Too small an image, a generator given as classifier, a missing file.
    image::RgbImage::new(8, 8).save(d.join("tiny.png")).unwrap();
    assert_fails(
        &run(&["classify", "--classifier", "c.safetensors", "--image", "tiny.png"]),
        &["tiny.png", "too small"],
    );
    let o = convert_sean_64(d, "sean_sq/latest_net_G.pth");
    assert!(o.status.success());
    assert_fails(
        &run(&["classify", "--classifier", "g.safetensors", "--image", "tiny.png"]),
        &["g.safetensors", "not a decision model"],
    );
    assert_fails(&run(&["classify", "--classifier", "none.safetensors", "--image", "tiny.png"]), &["none.safetensors"]);
}
