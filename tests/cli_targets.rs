//! Softmax classifiers and class targets as a user meets them: a plain torchvision state
//! dict (`tools/make_softmax_fixture.py`, a reduced ResNet with a 5-class head) converted
//! with `--output softmax`, matched against PyTorch, and explained toward a class on the
//! synthetic world's bundled generator; several attribute targets on a sigmoid model; the
//! inputs checked before the models load (a wrong mask size fails fast beside large model
//! files).

mod common;

use std::path::Path;
use std::time::Instant;

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
    let device = test_device();
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
    // Where it changed: every region listed, shares of the change summing to 1.
    let rc = v["region_change"].as_array().unwrap();
    assert_eq!(rc.len(), 5);
    assert!(rc.iter().enumerate().all(|(j, r)| r["id"] == j && r["pixels"].as_u64().unwrap() > 0));
    let total: f64 = rc.iter().map(|r| r["share"].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-4, "{total}");
    let report = image::open(d.join("res/report.png")).unwrap();
    let diff = image::open(d.join("res/difference.png")).unwrap();
    assert!(report.width() > 4 * diff.width(), "five panels side by side");

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

/// The square SEAN fixture and the explain fixture's DenseNet (sigmoid outputs male, smile,
/// young), with the fixture's image and mask, in a temporary folder.
fn sigmoid_setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&convert_sean_64(d, "sean_sq/latest_net_G.pth"));
    let c = fixture("explain/checkpoint.tar");
    ok(&run_bin(d, "weights-convert", &["densenet", "--input", c.to_str().unwrap(), "--out", "c.safetensors"]));
    for f in ["image.npy", "mask.png"] {
        std::fs::copy(fixture(&format!("sean_sq/{f}")), d.join(f)).unwrap();
    }
    dir
}

fn explain_sigmoid(d: &Path, extra: &[&str]) -> std::process::Output {
    let mut a = vec![
        "explain",
        "--generator",
        "g.safetensors",
        "--classifier",
        "c.safetensors",
        "--image",
        "image.npy",
        "--mask",
        "mask.png",
        "--noise",
        "off",
    ];
    a.extend(extra);
    run_bin(d, "steex", &a)
}

/// Binary cross-entropy of a logit toward `t`, in its stable form.
fn bce(logit: f32, t: u8) -> f32 {
    let l = logit as f64;
    (l.max(0.0) - t as f64 * l + (-l.abs()).exp().ln_1p()) as f32
}

#[test]
fn several_attribute_targets_sum_their_losses_and_succeed_together() {
    let dir = sigmoid_setup();
    let d = dir.path();
    // No update: the decision loss is the sum of the two cross-entropies on the
    // reconstruction (the counterfactual of the initial codes).
    ok(&explain_sigmoid(d, &["--attributes", "smile=1,2=0", "--steps", "0", "--out", "r0"]));
    let v = result(d, "r0");
    let l0 = floats(&v["final_logits"]);
    let want = bce(l0[1], 1) + bce(l0[2], 0);
    let got = v["loss_decision"].as_f64().unwrap() as f32;
    assert!((got - want).abs() < 1e-4 * want.max(1.0), "{got} vs {want}");
    assert_eq!(v["goal"]["kind"], "attributes");
    assert_eq!(v["goal"]["targets"][1]["name"], "young");
    assert_eq!(v["settings"]["objective"]["targets"][1]["output"], 2);
    assert_eq!(floats(&v["initial_probabilities"]), floats(&v["initial_scores"]));

    // Optimised: the summed loss falls, and success means both are reached.
    let a =
        ["--attributes", "smile=1,young=0", "--regions", "skin,mouth", "--steps", "100", "--lr", "0.2", "--out", "r1"];
    ok(&explain_sigmoid(d, &a));
    let v = result(d, "r1");
    for r in v["region_change"].as_array().unwrap() {
        let free = r["name"] == "skin" || r["name"] == "mouth";
        assert_eq!(r["code_distance"].as_f64().unwrap() > 0.0, free, "{r}");
    }
    assert!((v["loss_decision"].as_f64().unwrap() as f32) < got, "{v}");
    let p = floats(&v["final_probabilities"]);
    assert_eq!(v["success"].as_bool(), Some(p[1] > 0.5 && p[2] < 0.5), "{p:?}");

    // Bad targets fail clearly and write nothing.
    assert_fails(&explain_sigmoid(d, &["--attributes", "smile", "--out", "x"]), &["--attributes", "smile=1"]);
    assert_fails(&explain_sigmoid(d, &["--attributes", "smile=2", "--out", "x"]), &["--attributes", "0 or 1"]);
    assert_fails(&explain_sigmoid(d, &["--attributes", "grumpy=1", "--out", "x"]), &["grumpy", "male, smile, young"]);
    assert!(!d.join("x").exists());
}

