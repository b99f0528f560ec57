//! `steex train generator` end to end on a dataset made here: it trains (with the VGG loss
//! of a reduced VGG19), logs every loss term and the discriminator's means per step, writes
//! previews, resumes after Ctrl-C to the same bytes as an uninterrupted run, and `steex
//! encode` / `steex generate` load its output with no flags.

mod common;

use std::path::Path;

use common::*;

/// `n` 32x32 images with label maps of 3 labels: a top band (0), a left (1) and a right (2)
/// region split at a column that varies, each with its own colour and texture.
fn make_set(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir.join("img")).unwrap();
    std::fs::create_dir_all(dir.join("masks")).unwrap();
    for i in 0..n {
        let split = 8 + (i as u32 * 5) % 16;
        let label = |x: u32, y: u32| {
            if y < 6 {
                0u8
            } else if x < split {
                1
            } else {
                2
            }
        };
        let img = image::RgbImage::from_fn(32, 32, |x, y| match label(x, y) {
            0 => image::Rgb([60 + (i as u8) * 10, 120, 220]),
            1 => image::Rgb([200, 40 + (x * 3) as u8, 40]),
            _ => image::Rgb([40, 160, 100 - (y * 2) as u8]),
        });
        img.save(dir.join(format!("img/{i:02}.png"))).unwrap();
        image::GrayImage::from_fn(32, 32, |x, y| image::Luma([label(x, y)]))
            .save(dir.join(format!("masks/{i:02}.png")))
            .unwrap();
    }
}

