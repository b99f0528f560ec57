//! Softmax classifiers and class targets as a user meets them: a plain torchvision state
//! dict (`tools/make_softmax_fixture.py`, a reduced ResNet with a 5-class head) converted
//! with `--output softmax`, matched against PyTorch, and explained toward a class on the
//! synthetic world's bundled generator; several attribute targets on a sigmoid model; the
//! inputs checked before the models load.

mod common;

use std::path::Path;

use common::*;
use steex::classifier::{AnyClassifier, DecisionModel, OutputKind};
use steex::io::{Array, LabelMap, read_weights, write_npy};

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `weights-convert resnet --output softmax` of the fixture into `d/c.safetensors`.
fn convert_softmax(d: &Path) {
    let input = fixture("softmax_resnet/model.pth");
    ok(&run_bin(
        d,
        "weights-convert",
        &["resnet", "--input", input.to_str().unwrap(), "--out", "c.safetensors", "--output", "softmax"],
    ));
}

/// Scene `seed` of the synthetic world as `d/scene.npy` and `d/scene.png`.
fn write_scene(d: &Path, seed: u64) {
    let s = steex::synth::scene::scene(seed);
    let n = s.labels.len();
    let side = (n as f64).sqrt() as usize;
    write_npy(&d.join("scene.npy"), &Array { shape: vec![1, 3, side, side], data: s.image }).unwrap();
    std::fs::write(d.join("scene.png"), LabelMap { height: side, width: side, labels: s.labels }.png()).unwrap();
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

fn result(d: &Path, out: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(d.join(out).join("result.json")).unwrap()).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

#[test]
fn plain_torchvision_state_dict_converts_as_softmax_and_matches_pytorch() {
    let tmp = tempfile::tempdir().unwrap();
    convert_softmax(tmp.path());
    let w = read_weights(&tmp.path().join("c.safetensors")).unwrap();
    assert_eq!(w.metadata()["output"], "softmax");
    assert_eq!(w.metadata()["layout"], "torchvision");
    let device = cpu();
    let model = AnyClassifier::from_weights(&w, &device).unwrap();
    assert_eq!((model.num_outputs(), model.output_kind()), (5, OutputKind::Softmax));
    for tag in ["64x64", "64x128"] {
        let x = npy(&format!("softmax_resnet/input_{tag}.npy"));
        let want = npy(&format!("softmax_resnet/logits_{tag}.npy"));
        assert_signal(&want, "reference logits");
        let got = Array::from_tensor(model.logits(x.to_tensor::<4>(&device)));
        let scale = want.data.iter().fold(1f32, |m, v| m.max(v.abs()));
        let err = max_abs_diff(&got, &want) / scale;
        assert!(err <= 1e-3, "{tag}: relative logit error {err}");
    }
    // The published default stays sigmoid, recorded as such.
    let input = fixture("softmax_resnet/model.pth");
    ok(&run_bin(
        tmp.path(),
        "weights-convert",
        &["resnet", "--input", input.to_str().unwrap(), "--out", "s.safetensors"],
    ));
    assert_eq!(read_weights(&tmp.path().join("s.safetensors")).unwrap().metadata()["output"], "sigmoid");
    let o = run_bin(
        tmp.path(),
        "weights-convert",
        &["resnet", "--input", input.to_str().unwrap(), "--out", "x.safetensors", "--output", "tanh"],
    );
    assert_fails(&o, &["tanh", "sigmoid or softmax"]);
}

const SYNTH_G: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/synthetic/generator.safetensors");

fn explain(d: &Path, classifier: &str, extra: &[&str]) -> std::process::Output {
    let mut a = vec![
        "explain",
        "--generator",
        SYNTH_G,
        "--classifier",
        classifier,
        "--image",
        "scene.npy",
        "--mask",
        "scene.png",
        "--noise",
        "off",
    ];
    a.extend(extra);
    run_bin(d, "steex", &a)
}

#[test]
fn target_class_drives_the_argmax_to_the_class() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    convert_softmax(d);
    write_scene(d, 1_000_003);
    let o = explain(
        d,
        "c.safetensors",
        &[
            "--target-class",
            "3",
            "--steps",
            "300",
            "--lr",
            "0.3",
            "--lambda-prox",
            "0",
            "--early-stop",
            "1",
            "--out",
            "res",
        ],
    );
    ok(&o);
    let v = result(d, "res");
    let (p0, p1) = (floats(&v["initial_probabilities"]), floats(&v["final_probabilities"]));
    assert_ne!(argmax(&p0), 3, "the query is already of class 3: the test shows nothing");
    assert_eq!(argmax(&p1), 3, "{v}");
    assert_eq!(argmax(&floats(&v["final_logits"])), 3);
    assert!((p1.iter().sum::<f32>() - 1.0).abs() < 1e-4, "softmax probabilities: {p1:?}");
    assert_eq!(v["success"], true);
    assert_eq!(v["goal"]["kind"], "class");
    assert_eq!(v["goal"]["targets"][0]["id"], 3);
    assert_eq!(v["settings"]["objective"]["class"], 3);

    // Away from the class the query has: the argmax leaves it.
    let start = argmax(&p0).to_string();
    let o = explain(
        d,
        "c.safetensors",
        &[
            "--away-from-class",
            &start,
            "--steps",
            "300",
            "--lr",
            "0.3",
            "--lambda-prox",
            "0",
            "--early-stop",
            "1",
            "--out",
            "away",
        ],
    );
    ok(&o);
    let v = result(d, "away");
    assert_ne!(argmax(&floats(&v["final_probabilities"])).to_string(), start, "{v}");
    assert_eq!((v["success"].as_bool(), v["goal"]["kind"].as_str()), (Some(true), Some("away_from_class")));

    // A softmax model needs a class; a class needs a softmax model.
    assert_fails(&explain(d, "c.safetensors", &["--steps", "1", "--out", "x"]), &["--target-class", "softmax"]);
    assert_fails(&explain(d, "c.safetensors", &["--target-class", "9", "--out", "x"]), &["--target-class", "9"]);
    assert_fails(&explain(d, "c.safetensors", &["--attributes", "output_1=1", "--out", "x"]), &["softmax"]);
    let sig = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/synthetic/classifier.safetensors");
    assert_fails(&explain(d, sig, &["--target-class", "0", "--out", "x"]), &["sigmoid", "--output softmax"]);
    assert!(!d.join("x").exists());
}
