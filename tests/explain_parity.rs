//! The explainer against the published loop (`tools/steex_reference.py::published_loop`,
//! checked against the published code's own output), on the square SEAN fixture and a
//! DenseNet conditioned to react to the style codes.

mod common;

use burn::tensor::{Device, Tensor};
use common::*;
use steex::classifier::AnyClassifier;
use steex::explain::{ExplainSettings, Explanation, StepReport, explain};
use steex::io::{LabelMap, read_weights};
use steex::sean::{NoiseMode, SeanGenerator, SemanticMask};
use weights_convert::Checkpoint;
use weights_convert::models::{SeanSize, convert_densenet, convert_sean_file};

struct Setup {
    g: SeanGenerator,
    c: AnyClassifier,
    image: Tensor<4>,
    mask: SemanticMask,
    labels: LabelMap,
    meta: serde_json::Value,
    device: Device,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let gp = tmp.path().join("g.safetensors");
    let cp = tmp.path().join("c.safetensors");
    convert_sean_file(&fixture("sean_sq/latest_net_G.pth"), &SeanSize::Explicit { width: 64, aspect_ratio: 1.0 })
        .unwrap()
        .write(&gp)
        .unwrap();
    convert_densenet(&Checkpoint::open(fixture("explain/checkpoint.tar")).unwrap(), None).unwrap().write(&cp).unwrap();
    let device = test_device().autodiff();
    let g = SeanGenerator::from_weights(&read_weights(&gp).unwrap(), &device).unwrap();
    let c = AnyClassifier::from_weights(&read_weights(&cp).unwrap(), &device).unwrap();
    let labels = LabelMap::read(&fixture("sean_sq/mask.png")).unwrap();
    let mask = g.mask(labels.to_tensor(&device)).unwrap();
    let image = npy("sean_sq/image.npy").to_tensor::<4>(&device);
    let meta = serde_json::from_str(&std::fs::read_to_string(fixture("explain/meta.json")).unwrap()).unwrap();
    Setup { g, c, image, mask, labels, meta, device }
}

fn settings(s: &Setup, steps: usize, regions: Option<Vec<usize>>) -> ExplainSettings {
    ExplainSettings {
        attribute: s.meta["attribute"].as_u64().unwrap() as usize,
        steps,
        noise: NoiseMode::Off,
        regions,
        ..Default::default()
    }
}

fn run(s: &Setup, settings: &ExplainSettings) -> Explanation {
    explain(&s.g, &s.c, s.image.clone(), &s.mask, settings, &mut |_| {}).unwrap()
}

/// The query and its mirror image, each with its own mask: explained as one batch, and
/// each alone (for comparison). Returns `(batch, alone)` where `batch` is
/// `(explanation, reports)`.
fn pair_batched_and_alone(s: &Setup, set: &ExplainSettings) -> ((Explanation, Vec<StepReport>), [Explanation; 2]) {
    let flipped_img = s.image.clone().flip([3]);
    let mut fl = s.labels.clone();
    for y in 0..fl.height {
        fl.labels[y * fl.width..(y + 1) * fl.width].reverse();
    }
    let batch_labels = Tensor::cat(vec![s.labels.to_tensor(&s.device), fl.to_tensor(&s.device)], 0);
    let mask2 = s.g.mask(batch_labels).unwrap();
    let mut reports = Vec::new();
    let both = explain(&s.g, &s.c, Tensor::cat(vec![s.image.clone(), flipped_img.clone()], 0), &mask2, set, &mut |r| {
        reports.push(r.clone())
    })
    .unwrap();
    let alone0 = run(s, set);
    let mask1 = s.g.mask(fl.to_tensor(&s.device)).unwrap();
    let alone1 = explain(&s.g, &s.c, flipped_img, &mask1, set, &mut |_| {}).unwrap();
    ((both, reports), [alone0, alone1])
}

/// `||z - z_ref|| / ||z_ref - z0||`.
fn z_error(z: &[f32], z_ref: &[f32], z0: &[f32]) -> f64 {
    let d = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>().sqrt();
    d(z, z_ref) / d(z_ref, z0).max(1e-12)
}

fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

#[test]
fn general_and_targeted_runs_match_the_published_loop() {
    let s = setup();
    let a = s.meta["attribute"].as_u64().unwrap() as usize;
    for (tag, regions) in [("general", None), ("targeted", Some(vec![1, 10]))] {
        let m = &s.meta[tag];
        // The published loop reports scores and losses of z after N - 1 = 4 updates.
        let e4 = run(&s, &settings(&s, 4, regions.clone()));
        let r = &e4.images[0];
        let want_p = m["final_probs"][a].as_f64().unwrap();
        let lerr = (logit(r.final_scores[a] as f64) - logit(want_p)).abs();
        let ferr = (r.loss_decision as f64 - m["flip"].as_f64().unwrap()).abs() / m["flip"].as_f64().unwrap();
        let perr = (r.loss_proximity as f64 - m["prox"].as_f64().unwrap()).abs() / m["prox"].as_f64().unwrap();
        assert_eq!(r.target as f64, m["target"].as_f64().unwrap());
        assert!(lerr <= 0.05, "{tag}: target logit error {lerr}");
        assert!(ferr <= 0.05, "{tag}: decision loss relative error {ferr}");
        assert!(perr <= 0.05, "{tag}: proximity loss relative error {perr}");
        let z_ref = npy(&format!("explain/cf_{tag}_z.npy")).data;
        // Its targeted z is after 4 updates, its general z after 5.
        let zerr = if regions.is_some() {
            z_error(&e4.z_final, &z_ref, &e4.z_initial)
        } else {
            let e5 = run(&s, &settings(&s, 5, None));
            z_error(&e5.z_final, &z_ref, &e5.z_initial)
        };
        assert!(zerr <= 0.1, "{tag}: z error / movement {zerr}");
        eprintln!(
            "{tag}: z err/move {zerr:.2e}, target logit err {lerr:.2e}, decision loss rel err {ferr:.2e}, proximity rel err {perr:.2e}"
        );
    }
}