/// The tiny recipe every run here shares.
fn args(extra: &[&str]) -> Vec<String> {
    let vgg = fixture("gan/vgg.safetensors");
    let mut a: Vec<String> = ["train", "generator", "--images", "img", "--masks", "masks", "--labels", "3"]
        .into_iter()
        .map(String::from)
        .collect();
    for s in ["--size", "32", "--batch", "2", "--seed", "5", "--niter", "2", "--niter-decay", "2"] {
        a.push(s.into());
    }
    for s in ["--ngf", "1", "--style-length", "4", "--spade-hidden", "4", "--encoder-ngf", "2", "--ndf", "2"] {
        a.push(s.into());
    }
    a.push("--vgg".into());
    a.push(vgg.to_string_lossy().into_owned());
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn train(cwd: &Path, extra: &[&str]) -> std::process::Output {
    let a = args(extra);
    run_bin(cwd, "steex", &a.iter().map(String::as_str).collect::<Vec<_>>())
}

fn ok(out: &std::process::Output) {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn generator_trains_logs_previews_and_generate_loads_it() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    make_set(cwd, 6);
    ok(&train(cwd, &["--out", "g.safetensors", "--log", "g.jsonl", "--preview-every", "3"]));
    // Every step's terms and the discriminator's means are logged, finite.
    let log = std::fs::read_to_string(cwd.join("g.jsonl")).unwrap();
    let steps: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["event"] == "step")
        .collect();
    assert_eq!(steps.len(), 4 * 3, "4 epochs of 3 batches");
    for s in &steps {
        for k in ["GAN", "GAN_Feat", "VGG", "D_Fake", "D_real", "D_fake_mean", "D_real_mean", "lr"] {
            assert!(s[k].as_f64().is_some_and(f64::is_finite), "{k} in {s}");
        }
        assert!(s["VGG"].as_f64().unwrap() > 0.0, "the VGG loss is on");
    }
    // The published schedule: lr/2 ... the base lr is logged; constant for niter + 1 epochs,
    // then linear decay.
    let lr = |i: usize| steps[i]["lr"].as_f64().unwrap();
    assert_eq!(lr(0), 0.0002);
    assert_eq!(lr(8), 0.0002);
    assert!((lr(9) - 0.0001).abs() < 1e-12, "{}", lr(9));
    // Previews at steps 3, 6, 9, 12: masks | real | reconstruction, one row per image.
    for s in [3, 6, 9, 12] {
        let p = cwd.join(format!("g.safetensors.previews/step_{s:08}.png"));
        let img = image::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!((img.width(), img.height()), (96, 64));
    }
    // The output is the converted layout: encode and generate load it with no flags.
    let out = run_bin(
        cwd,
        "steex",
        &[
            "encode",
            "--generator",
            "g.safetensors",
            "--image",
            "img/00.png",
            "--mask",
            "masks/00.png",
            "--out",
            "z.npy",
        ],
    );
    ok(&out);
    let out = run_bin(
        cwd,
        "steex",
        &["generate", "--generator", "g.safetensors", "--mask", "masks/00.png", "--codes", "z.npy", "--out", "x.png"],
    );
    ok(&out);
    let x = image::open(cwd.join("x.png")).unwrap();
    assert_eq!((x.width(), x.height()), (32, 32));
    // `weights-convert to-pytorch` writes SEAN's `latest_net_G.pth` (spectral norm's
    // `weight_orig`, `weight_u`, `weight_v`; the PyTorch side is tools/check_to_pytorch.py),
    // which `weights-convert sean` resolves back to the same weights.
    ok(&run_bin(cwd, "weights-convert", &["to-pytorch", "--input", "g.safetensors", "--out", "latest_net_G.pth"]));
    let back =
        ["sean", "--input", "latest_net_G.pth", "--out", "back.safetensors", "--width", "32", "--aspect-ratio", "1"];
    ok(&run_bin(cwd, "weights-convert", &back));
    let (a, b) =
        (std::fs::read(cwd.join("g.safetensors")).unwrap(), std::fs::read(cwd.join("back.safetensors")).unwrap());
    let (a, b) =
        (safetensors::SafeTensors::deserialize(&a).unwrap(), safetensors::SafeTensors::deserialize(&b).unwrap());
    let mut names = a.names();
    names.sort();
    let mut back_names = b.names();
    back_names.sort();
    assert_eq!(names, back_names);
    let f32s = |t: safetensors::tensor::TensorView<'_>| -> Vec<f32> {
        t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    };
    let mut worst = 0f32;
    for n in names {
        let (x, y) = (f32s(a.tensor(n).unwrap()), f32s(b.tensor(n).unwrap()));
        let scale = x.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
        let err = x.iter().zip(&y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        worst = worst.max(err / scale);
    }
    eprintln!("to-pytorch and back: worst relative difference {worst:.2e}");
    assert!(worst <= 1e-5, "to-pytorch and back differ by {worst:e}");
    // Refusals before training: no VGG choice, a size SEAN cannot make, an existing --out.
    let out = run_bin(
        cwd,
        "steex",
        &[
            "train",
            "generator",
            "--images",
            "img",
            "--masks",
            "masks",
            "--labels",
            "3",
            "--size",
            "32",
            "--out",
            "n.safetensors",
        ],
    );
    assert_fails(&out, &["--vgg"]);
    let mut a = args(&["--out", "s.safetensors"]);
    let at = a.iter().position(|s| s == "--size").unwrap();
    a[at + 1] = "40".into();
    assert_fails(&run_bin(cwd, "steex", &a.iter().map(String::as_str).collect::<Vec<_>>()), &["--size 40"]);
    assert_fails(&train(cwd, &["--out", "g.safetensors"]), &["exists"]);
    // A loss that is not finite stops the run with what happened and nothing saved (an
    // absurd learning rate: the discriminator's step sees a generator of +-1e30 weights).
    let out = train(cwd, &["--out", "nan.safetensors", "--lr", "1e30", "--checkpoints", "nan_ck"]);
    assert_fails(&out, &["diverged at epoch 1, step 1", "NaN", "no checkpoint was written"]);
    assert!(!cwd.join("nan.safetensors").exists() && !cwd.join("nan_ck").exists());
}

