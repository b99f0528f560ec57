//! `steex train classifier` end to end on datasets made here: the three label formats, the
//! output loaded by `steex classify` with no flags, resume (after an epoch and after Ctrl-C)
//! to the same bytes as an uninterrupted run, the JSON-lines log, and bad inputs refused
//! before training.

mod common;

use std::path::Path;

use common::*;

/// A reduced DenseNet, fast enough for tests.
const ARCH: &str = "densenet121:growth=4,blocks=1-1,init=8,bn=2";

/// `n` 32x32 images `img_000.png`...: attribute `bright` (0/1) sets the brightness and `red`
/// the red channel, so both are learnable.
fn make_images(dir: &Path, n: usize) -> Vec<(String, [u8; 2])> {
    std::fs::create_dir_all(dir).unwrap();
    (0..n)
        .map(|i| {
            let (bright, red) = ((i % 2) as u8, ((i / 2) % 2) as u8);
            let img = image::RgbImage::from_fn(32, 32, |x, y| {
                let base = if bright == 1 { 170 } else { 60 } + ((x * 7 + y * 3 + i as u32) % 40) as u8;
                image::Rgb([if red == 1 { 230 } else { base }, base, base / 2])
            });
            let name = format!("img_{i:03}.png");
            img.save(dir.join(&name)).unwrap();
            (name, [bright, red])
        })
        .collect()
}

fn celeba_labels(rows: &[(String, [u8; 2])]) -> String {
    let mut s = format!("{}\nAttractive bright red\n", rows.len());
    for (n, [b, r]) in rows {
        let pm = |v: u8| if v == 1 { " 1" } else { "-1" };
        s += &format!("{n} -1 {} {}\n", pm(*b), pm(*r));
    }
    s
}

fn csv_labels(rows: &[(String, [u8; 2])]) -> String {
    let mut s = "file,bright,red\n".to_string();
    for (n, [b, r]) in rows {
        s += &format!("{n},{b},{r}\n");
    }
    s
}

fn bdd_labels(rows: &[(String, [u8; 2])]) -> String {
    let images: Vec<_> =
        rows.iter().enumerate().map(|(i, (n, _))| serde_json::json!({"file_name": n, "id": i})).collect();
    let ann: Vec<_> = rows.iter().map(|(_, [b, r])| serde_json::json!({"category": [b, r, 0, 1, 0]})).collect();
    serde_json::json!({"images": images, "annotations": ann}).to_string()
}

fn train(cwd: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["train", "classifier", "--size", "32", "--batch", "4", "--seed", "3"];
    if !extra.contains(&"--arch") {
        args.extend(["--arch", ARCH]);
    }
    args.extend_from_slice(extra);
    run_bin(cwd, "steex", &args)
}