#[test]
fn targeted_rows_outside_the_regions_are_bit_identical() {
    let s = setup();
    let e = run(&s, &settings(&s, 5, Some(vec![1, 10])));
    let [_, l, sl] = e.codes_shape;
    let mut moved = 0;
    for j in 0..l {
        let (a, b) = (&e.z_initial[j * sl..(j + 1) * sl], &e.z_final[j * sl..(j + 1) * sl]);
        if j == 1 || j == 10 {
            moved += (a != b) as usize;
        } else {
            assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()), "frozen row {j} moved");
        }
    }
    assert_eq!(moved, 2, "both chosen regions should move");
}

#[test]
fn a_batch_gives_each_image_its_own_result() {
    let s = setup();
    let ((both, _), alone) = pair_batched_and_alone(&s, &settings(&s, 3, None));
    let n = both.z_final.len() / 2;
    for (i, alone) in alone.iter().enumerate() {
        let err = z_error(&both.z_final[i * n..(i + 1) * n], &alone.z_final, &alone.z_initial);
        assert!(err < 1e-3, "image {i}: batched vs alone {err}");
        let (bl, al) = (both.images[i].final_logits[1], alone.images[0].final_logits[1]);
        assert!((bl - al).abs() <= 1e-3 * al.abs().max(1.0), "image {i}: logits {bl} vs {al}");
    }
}

#[test]
fn early_stop_target_and_observer() {
    let s = setup();
    let mut set = settings(&s, 30, None);
    set.early_stop = Some(2);
    let mut reports = Vec::new();
    let e = explain(&s.g, &s.c, s.image.clone(), &s.mask, &set, &mut |r| reports.push(r.clone())).unwrap();
    let r = &e.images[0];
    assert!(r.success, "should flip within 30 steps");
    assert!(r.steps_run < 30, "early stop did not stop ({} steps)", r.steps_run);
    // One report per forward: updates at each, until the forward that saw the K-th flip.
    assert_eq!(reports.len(), r.steps_run + 1, "one report per forward until the image stopped");
    assert!(reports.windows(2).all(|w| w[1].step == w[0].step + 1));
    assert!(reports.last().unwrap().score[0] > 0.5);
    // Asking for the decision the query already has: the codes follow the reference loop run
    // with that target (tools/steex_reference.py::settings_loop, 5 updates).
    let ref_set =
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(fixture("explain/settings.json")).unwrap())
            .unwrap();
    let kept = ref_set["query_decision"].as_u64().unwrap() as u8;
    assert_eq!(kept, 1 - r.target, "the query's decision");
    let mut set = settings(&s, 5, None);
    set.target = Some(kept);
    let e = run(&s, &set);
    assert_eq!(e.images[0].target, kept);
    let zerr = z_error(&e.z_final, &npy("explain/settings_target_z.npy").data, &e.z_initial);
    let zdef = z_error(&e.z_final, &npy("explain/settings_default_z.npy").data, &e.z_initial);
    assert!(zerr <= 1e-3 && zdef > 0.3, "target {kept}: z error {zerr} (vs the default target's {zdef})");
    // An attribute the model does not have.
    let mut set = settings(&s, 1, None);
    set.attribute = 3;
    let err = explain(&s.g, &s.c, s.image.clone(), &s.mask, &set, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("attribute 3 is out of range"), "{err}");
}

#[test]
fn images_that_stop_early_leave_the_batch_and_the_others_go_on_as_alone() {
    let s = setup();
    // The query and its mirror image stop after different numbers of steps; each ends as
    // it does alone, and the stopped one keeps its last scores in the reports.
    let mut set = settings(&s, 30, None);
    set.early_stop = Some(1);
    let ((both, reports), alone) = pair_batched_and_alone(&s, &set);
    let steps = [both.images[0].steps_run, both.images[1].steps_run];
    assert_ne!(steps[0], steps[1], "the two images should stop at different steps: {steps:?}");
    let n = both.z_final.len() / 2;
    for (i, alone) in alone.iter().enumerate() {
        assert_eq!(both.images[i].steps_run, alone.images[0].steps_run, "image {i}");
        let err = z_error(&both.z_final[i * n..(i + 1) * n], &alone.z_final, &alone.z_initial);
        assert!(err < 1e-3, "image {i}: batched vs alone {err}");
        assert_eq!(both.images[i].success, alone.images[0].success);
    }
    // After the first image stopped, its reported score stays as last computed.
    let first = if steps[0] < steps[1] { 0 } else { 1 };
    let stop_report = reports.iter().position(|r| !r.active[first]).expect("a report after the stop");
    let last = reports[stop_report - 1].score[first];
    assert!(reports[stop_report..].iter().all(|r| r.score[first] == last && !r.active[first]));
    assert!(reports.len() > stop_report, "the other image went on");
}
