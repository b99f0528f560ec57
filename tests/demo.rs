//! The one-command demo on a handful of held-out scenes with the bundled models (no
//! training): the summary's fields and ranges, the files, the folder rules.

mod common;

use common::{assert_fails, run_bin};

#[test]
fn demo_writes_a_summary_scored_against_the_known_cause() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let o = out.to_str().unwrap();
    let args = ["demo", "--scenes", "6", "--batch", "3", "--steps", "12", "--json", "--workers"];
    let r = run_bin(dir.path(), "steex", &[&args[..], &["2", "--out", o]].concat());
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    // --json: stdout is exactly the summary object.
    let s: serde_json::Value = serde_json::from_slice(&r.stdout).expect("stdout is JSON");
    let on_disk: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s, on_disk);
    assert_eq!(s["n_scenes"], 6);
    for key in [
        "success_rate",
        "causal_change_fraction",
        "lens_change_fraction",
        "targeted_success_causal",
        "targeted_success_noncausal",
        "classifier_accuracy",
        "classifier_accuracy_reconstructed",
        "segmenter_pixel_accuracy",
    ] {
        let v = s[key].as_f64().unwrap_or_else(|| panic!("{key} missing"));
        assert!((0.0..=1.0).contains(&v), "{key} = {v}");
    }
    let unchanged = s["n_unchanged"].as_u64().expect("n_unchanged");
    assert!(unchanged <= 6);
    let steps = s["mean_steps"].as_f64().unwrap();
    assert!((0.0..=12.0).contains(&steps), "mean_steps {steps}");
    assert!(s["seconds_per_explanation"].as_f64().unwrap() > 0.0);
    // The bundled models work: the decision model follows the rule on the real scenes, the
    // segmenter labels most pixels right, and some explanation flips a decision.
    assert!(s["classifier_accuracy"].as_f64().unwrap() >= 5.0 / 6.0, "{s}");
    assert!(s["segmenter_pixel_accuracy"].as_f64().unwrap() > 0.7, "{s}");
    assert!(s["success_rate"].as_f64().unwrap() > 0.0, "{s}");
    // The explanations point at the known cause (seen with these settings: success 0.83,
    // 74% of the change inside the lamp, which covers about a tenth of the pixels; lamp only
    // 0.83 vs all but the lamp 0.0): an explainer that ignored the regions, or changed the
    // image evenly, fails these.
    let f = |k: &str| s[k].as_f64().unwrap();
    assert!(f("success_rate") >= 0.5, "{s}");
    assert!(f("causal_change_fraction") > 0.5, "most of the change is in the lamp: {s}");
    assert!(f("targeted_success_causal") >= 0.5, "{s}");
    assert!(f("targeted_success_noncausal") <= 1.0 / 6.0, "all but the lamp cannot flip the decision: {s}");
    assert!(f("classifier_accuracy_reconstructed") >= 5.0 / 6.0, "{s}");

    // One line per scene, with the three modes.
    let lines = std::fs::read_to_string(out.join("scenes.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 6);
    for r in &rows {
        for m in ["general", "causal_only", "noncausal_only"] {
            assert!(r[m]["success"].is_boolean() && r[m]["steps"].as_u64().unwrap() <= 12, "{r}");
            // The share inside the lamp, or null when the explanation changed nothing.
            let f = &r[m]["causal_change_fraction"];
            assert!(f.is_null() || (0.0..=1.0).contains(&f.as_f64().unwrap()), "{r}");
            assert_eq!(f.is_null(), r[m]["steps"] == 0, "null exactly when no step was taken: {r}");
            // The lens is part of the lamp: its share is never larger.
            let lens = &r[m]["lens_change_fraction"];
            assert_eq!(lens.is_null(), f.is_null(), "{r}");
            if let (Some(lens), Some(f)) = (lens.as_f64(), f.as_f64()) {
                assert!((0.0..=f + 1e-12).contains(&lens), "{r}");
            }
        }
        for key in ["initial_score", "reconstruction_score"] {
            assert!((0.0..=1.0).contains(&r[key].as_f64().unwrap()), "{r}");
        }
    }
    // The summary's fraction is the mean over successful general explanations that changed
    // something.
    let fr: Vec<f64> = rows
        .iter()
        .filter(|r| r["general"]["success"] == true)
        .filter_map(|r| r["general"]["causal_change_fraction"].as_f64())
        .collect();
    if !fr.is_empty() {
        let mean = fr.iter().sum::<f64>() / fr.len() as f64;
        assert!((mean - s["causal_change_fraction"].as_f64().unwrap()).abs() < 1e-9, "{mean} vs {s}");
        let lens: Vec<f64> = rows
            .iter()
            .filter(|r| r["general"]["success"] == true)
            .filter_map(|r| r["general"]["lens_change_fraction"].as_f64())
            .collect();
        let mean = lens.iter().sum::<f64>() / lens.len() as f64;
        assert!((mean - s["lens_change_fraction"].as_f64().unwrap()).abs() < 1e-9, "{mean} vs {s}");
    }
    let success = rows.iter().filter(|r| r["general"]["success"] == true).count() as f64 / 6.0;
    assert!((success - s["success_rate"].as_f64().unwrap()).abs() < 1e-9);
    let report = image::open(out.join("report.png")).expect("report.png decodes");
    assert!(report.width() > 4 * 128 && report.height() > 6 * 128, "{:?}", (report.width(), report.height()));

    // The (batch, mode) jobs are independent: one worker gives the same per-scene results.
    let one = dir.path().join("one-worker");
    let r = run_bin(dir.path(), "steex", &[&args[..], &["1", "--out", one.to_str().unwrap()]].concat());
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(std::fs::read_to_string(one.join("scenes.jsonl")).unwrap(), lines);
    let s1: serde_json::Value = serde_json::from_slice(&r.stdout).expect("stdout is JSON");
    assert_eq!((s1["settings"]["workers"].as_u64(), s["settings"]["workers"].as_u64()), (Some(1), Some(2)));
    assert_eq!(s1["causal_change_fraction"], s["causal_change_fraction"]);
    let zero =
        run_bin(dir.path(), "steex", &[&args[..], &["0", "--out", dir.path().join("z").to_str().unwrap()]].concat());
    assert_fails(&zero, &["--workers"]);

    // A non-empty folder needs --force.
    let again = run_bin(dir.path(), "steex", &["demo", "--scenes", "1", "--steps", "1", "--out", o]);
    assert_fails(&again, &["--force"]);
    assert!(out.join("summary.json").exists());
}

/// The demo's options reach the run: `--models` with the bundled files on disk gives the
/// bundled models' results; `--first-scene` starts later in the same held-out scenes;
/// `--lr 0` moves nothing; `--early-stop 1` stops images early;
/// a heavy `--lambda-prox` keeps the codes nearer; `--adam-eps` is recorded and changes the
/// steps' size.
#[test]
fn demo_options_change_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let demo = |out: &str, extra: &[&str]| -> serde_json::Value {
        let base = ["demo", "--scenes", "3", "--batch", "3", "--steps", "8", "--json", "--workers", "1", "--out"];
        let r = run_bin(d, "steex", &[&base[..], &[out], extra].concat());
        assert!(r.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&r.stderr));
        serde_json::from_slice(&r.stdout).expect("stdout is JSON")
    };
    let lines = |out: &str| std::fs::read_to_string(d.join(out).join("scenes.jsonl")).unwrap();
    let base = demo("base", &[]);
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/synthetic");
    let on_disk = demo("models", &["--models", models.to_str().unwrap()]);
    assert_eq!(lines("models"), lines("base"), "--models with the bundled files");
    assert_eq!(on_disk["causal_change_fraction"], base["causal_change_fraction"]);

    // `--first-scene 1`: the held-out scenes from the second on, each explained as before.
    let later = demo("later", &["--first-scene", "1"]);
    assert_eq!(later["settings"]["first_scene"].as_u64(), Some(1));
    let seeds = |out: &str| -> Vec<(u64, bool)> {
        lines(out)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| (v["seed"].as_u64().unwrap(), v["stop"].as_bool().unwrap()))
            .collect()
    };
    let (b, l) = (seeds("base"), seeds("later"));
    assert_eq!(&l[..2], &b[1..], "scenes 1 and 2 of the base run");
    assert_eq!(l[2].0, b[2].0 + 1, "then the next held-out scene");

    let still = demo("lr0", &["--lr", "0"]);
    assert_eq!(still["settings"]["lr"].as_f64(), Some(0.0));
    assert_eq!(still["success_rate"].as_f64(), Some(0.0), "nothing moves at lr 0: {still}");
    assert!(base["success_rate"].as_f64().unwrap() > 0.0, "{base}");

    let early = demo("early", &["--early-stop", "1"]);
    assert!(early["mean_steps"].as_f64().unwrap() < base["mean_steps"].as_f64().unwrap(), "{early} vs {base}");

    let near = demo("prox", &["--lambda-prox", "1000"]);
    assert_eq!(near["settings"]["lambda_prox"].as_f64(), Some(1000.0));
    assert_ne!(lines("prox"), lines("base"), "--lambda-prox changed nothing");

    let eps = demo("eps", &["--adam-eps", "10"]);
    assert_eq!(eps["settings"]["adam_eps"].as_f64(), Some(10.0));
    assert_ne!(lines("eps"), lines("base"), "--adam-eps changed nothing");
}