#[cfg(unix)]
#[test]
fn ctrl_c_writes_a_checkpoint_exits_130_and_resumes_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    make_set(cwd, 6);
    ok(&train(cwd, &["--out", "full.safetensors"]));
    // The interrupted run: SIGINT once the first step is logged.
    let a = args(&["--out", "cut.safetensors", "--log", "cut.jsonl", "--checkpoints", "ck"]);
    let mut child = steex_command().args(&a).current_dir(cwd).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let t0 = std::time::Instant::now();
    while !std::fs::read_to_string(cwd.join("cut.jsonl")).unwrap_or_default().contains("\"step\"") {
        assert!(t0.elapsed().as_secs() < 300, "no step logged");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(!cwd.join("cut.safetensors").exists());
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cwd.join("ck/state.json")).unwrap()).unwrap();
    let done = state["adam_steps"].as_u64().unwrap();
    assert!((1..12).contains(&done), "interrupted after {done} steps");
    ok(&train(cwd, &["--out", "cut.safetensors", "--resume", "ck"]));
    let bytes = |n: &str| std::fs::read(cwd.join(n)).unwrap();
    assert!(bytes("full.safetensors") == bytes("cut.safetensors"), "interrupted + resumed differs");
    // A resume with another recipe is refused by name.
    assert_fails(&train(cwd, &["--out", "other.safetensors", "--resume", "ck", "--lr", "0.001"]), &["lr"]);
}

/// A generator trained here (two steps, no VGG) serves `steex explain` as it is, with the
/// bundled synthetic world's classifier (a ResNet taking any size): the run completes,
/// writes its result files, and the codes of the regions it edits move while the others
/// stay.
#[test]
fn explain_runs_on_a_generator_trained_here() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    make_set(cwd, 4);
    let mut a = args(&["--out", "g.safetensors"]);
    let at = a.iter().position(|s| s == "--vgg").unwrap();
    a.splice(at..at + 2, ["--no-vgg".to_string()]);
    for (flag, v) in [("--niter", "1"), ("--niter-decay", "0")] {
        let at = a.iter().position(|s| s == flag).unwrap();
        a[at + 1] = v.into();
    }
    ok(&run_bin(cwd, "steex", &a.iter().map(String::as_str).collect::<Vec<_>>()));
    let classifier = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/synthetic/classifier.safetensors");
    let explain = [
        "explain",
        "--generator",
        "g.safetensors",
        "--classifier",
        classifier,
        "--image",
        "img/01.png",
        "--mask",
        "masks/01.png",
        "--attribute",
        "stop",
        "--region-ids",
        "1,2",
        "--steps",
        "3",
        "--out",
        "res",
    ];
    ok(&run_bin(cwd, "steex", &explain));
    let res = cwd.join("res");
    for f in ["query.png", "reconstruction.png", "counterfactual.png", "counterfactual.npy", "result.json"] {
        assert!(res.join(f).is_file(), "missing {f}");
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(res.join("result.json")).unwrap()).unwrap();
    assert_eq!(v["steps_run"], 3, "{v}");
    let z0 = steex::io::read_npy(&res.join("z_initial.npy")).unwrap();
    let z1 = steex::io::read_npy(&res.join("z_final.npy")).unwrap();
    assert_eq!(z0.shape, vec![1, 3, 4], "3 labels, style length 4");
    let moved = |j: usize| z0.data[j * 4..(j + 1) * 4] != z1.data[j * 4..(j + 1) * 4];
    assert!(!moved(0), "label 0 is not edited");
    assert!(moved(1) && moved(2), "the edited codes did not move: {:?} -> {:?}", z0.data, z1.data);
    let cf = steex::io::read_npy(&res.join("counterfactual.npy")).unwrap();
    assert_eq!(cf.shape, vec![1, 3, 32, 32]);
    assert!(cf.data.iter().all(|x| x.is_finite() && x.abs() <= 1.0));
}
