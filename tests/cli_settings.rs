//! Each `steex explain` setting that changes the result (`--lr`, `--lambda-prox`,
//! `--target`, `--region-ids`, `--early-stop`, `--noise seed:N`; `--preset` for the names and
//! the default attribute), through the binary, against the
//! reference loop run with the same setting (`tools/steex_reference.py::settings_loop`,
//! written by `tools/make_fixtures.py` into `tests/fixtures/explain/settings*.{json,npy}`).
//!
//! Ignoring a setting would leave the run's codes at least 0.5 x their movement away from
//! the reference's (the script asserts each setting changes the codes; the figures are in
//! settings.json), against a tolerance of 1e-3 here (the runs agree to ~1e-5). The seeded
//! noise's reference replays the stream steex draws for the seed
//! (`explain/noise_seed7.npy`, written by `examples/noise_stream.rs`; the test checks that the
//! library still draws exactly it).

mod common;

use std::path::Path;

use common::*;
use steex::io::{Array, read_npy};

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    convert_explain_models(d);
    dir
}

fn explain(d: &Path, out: &str, extra: &[String]) -> std::process::Output {
    let (image, mask) = (fixture("sean_sq/image.npy"), fixture("sean_sq/mask.png"));
    let mut a: Vec<String> = [
        "explain",
        "--generator",
        "g.safetensors",
        "--classifier",
        "c.safetensors",
        "--image",
        image.to_str().unwrap(),
        "--mask",
        mask.to_str().unwrap(),
        "--out",
        out,
    ]
    .map(String::from)
    .to_vec();
    if !extra.iter().any(|x| x == "--noise") {
        a.extend(["--noise".into(), "off".into()]);
    }
    if !extra.iter().any(|x| x == "--attribute") {
        a.extend(["--attribute".into(), "smile".into()]);
    }
    a.extend(extra.iter().cloned());
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    run_bin(d, "steex", &a)
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn norm(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>().sqrt()
}

/// `||z - z_ref|| / ||z_ref - z0||` of run `out` against the reference of setting `name`.
fn z_error(d: &Path, out: &str, name: &str) -> f64 {
    let z = read_npy(&d.join(out).join("z_final.npy")).unwrap();
    let z0 = read_npy(&d.join(out).join("z_initial.npy")).unwrap();
    let zr: Array = npy(&format!("explain/settings_{name}_z.npy"));
    assert_eq!(z.data.len(), zr.data.len(), "{name}");
    norm(&z.data, &zr.data) / norm(&zr.data, &z0.data).max(1e-12)
}

#[test]
fn each_setting_matches_the_reference_loop_with_that_setting() {
    let dir = setup();
    let d = dir.path();
    let meta = json(&fixture("explain/settings.json"));
    let settings = meta["settings"].as_object().unwrap();
    assert!(settings.len() >= 7, "settings.json: {}", settings.len());
    // The seeded-noise reference replayed the stream the library draws for its seed.
    let noise = &settings["seeded_noise"]["noise"];
    let stream: Array = npy(&format!("explain/noise_seed{}.npy", noise["seed"]));
    assert_eq!(stream.data.len() as u64, noise["values_per_forward"].as_u64().unwrap());
    let seed = noise["seed"].as_u64().unwrap();
    assert_eq!(stream.data, steex::sean::noise::seeded_stream(seed, stream.data.len()), "the seeded stream changed");
    for (name, s) in settings {
        let cli: Vec<String> = s["cli"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
        let out = format!("r_{name}");
        let o = explain(d, &out, &cli);
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
        let r = json(&d.join(&out).join("result.json"));
        let err = z_error(d, &out, name);
        eprintln!("{name} {cli:?}: z error / movement {err:.2e}, {} steps", r["steps_run"]);
        assert!(err <= 1e-3, "{name}: ||z - z_ref|| / ||z_ref - z0|| = {err}");
        assert_eq!(r["steps_run"].as_u64(), s["updates"].as_u64(), "{name}: updates");
        assert_eq!(r["target"].as_u64(), s["target"].as_u64(), "{name}: target");
        assert_eq!(r["attribute"]["id"].as_u64(), s["attribute"].as_u64(), "{name}: attribute");
        if name != "default" {
            // The fixture can tell the setting from the default.
            let diff = s["max_diff_from_default"].as_f64().unwrap();
            assert!(diff > 1e-2, "{name}: the reference barely changes ({diff})");
            assert!(z_error(d, &out, "default") > 0.3, "{name}: the run equals the default one");
        }
    }
    // --region-ids: rows outside the regions are bit-identical to the initial codes.
    let z = read_npy(&d.join("r_region_ids/z_final.npy")).unwrap();
    let z0 = read_npy(&d.join("r_region_ids/z_initial.npy")).unwrap();
    let s = z.shape[2];
    for j in 0..z.shape[1] {
        let same = z.data[j * s..(j + 1) * s] == z0.data[j * s..(j + 1) * s];
        assert_eq!(same, j != 2 && j != 13, "row {j}");
    }
}

#[test]
fn preset_names_and_default_attribute_come_from_the_chosen_preset() {
    let dir = setup();
    let d = dir.path();
    let mask = fixture("sean_sq/mask.png");
    let image = fixture("sean_sq/image.npy");
    let base = |out: &str, extra: &[&str]| {
        let mut a = vec![
            "explain",
            "--generator",
            "g.safetensors",
            "--classifier",
            "c.safetensors",
            "--image",
            image.to_str().unwrap(),
            "--mask",
            mask.to_str().unwrap(),
            "--noise",
            "off",
            "--steps",
            "5",
            "--out",
            out,
        ];
        a.extend_from_slice(extra);
        run_bin(d, "steex", &a)
    };
    // No preset recorded in either file and none given: the attribute must be named.
    assert_fails(&base("none", &[]), &["--attribute is required", "smile"]);
    // celeba: the default attribute is `smile` (1), `nose,hair` are labels 2 and 13: the
    // reference run of `--region-ids 2,13`.
    let o = base("celeba", &["--preset", "celeba", "--regions", "nose,hair"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = json(&d.join("celeba/result.json"));
    assert_eq!((r["attribute"]["id"].as_u64(), r["attribute"]["name"].as_str()), (Some(1), Some("smile")), "{r}");
    assert_eq!(r["preset"], "celeba");
    let err = z_error(d, "celeba", "region_ids");
    assert!(err <= 1e-3, "--preset celeba --regions nose,hair: z error {err}");
    // bdd: its default attribute is output 0, another run than celeba's.
    let o = base("bdd", &["--preset", "bdd", "--regions", "nose,hair"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = json(&d.join("bdd/result.json"));
    assert_eq!(r["attribute"]["id"].as_u64(), Some(0), "{r}");
    assert!(z_error(d, "bdd", "region_ids") > 0.3, "--preset bdd gave celeba's run");
    // An unknown preset is refused, naming it.
    assert_fails(&base("x", &["--preset", "imagenet", "--attribute", "smile"]), &["--preset imagenet"]);
}
