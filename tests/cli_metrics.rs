//! `steex metrics` end to end: flat and explain-dir layouts, `--json`, skipped models, bad
//! inputs. The models are the committed metrics fixtures, converted by `weights-convert`.

mod common;

use std::path::Path;

use common::*;
use steex::io::{Array, write_npy};

fn json(rel: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixture(rel)).unwrap()).unwrap()
}

fn convert(cwd: &Path, kind: &str, input: &str, out: &str) {
    let input = fixture(input);
    let o = run_bin(cwd, "weights-convert", &[kind, "--input", input.to_str().unwrap(), "--out", out]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn metrics(cwd: &Path, args: &[&str]) -> std::process::Output {
    let mut a = vec!["metrics"];
    a.extend_from_slice(args);
    run_bin(cwd, "steex", &a)
}

fn parse(o: &std::process::Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("stdout is only JSON")
}

/// RGB bytes of a PNG.
fn rgb(path: &Path) -> Vec<u8> {
    image::open(path).unwrap().to_rgb8().into_raw()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

#[test]
fn flat_folder_fid_and_proximity_with_skipped_models() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    convert(cwd, "inception", "metrics/inception_div16.pth", "inception.safetensors");
    let (real, fake) = (fixture("metrics/real"), fixture("metrics/fake"));
    let o = metrics(
        cwd,
        &[
            "--real",
            real.to_str().unwrap(),
            "--counterfactuals",
            fake.to_str().unwrap(),
            "--inception",
            "inception.safetensors",
            "--json",
            "--batch",
            "3",
        ],
    );
    let v = parse(&o);
    for k in ["n_pairs", "success_rate", "l1", "l2", "code_distance", "fid", "fva", "mnac"] {
        assert!(v.get(k).is_some(), "key {k} missing: {v}");
    }
    let meta = json("metrics/inception_div16.json");
    let names = meta["images"].as_array().unwrap();
    assert_eq!(v["n_pairs"].as_u64().unwrap() as usize, names.len());
    // FID as pytorch-fid computes it on the same images and weights.
    let (got, want) = (v["fid"].as_f64().unwrap(), meta["fid"].as_f64().unwrap());
    assert!(rel(got, want) < 1e-3, "FID {got} vs pytorch-fid {want}");
    // Proximity, recomputed here from the PNG bytes.
    let (mut l1, mut l2) = (0f64, 0f64);
    for n in names {
        let n = n.as_str().unwrap();
        let (a, b) = (rgb(&real.join(n)), rgb(&fake.join(n)));
        let d: Vec<f64> = a.iter().zip(&b).map(|(&x, &y)| (x as f64 - y as f64) / 255.0).collect();
        l1 += d.iter().map(|x| x.abs()).sum::<f64>() / d.len() as f64;
        l2 += (d.iter().map(|x| x * x).sum::<f64>() / d.len() as f64).sqrt();
    }
    let k = names.len() as f64;
    assert!(rel(v["l1"].as_f64().unwrap(), l1 / k) < 1e-5, "l1 {} vs {}", v["l1"], l1 / k);
    assert!(rel(v["l2"].as_f64().unwrap(), l2 / k) < 1e-5, "l2 {} vs {}", v["l2"], l2 / k);
    // No result.json, no codes, no face model, no oracle: null, with a note each.
    for k in ["success_rate", "code_distance", "fva", "mnac"] {
        assert!(v[k].is_null(), "{k} should be null: {v}");
    }
    let err = String::from_utf8_lossy(&o.stderr);
    for note in ["FVA: skipped", "MNAC: skipped", "success rate: skipped"] {
        assert!(err.contains(note), "stderr lacks `{note}`: {err}");
    }
    // Without --json: a table on stdout.
    let o = metrics(cwd, &["--real", real.to_str().unwrap(), "--counterfactuals", fake.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("L1") && table.contains("FID") && table.contains("pairs"), "{table}");
}

#[test]
fn explain_dir_layout_success_codes_fva_and_mnac() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    convert(cwd, "face", "metrics/face_w4.pth", "face.safetensors");
    convert(cwd, "oracle", "metrics/oracle_w4.tar", "oracle.safetensors");
    let meta = json("metrics/face.json");
    let names: Vec<&str> = meta["images"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let out = cwd.join("run");
    let mut flipped = 0;
    let mut code = 0f64;
    for (i, n) in names.iter().enumerate() {
        let stem = n.trim_end_matches(".png");
        let d = out.join(stem);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(fixture(&format!("metrics/face_cf/{n}")), d.join("counterfactual.png")).unwrap();
        let success = i % 3 != 0;
        flipped += usize::from(success);
        let r = serde_json::json!({"success": success, "attribute": {"id": 1, "name": "smile"}});
        std::fs::write(d.join("result.json"), r.to_string()).unwrap();
        // 3 regions x 2: region 1 moves by (i, 1).
        let zi = vec![0.5f32; 6];
        let mut zf = zi.clone();
        zf[2] += i as f32;
        zf[3] += 1.0;
        code += ((i * i + 1) as f64).sqrt();
        write_npy(&d.join("z_initial.npy"), &Array { shape: vec![1, 3, 2], data: zi }).unwrap();
        write_npy(&d.join("z_final.npy"), &Array { shape: vec![1, 3, 2], data: zf }).unwrap();
    }
    // Stray files next to the result folders are ignored.
    std::fs::write(out.join("results.jsonl"), "").unwrap();
    let real = fixture("metrics/face_query");
    let o = metrics(
        cwd,
        &[
            "--real",
            real.to_str().unwrap(),
            "--counterfactuals",
            "run",
            "--face-model",
            "face.safetensors",
            "--oracle",
            "oracle.safetensors",
            "--json",
        ],
    );
    let v = parse(&o);
    let n = names.len();
    assert_eq!(v["n_pairs"].as_u64().unwrap() as usize, n);
    assert!((v["success_rate"].as_f64().unwrap() - flipped as f64 / n as f64).abs() < 1e-12, "{v}");
    assert!(rel(v["code_distance"].as_f64().unwrap(), code / n as f64) < 1e-6, "{v}");
    assert!((v["regions_changed"].as_f64().unwrap() - 1.0).abs() < 1e-12, "{v}");
    // FVA and MNAC equal torch's on the same models and images (target `smile` = 31 left out).
    assert_eq!(v["fva"].as_f64().unwrap(), meta["fva"].as_f64().unwrap(), "{v}");
    assert_eq!(v["mnac"].as_f64().unwrap(), meta["mnac"].as_f64().unwrap(), "{v}");
    assert!(v["fid"].is_null());
    assert!(String::from_utf8_lossy(&o.stderr).contains("FID: skipped"));
    // An explicit target that is not the one of result.json changes MNAC: all but attribute 0.
    let o = metrics(
        cwd,
        &[
            "--real",
            real.to_str().unwrap(),
            "--counterfactuals",
            "run",
            "--oracle",
            "oracle.safetensors",
            "--oracle-target",
            "0",
            "--json",
        ],
    );
    let v0 = parse(&o);
    // torch's MNAC with attribute 0 as the target (tools/make_metrics_fixtures.py).
    let want = meta["mnac_target0"].as_f64().unwrap();
    assert_ne!(want, meta["mnac"].as_f64().unwrap());
    assert_eq!(v0["mnac"].as_f64().unwrap(), want);
}

#[test]
fn bad_inputs_fail_with_clear_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let real = fixture("metrics/real");
    let fake = fixture("metrics/fake");
    // A counterfactual without a real image of the same stem.
    std::fs::create_dir(cwd.join("cf")).unwrap();
    std::fs::copy(fake.join("img0.png"), cwd.join("cf/unknown.png")).unwrap();
    let o = metrics(cwd, &["--real", real.to_str().unwrap(), "--counterfactuals", "cf"]);
    assert_fails(&o, &["no real image for `unknown`"]);
    // Not a folder; an empty folder.
    let o = metrics(cwd, &["--real", real.to_str().unwrap(), "--counterfactuals", "missing"]);
    assert_fails(&o, &["--counterfactuals", "not a folder"]);
    std::fs::create_dir(cwd.join("empty")).unwrap();
    let o = metrics(cwd, &["--real", real.to_str().unwrap(), "--counterfactuals", "empty"]);
    assert_fails(&o, &["no images"]);
    // The wrong model for a flag.
    convert(cwd, "oracle", "metrics/oracle_w4.tar", "oracle.safetensors");
    let o = metrics(
        cwd,
        &[
            "--real",
            real.to_str().unwrap(),
            "--counterfactuals",
            fake.to_str().unwrap(),
            "--face-model",
            "oracle.safetensors",
        ],
    );
    assert_fails(&o, &["oracle.safetensors", "not a face embedder"]);
    // A file that is not an image.
    std::fs::write(cwd.join("cf/img1.png"), b"not a png").unwrap();
    std::fs::remove_file(cwd.join("cf/unknown.png")).unwrap();
    let o = metrics(cwd, &["--real", real.to_str().unwrap(), "--counterfactuals", "cf"]);
    assert_fails(&o, &["img1.png"]);
    // The converter refuses a checkpoint of another model.
    let input = fixture("metrics/face_w4.pth");
    let o = run_bin(cwd, "weights-convert", &["oracle", "--input", input.to_str().unwrap(), "--out", "x.safetensors"]);
    assert_fails(&o, &["feat_extract.conv1_7x7_s2.weight"]);
}