fn ok(out: &std::process::Output) {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn dataset(cwd: &Path) {
    let rows = make_images(&cwd.join("img"), 12);
    std::fs::write(cwd.join("labels.txt"), celeba_labels(&rows)).unwrap();
    std::fs::write(cwd.join("labels.csv"), csv_labels(&rows)).unwrap();
    std::fs::write(cwd.join("actions.json"), bdd_labels(&rows)).unwrap();
    let val = make_images(&cwd.join("val"), 4);
    std::fs::write(cwd.join("val.csv"), csv_labels(&val)).unwrap();
}

#[test]
fn resume_after_an_epoch_gives_the_same_bytes_and_classify_loads_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    dataset(cwd);
    let common = ["--images", "img", "--labels", "labels.txt", "--attributes", "bright,red", "--flip"];
    let mut a = common.to_vec();
    a.extend(["--epochs", "2", "--out", "a.safetensors", "--log", "a.jsonl", "--val-images", "val"]);
    a.extend(["--val-labels", "val.csv"]);
    ok(&train(cwd, &a));
    let mut b = common.to_vec();
    b.extend(["--epochs", "1", "--out", "b1.safetensors", "--checkpoints", "ck"]);
    ok(&train(cwd, &b));
    let mut b2 = common.to_vec();
    b2.extend(["--epochs", "2", "--out", "b2.safetensors", "--resume", "ck"]);
    ok(&train(cwd, &b2));
    let bytes = |n: &str| std::fs::read(cwd.join(n)).unwrap();
    assert_ne!(bytes("a.safetensors"), bytes("b1.safetensors"), "the second epoch changed nothing");
    assert!(bytes("a.safetensors") == bytes("b2.safetensors"), "1 epoch + resume differs from 2 epochs");

    // The log: a line per step with loss and lr, one per epoch with validation accuracy.
    let log = std::fs::read_to_string(cwd.join("a.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let steps: Vec<_> = lines.iter().filter(|l| l["event"] == "step").collect();
    assert_eq!(steps.len(), 6, "12 images in batches of 4, 2 epochs");
    assert!(steps.iter().all(|s| s["loss"].as_f64().is_some_and(f64::is_finite) && s["lr"] == 1e-4));
    let epochs: Vec<_> = lines.iter().filter(|l| l["event"] == "epoch").collect();
    assert_eq!(epochs.len(), 2);
    let acc = epochs[1]["val"]["accuracy.red"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));

    // `steex classify` takes the output with no flags: names from the metadata.
    let out =
        run_bin(cwd, "steex", &["classify", "--classifier", "a.safetensors", "--image", "val/img_001.png", "--json"]);
    ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["names"], serde_json::json!(["bright", "red"]));
    assert_eq!(v["probabilities"].as_array().unwrap().len(), 2);

    // `weights-convert to-pytorch`, then back with `weights-convert densenet`: the same tensors
    // (the PyTorch side, torch.load + load_state_dict, is tools/check_to_pytorch.py).
    ok(&run_bin(cwd, "weights-convert", &["to-pytorch", "--input", "a.safetensors", "--out", "a.tar"]));
    ok(&run_bin(cwd, "weights-convert", &["densenet", "--input", "a.tar", "--out", "back.safetensors"]));
    let (a, back) = (
        steex::io::read_weights(&cwd.join("a.safetensors")).unwrap(),
        steex::io::read_weights(&cwd.join("back.safetensors")).unwrap(),
    );
    assert_eq!(a.names(), back.names());
    for n in a.names() {
        let shape = a.shape(&n).unwrap();
        assert_eq!(a.values(&n, &shape).unwrap(), back.values(&n, &shape).unwrap(), "{n}");
    }
}

#[test]
fn the_three_label_formats_train_and_bad_inputs_are_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    dataset(cwd);
    for (labels, attrs) in [("labels.csv", "red,bright"), ("actions.json", "move_forward,stop")] {
        let out = format!("{labels}.safetensors");
        ok(&train(
            cwd,
            &["--images", "img", "--labels", labels, "--attributes", attrs, "--epochs", "1", "--out", &out],
        ));
        let w = steex::io::read_weights(&cwd.join(&out)).unwrap();
        assert_eq!(w.metadata()["names"], attrs);
    }
    let refused = |args: &[&str], needles: &[&str]| {
        let mut a = vec!["--epochs", "1", "--out", "bad.safetensors"];
        a.extend_from_slice(args);
        assert_fails(&train(cwd, &a), needles);
        assert!(!cwd.join("bad.safetensors").exists());
        assert!(!cwd.join("bad.safetensors.ckpt").exists(), "a checkpoint before any step");
    };
    let base = |labels: &'static str| vec!["--images", "img", "--labels", labels, "--attributes", "red"];
    // An unknown attribute, listing the available ones.
    let mut a = base("labels.csv");
    a[5] = "blue";
    refused(&a, &["`blue`", "bright, red"]);
    // A label file in none of the formats.
    std::fs::write(cwd.join("notes.txt"), "these are not labels\n").unwrap();
    refused(&base("notes.txt"), &["notes.txt", "not a label file"]);
    // An image the label file names that the folder lacks.
    let extra = format!("{}gone.png,1,0\n", std::fs::read_to_string(cwd.join("labels.csv")).unwrap());
    std::fs::write(cwd.join("more.csv"), extra).unwrap();
    refused(&base("more.csv"), &["missing", "gone.png"]);
    // An image that cannot be decoded.
    std::fs::write(cwd.join("img/broken.png"), b"not an image").unwrap();
    let extra = format!("{}broken.png,1,0\n", std::fs::read_to_string(cwd.join("labels.csv")).unwrap());
    std::fs::write(cwd.join("broken.csv"), extra).unwrap();
    refused(&base("broken.csv"), &["broken.png"]);
    // An empty folder.
    std::fs::create_dir_all(cwd.join("empty")).unwrap();
    let mut a = base("labels.csv");
    a[1] = "empty";
    refused(&a, &["empty"]);
    // A bad architecture.
    let mut a = base("labels.csv");
    a.extend(["--arch", "vgg16"]);
    refused(&a, &["vgg16"]);
}