/// `src` with a `padding` tensor of `extra` bytes appended (a sparse file): as large as a
/// full-size model on disk, and refused by a model load (a tensor no layer takes).
fn inflate(src: &Path, dst: &Path, extra: u64) {
    let bytes = std::fs::read(src).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data_len = (bytes.len() - 8 - n) as u64;
    header["padding"] =
        serde_json::json!({"dtype": "U8", "shape": [extra], "data_offsets": [data_len, data_len + extra]});
    let mut h = serde_json::to_vec(&header).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(&h);
    out.extend(&bytes[8 + n..]);
    std::fs::write(dst, &out).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(dst).unwrap();
    f.set_len(out.len() as u64 + extra).unwrap();
}

#[test]
fn a_wrong_mask_size_fails_fast_beside_large_model_files() {
    let dir = sigmoid_setup();
    let d = dir.path();
    let gib = 1u64 << 30;
    inflate(&d.join("g.safetensors"), &d.join("big_g.safetensors"), gib);
    inflate(&d.join("c.safetensors"), &d.join("big_c.safetensors"), gib);
    image::GrayImage::new(64, 32).save(d.join("small.png")).unwrap();
    let args = |mask: &'static str, out: &'static str| {
        vec![
            "explain",
            "--generator",
            "big_g.safetensors",
            "--classifier",
            "big_c.safetensors",
            "--image",
            "image.npy",
            "--mask",
            mask,
            "--attribute",
            "smile",
            "--steps",
            "1",
            "--out",
            out,
        ]
    };
    let t0 = Instant::now();
    let o = run_bin(d, "steex", &args("small.png", "res"));
    let secs = t0.elapsed().as_secs_f64();
    assert_fails(&o, &["small.png", "aspect ratios differ"]);
    assert!(secs < 1.0, "a wrong mask size took {secs:.2} s to report");
    // With a good mask the models do load, and refuse the padding: the check came first.
    let o = run_bin(d, "steex", &args("mask.png", "res"));
    assert_fails(&o, &["padding"]);
    assert!(!d.join("res").exists());
    // The other commands too: a mask with an id beyond the generator's labels (`encode`,
    // `generate`) and an image that does not decode (`classify`) are reported before the
    // large files load, and the good inputs reach the load (which refuses the padding).
    let mut bad = image::open(d.join("mask.png")).unwrap().to_luma8();
    bad.pixels_mut().for_each(|p| p.0[0] = 200);
    bad.save(d.join("bad_ids.png")).unwrap();
    std::fs::write(d.join("junk.png"), b"\x89PNG not really").unwrap();
    let zeros = Array { shape: vec![1, 4, 8], data: vec![0.0; 32] };
    write_npy(&d.join("codes.npy"), &zeros).unwrap();
    let encode = |mask: &str| {
        let a =
            ["encode", "--generator", "big_g.safetensors", "--image", "image.npy", "--mask", mask, "--out", "z.npy"];
        run_bin(d, "steex", &a)
    };
    let generate = |mask: &str| {
        let a =
            ["generate", "--generator", "big_g.safetensors", "--mask", mask, "--codes", "codes.npy", "--out", "x.npy"];
        run_bin(d, "steex", &a)
    };
    let classify =
        |image: &str| run_bin(d, "steex", &["classify", "--classifier", "big_c.safetensors", "--image", image]);
    let timed = |f: &dyn Fn() -> std::process::Output| {
        let t0 = Instant::now();
        let o = f();
        (o, t0.elapsed().as_secs_f64())
    };
    for (what, (o, secs), names) in [
        ("encode", timed(&|| encode("bad_ids.png")), ["bad_ids.png", "200"]),
        ("generate", timed(&|| generate("bad_ids.png")), ["bad_ids.png", "200"]),
        ("classify", timed(&|| classify("junk.png")), ["junk.png", "junk.png"]),
    ] {
        assert_fails(&o, &names);
        assert!(secs < 1.0, "{what}: a bad input took {secs:.2} s to report");
    }
    // explain-dir: a --masks that is no folder.
    std::fs::create_dir(d.join("imgs")).unwrap();
    std::fs::copy(d.join("image.npy"), d.join("imgs/a.npy")).unwrap();
    let (o, secs) = timed(&|| {
        let a = ["explain-dir", "--generator", "big_g.safetensors", "--classifier", "big_c.safetensors", "--images"];
        let b = ["imgs", "--masks", "nowhere", "--attribute", "smile", "--out", "dir_out"];
        run_bin(d, "steex", &[&a[..], &b[..]].concat())
    });
    assert_fails(&o, &["nowhere", "not a folder"]);
    assert!(secs < 1.0, "explain-dir: a missing --masks took {secs:.2} s to report");
    assert!(!d.join("dir_out").join("plan.json").exists());
    for (what, o) in [("encode", encode("mask.png")), ("classify", classify("image.npy"))] {
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("padding"),
            "{what}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// A decision model of two sigmoid outputs on the image's mean red and mean green, offset
/// so that the query sits at `-margin` on the first and `+margin` on the second.
struct MeanColour {
    offset: [f32; 2],
}

impl DecisionModel for MeanColour {
    fn logits(&self, images: burn::tensor::Tensor<4>) -> burn::tensor::Tensor<2> {
        let [b, c, h, w] = images.dims();
        let m = images.reshape([b, c, h * w]).mean_dim(2).reshape([b, c]).slice([0..b, 0..2]).mul_scalar(20.0);
        let off = burn::tensor::Tensor::<2>::from_data(
            burn::tensor::TensorData::new(self.offset.to_vec(), [1, 2]),
            &m.device(),
        );
        m + off
    }
    fn num_outputs(&self) -> usize {
        2
    }
}

/// Both attribute targets reached at once through the library, on the synthetic world's
/// generator: more red (output 0 to 1) and less green (output 1 to 0).
#[test]
fn several_attribute_targets_are_reached_together() {
    use steex::explain::{AttributeTarget, ExplainSettings, Objective, explain};
    let device = test_device().autodiff();
    let g = steex::io::load_generator(Path::new(SYNTH_G), &device).unwrap();
    let s = steex::synth::scene::scene(1_000_003);
    let image = Array { shape: vec![1, 3, 64, 64], data: s.image.clone() }.to_tensor::<4>(&device);
    let labels = LabelMap { height: 64, width: 64, labels: s.labels.clone() };
    let mask = g.mask(labels.to_tensor(&device)).unwrap();
    let probe = MeanColour { offset: [0.0, 0.0] };
    let l = steex_nn_host(
        probe.logits(g.generate(&mask, g.encode(image.clone(), &mask).unwrap(), steex::sean::NoiseMode::Off).unwrap()),
    );
    let model = MeanColour { offset: [-l[0] - 1.0, -l[1] + 1.0] };
    let targets = vec![AttributeTarget { output: 0, target: 1 }, AttributeTarget { output: 1, target: 0 }];
    let settings = ExplainSettings {
        steps: 100,
        adam: steex::explain::AdamConfig { lr: 0.05, ..Default::default() },
        lambda_prox: 0.0,
        noise: steex::sean::NoiseMode::Off,
        early_stop: Some(1),
        objective: Objective::Attributes { targets },
        ..Default::default()
    };
    let e = explain(&g, &model, image, &mask, &settings, &mut |_| {}).unwrap();
    let r = &e.images[0];
    assert!(r.initial_probabilities[0] < 0.5 && r.initial_probabilities[1] > 0.5, "{r:?}");
    assert!(r.success && r.final_probabilities[0] > 0.5 && r.final_probabilities[1] < 0.5, "{r:?}");
    assert_eq!(r.final_probabilities, r.final_scores);
}

fn steex_nn_host(t: burn::tensor::Tensor<2>) -> Vec<f32> {
    Array::from_tensor(t).data
}
