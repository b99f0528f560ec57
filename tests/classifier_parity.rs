//! Decision models against torchvision (`tools/make_fixtures.py`), loaded through
//! `weights-convert densenet|resnet`.

mod common;

use common::*;
use steex::classifier::{AnyClassifier, DecisionModel};
use steex::io::{Array, read_weights};
use weights_convert::Checkpoint;
use weights_convert::models::{convert_densenet, convert_resnet};

fn convert(kind: &str, path: &std::path::Path) -> weights_convert::Converted {
    let ck = Checkpoint::open(path).unwrap();
    match kind {
        "densenet" => convert_densenet(&ck, None).unwrap(),
        _ => convert_resnet(&ck, None).unwrap(),
    }
}

/// Converts `dir/checkpoint.tar` (and its legacy copy when `legacy`), checks the two
/// conversions are byte-identical, and compares logits on every `input_*.npy`.
fn check(kind: &str, dir: &std::path::Path, legacy: bool) -> f32 {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("c.safetensors");
    convert(kind, &dir.join("checkpoint.tar")).write(&out).unwrap();
    if legacy {
        let out2 = tmp.path().join("c2.safetensors");
        convert(kind, &dir.join("checkpoint_legacy.tar")).write(&out2).unwrap();
        assert_eq!(
            std::fs::read(&out).unwrap(),
            std::fs::read(&out2).unwrap(),
            "{kind}: zip and legacy convert differently"
        );
    }
    let device = test_device();
    let model = AnyClassifier::from_weights(&read_weights(&out).unwrap(), &device).unwrap();
    let mut worst = 0f32;
    for tag in ["64x64", "64x128"] {
        let x = steex::io::read_npy(&dir.join(format!("input_{tag}.npy"))).unwrap();
        let want = steex::io::read_npy(&dir.join(format!("logits_{tag}.npy"))).unwrap();
        assert_signal(&want, "reference logits");
        let got = Array::from_tensor(model.logits(x.to_tensor::<4>(&device)));
        let scale = want.data.iter().fold(1f32, |m, v| m.max(v.abs()));
        let err = max_abs_diff(&got, &want) / scale;
        assert!(err <= 1e-3, "{kind} {}: {tag}: relative logit error {err}", dir.display());
        worst = worst.max(err);
    }
    eprintln!("{kind} {}: max |logit error| / max(1, max|logit|) = {worst:.2e}", dir.display());
    worst
}

#[test]
fn densenet_matches_torchvision_on_two_sizes() {
    check("densenet", &fixture("densenet"), true);
}

#[test]
fn resnet_basic_block_matches_torchvision_on_two_sizes() {
    check("resnet", &fixture("resnet_basic"), true);
}

#[test]
fn resnet_bottleneck_matches_torchvision_on_two_sizes() {
    check("resnet", &fixture("resnet_bottleneck"), true);
    // The fixture separates its inputs: every logit differs between them by far more than
    // the relative tolerance (1e-3), so a model that ignored its input would fail.
    let dir = fixture("resnet_bottleneck");
    let (a, b) = (npy("resnet_bottleneck/logits_64x64.npy"), npy("resnet_bottleneck/logits_64x128.npy"));
    let scale = a.data.iter().chain(&b.data).fold(1f32, |m, v| m.max(v.abs()));
    let sep = a.data.iter().zip(&b.data).fold(f32::MAX, |m, (x, y)| m.min((x - y).abs())) / scale;
    eprintln!("{}: logits of the two inputs differ by >= {sep:.3} x scale", dir.display());
    assert!(sep >= 50.0 * 1e-3, "resnet_bottleneck: separation {sep}");
}

#[test]
fn output_names_follow_the_output_count_and_small_images_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("c.safetensors");
    convert("resnet", &fixture("resnet_bottleneck/checkpoint.tar")).write(&out).unwrap();
    let m = AnyClassifier::from_weights(&read_weights(&out).unwrap(), &test_device()).unwrap();
    assert_eq!(m.names(), ["move_forward", "stop", "turn_left", "turn_right"]);
    assert!(m.check_input_size(16, 64).unwrap_err().to_string().contains("too small"));
    let ck = Checkpoint::open(fixture("densenet/checkpoint.tar")).unwrap();
    let c = convert_densenet(&ck, Some("celeba")).unwrap();
    c.write(&out).unwrap();
    let m = AnyClassifier::from_weights(&read_weights(&out).unwrap(), &test_device()).unwrap();
    assert_eq!(m.names(), ["male", "smile", "young"]);
    assert!(m.check_input_size(8, 8).is_err());
    assert!(m.check_input_size(64, 64).is_ok());
    // A generator is not a classifier.
    let e =
        convert_resnet(&Checkpoint::open(fixture("sean_sq/latest_net_G.pth")).unwrap(), None).unwrap_err().to_string();
    assert!(e.contains("not a ResNet decision model"), "{e}");
}

/// Full-width DenseNet121, ResNet-18 and ResNet-50 from `tools/make_fixtures.py --full`
/// (git-ignored); runs when present.
#[test]
fn full_width_models_match_when_present() {
    for (kind, name) in [("densenet", "densenet121"), ("resnet", "resnet18"), ("resnet", "resnet50")] {
        let dir = fixture(&format!("full/{name}"));
        if !dir.join("checkpoint.tar").exists() {
            skip_full(&format!("classifier_parity {name}"), "not present (tools/make_fixtures.py --full)");
            continue;
        }
        check(kind, &dir, false);
    }
}