/// An image whose header reads but whose data is cut passes the checks before training; it
/// is skipped and logged mid-epoch, or fails the run with `--strict`.
#[test]
fn an_image_that_fails_mid_epoch_is_skipped_and_logged_or_fails_with_strict() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    dataset(cwd);
    let png = std::fs::read(cwd.join("img/img_003.png")).unwrap();
    std::fs::write(cwd.join("img/img_003.png"), &png[..png.len() / 2]).unwrap();
    let args = ["--images", "img", "--labels", "labels.csv", "--attributes", "red", "--epochs", "1"];
    let mut a = args.to_vec();
    a.extend(["--out", "s.safetensors", "--log", "s.jsonl"]);
    ok(&train(cwd, &a));
    let log = std::fs::read_to_string(cwd.join("s.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let skipped: Vec<_> = lines.iter().filter(|l| l["event"] == "skipped").collect();
    assert_eq!(skipped.len(), 1, "{log}");
    assert!(skipped[0]["path"].as_str().unwrap().ends_with("img_003.png"));
    let mut strict = args.to_vec();
    strict.extend(["--out", "t.safetensors", "--strict"]);
    assert_fails(&train(cwd, &strict), &["img_003.png"]);
    assert!(!cwd.join("t.safetensors").exists());
}

#[cfg(unix)]
#[test]
fn ctrl_c_writes_a_checkpoint_exits_130_and_resumes_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    dataset(cwd);
    let common = ["--images", "img", "--labels", "labels.csv", "--attributes", "bright,red", "--epochs", "3"];
    let mut full = common.to_vec();
    full.extend(["--out", "full.safetensors"]);
    ok(&train(cwd, &full));
    // The interrupted run: SIGINT once the first step is logged.
    let mut cmd = steex_command();
    cmd.args(["train", "classifier", "--arch", ARCH, "--size", "32", "--batch", "4", "--seed", "3"]);
    cmd.args(common).args(["--out", "cut.safetensors", "--log", "cut.jsonl", "--checkpoints", "ck"]);
    let mut child = cmd.current_dir(cwd).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let t0 = std::time::Instant::now();
    while !std::fs::read_to_string(cwd.join("cut.jsonl")).unwrap_or_default().contains("\"step\"") {
        assert!(t0.elapsed().as_secs() < 300, "no step logged");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(!cwd.join("cut.safetensors").exists());
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cwd.join("ck/state.json")).unwrap()).unwrap();
    assert!(state["adam_steps"].as_u64().unwrap() >= 1);
    let mut resume = common.to_vec();
    resume.extend(["--out", "cut.safetensors", "--resume", "ck"]);
    ok(&train(cwd, &resume));
    let bytes = |n: &str| std::fs::read(cwd.join(n)).unwrap();
    assert!(bytes("full.safetensors") == bytes("cut.safetensors"), "interrupted + resumed differs");
}

/// A run killed outright (SIGKILL, no chance to save) once its first checkpoint is on disk
/// resumes from that checkpoint to the bytes of an uninterrupted run.
#[cfg(unix)]
#[test]
fn a_killed_run_resumes_from_its_last_checkpoint_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    dataset(cwd);
    let common = ["--images", "img", "--labels", "labels.csv", "--attributes", "bright,red", "--epochs", "12"];
    let mut full = common.to_vec();
    full.extend(["--out", "full.safetensors"]);
    ok(&train(cwd, &full));
    let mut cmd = steex_command();
    cmd.args(["train", "classifier", "--arch", ARCH, "--size", "32", "--batch", "4", "--seed", "3"]);
    cmd.args(common).args(["--out", "cut.safetensors", "--checkpoints", "ck"]);
    let mut child = cmd.current_dir(cwd).stderr(std::process::Stdio::null()).spawn().unwrap();
    let t0 = std::time::Instant::now();
    while !cwd.join("ck/state.json").is_file() {
        assert!(t0.elapsed().as_secs() < 300, "no checkpoint written");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its first checkpoint was seen");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!cwd.join("cut.safetensors").exists(), "killed after its first epoch, it wrote no output");
    let mut resume = common.to_vec();
    resume.extend(["--out", "cut.safetensors", "--resume", "ck"]);
    ok(&train(cwd, &resume));
    let bytes = |n: &str| std::fs::read(cwd.join(n)).unwrap();
    assert!(bytes("full.safetensors") == bytes("cut.safetensors"), "killed + resumed differs");
}
