//! `steex explain-dir` and `steex merge` end to end, running the real binary: every result,
//! failed images recorded, resume after a kill equal to a clean run, shards merged equal to
//! one run, Ctrl-C.
//!
//! The models and the scene the folder is made from are a parameter ([`Source`]): the
//! committed 64x64 fixtures here; other sources (a synthetic world) plug in the same way.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use steex::dataset::{ResultLine, Status, Summary, latest_by_stem, read_results};
use steex::io::{Array, LabelMap, read_image_native, read_npy, write_npy};

/// Where the models and the base scene of the image folder come from.
pub struct Source {
    /// Generator weights (`weights-convert sean` output).
    pub generator: PathBuf,
    /// Decision model weights.
    pub classifier: PathBuf,
    /// One query image (`.npy` or PNG) at the generator's size.
    pub image: PathBuf,
    /// Its label map (8-bit PNG).
    pub mask: PathBuf,
    /// The attribute to explain.
    pub attribute: String,
}

/// The committed fixtures: SEAN 64x64 (`sean_sq`), the explainer's DenseNet, the generator
/// fixture's image and mask. Weights are converted into `d`.
pub fn fixture_source(d: &Path) -> Source {
    convert_explain_models(d);
    Source {
        generator: d.join("g.safetensors"),
        classifier: d.join("c.safetensors"),
        image: fixture("sean_sq/image.npy"),
        mask: fixture("sean_sq/mask.png"),
        attribute: "smile".into(),
    }
}

/// Images that explain, and images that must fail with these words in their reason.
const GOOD: [&str; 5] = ["a", "b", "c", "d", "e"];
const BAD: [(&str, &str); 3] =
    [("x_corrupt", "cannot decode"), ("y_small", "aspect ratios differ"), ("z_nomask", "no mask")];

fn flip_w<T: Copy>(a: &[T], planes: usize, h: usize, w: usize) -> Vec<T> {
    let mut o = a.to_vec();
    for p in 0..planes {
        for y in 0..h {
            for x in 0..w {
                o[p * h * w + y * w + x] = a[p * h * w + y * w + (w - 1 - x)];
            }
        }
    }
    o
}

fn save_mask(m: &LabelMap, p: &Path) {
    image::GrayImage::from_raw(m.width as u32, m.height as u32, m.labels.clone()).unwrap().save(p).unwrap();
}

fn save_png(a: &Array, p: &Path) {
    let (h, w) = (a.shape[2], a.shape[3]);
    std::fs::write(p, steex::io::png_bytes(&a.data, h, w)).unwrap();
}

/// `d/images` and `d/masks` made from the source's scene: copies and altered variants
/// (darker, mirrored, a PNG, brighter), an undecodable file, an image of another size than
/// its mask, an image without a mask.
pub fn make_folder(src: &Source, d: &Path) {
    let (im, ma) = (d.join("images"), d.join("masks"));
    std::fs::create_dir_all(&im).unwrap();
    std::fs::create_dir_all(&ma).unwrap();
    let q = read_image_native(&src.image).unwrap();
    let m = LabelMap::read(&src.mask).unwrap();
    let (h, w) = (q.shape[2], q.shape[3]);
    let with = |f: &dyn Fn(f32) -> f32| Array { shape: q.shape.clone(), data: q.data.iter().map(|&v| f(v)).collect() };
    write_npy(&im.join("a.npy"), &q).unwrap();
    write_npy(&im.join("b.npy"), &with(&|v| 0.8 * v)).unwrap();
    write_npy(&im.join("c.npy"), &Array { shape: q.shape.clone(), data: flip_w(&q.data, 3, h, w) }).unwrap();
    save_png(&q, &im.join("d.png"));
    write_npy(&im.join("e.npy"), &with(&|v| (v + 0.2).min(1.0))).unwrap();
    let mirrored = flip_w(&m.labels, 1, m.height, m.width);
    for s in ["a", "b", "d", "e", "x_corrupt", "y_small"] {
        save_mask(&m, &ma.join(format!("{s}.png")));
    }
    save_mask(&LabelMap { labels: mirrored, ..m.clone() }, &ma.join("c.png"));
    std::fs::write(im.join("x_corrupt.png"), b"\x89PNG not really").unwrap();
    image::RgbImage::new((w / 2) as u32, h as u32).save(im.join("y_small.png")).unwrap();
    write_npy(&im.join("z_nomask.npy"), &q).unwrap();
    std::fs::write(im.join("notes.txt"), b"not an image").unwrap();
}

fn setup() -> (tempfile::TempDir, Source) {
    setup_with(fixture_source)
}

/// The synthetic world (the demo's bundled generator and decision model, one held-out
/// scene) written into `d`.
pub fn synthetic_source(d: &Path) -> Source {
    std::fs::write(d.join("g.safetensors"), steex::demo::GENERATOR).unwrap();
    std::fs::write(d.join("c.safetensors"), steex::demo::CLASSIFIER).unwrap();
    let s = steex::synth::scene(steex::synth::scene::HELD_OUT_SEED + 3);
    let (h, w) = (steex::synth::scene::HEIGHT, steex::synth::scene::WIDTH);
    write_npy(&d.join("scene.npy"), &Array { shape: vec![1, 3, h, w], data: s.image.clone() }).unwrap();
    save_mask(&LabelMap { labels: s.labels.clone(), height: h, width: w }, &d.join("scene_mask.png"));
    Source {
        generator: d.join("g.safetensors"),
        classifier: d.join("c.safetensors"),
        image: d.join("scene.npy"),
        mask: d.join("scene_mask.png"),
        attribute: "stop".into(),
    }
}

fn setup_with(source: fn(&Path) -> Source) -> (tempfile::TempDir, Source) {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    make_folder(&src, dir.path());
    (dir, src)
}

/// The arguments of `explain-dir` on `d/images` into `out`, plus `extra`.
fn args(src: &Source, out: &str, steps: usize, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "explain-dir",
        "--images",
        "images",
        "--masks",
        "masks",
        "--generator",
        src.generator.to_str().unwrap(),
        "--classifier",
        src.classifier.to_str().unwrap(),
        "--attribute",
        &src.attribute,
        "--steps",
        &steps.to_string(),
        "--out",
        out,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn run(d: &Path, a: &[String]) -> Output {
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    run_bin(d, "steex", &a)
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

fn summary(out: &Path) -> Summary {
    serde_json::from_value(json(&out.join("summary.json"))).unwrap()
}

fn latest(out: &Path) -> BTreeMap<String, ResultLine> {
    latest_by_stem(&read_results(&out.join("results.jsonl")).unwrap())
}

/// Sends `sig` to `pid`.
fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with a child's pid and a signal number; no memory is involved.
    let r = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(r, 0, "kill({pid}, {sig}): {}", std::io::Error::last_os_error());
}

/// Stops `pid` (SIGSTOP) and waits until it is stopped (`T` in `/proc/<pid>/stat`).
fn freeze(pid: u32) {
    signal(pid, libc::SIGSTOP);
    let t0 = Instant::now();
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next());
        if matches!(state, Some("T" | "t" | "Z") | None) {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "pid {pid} did not stop");
        std::thread::yield_now();
    }
}

/// Starts the binary and stops it with `signal` (`KILL` or `INT`) at its first complete
/// result, then waits for it. The run is looked at only while it is frozen (SIGSTOP), and the
/// signal is sent before it runs again, so where the signal lands is decided by the run's own
/// progress (a result folder renamed into place), not by the clock or the machine's load.
fn stop_after_first_result(d: &Path, a: &[String], out: &Path, sig: &str) -> Output {
    let child = steex_command().args(a).current_dir(d).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let t0 = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(2));
        freeze(pid);
        if GOOD.iter().any(|s| out.join(s).join("result.json").is_file()) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "no result after 120 s");
        signal(pid, libc::SIGCONT);
    }
    match sig {
        "KILL" => signal(pid, libc::SIGKILL),
        "INT" => {
            // Delivered when the run continues: its handler runs before anything else.
            signal(pid, libc::SIGINT);
            signal(pid, libc::SIGCONT);
        }
        other => panic!("signal {other}"),
    }
    child.wait_with_output().unwrap()
}

/// Compares the final codes of every explained image of run `a` with reference run `r`:
/// bit-identical where the image was optimised with the same batch, else
/// `||z - z_ref|| / ||z_ref - z0|| <= 0.1`. Returns (identical, within tolerance) counts.
fn compare_codes(a: &BTreeMap<String, PathBuf>, r: &BTreeMap<String, PathBuf>) -> (usize, usize) {
    assert_eq!(a.keys().collect::<Vec<_>>(), r.keys().collect::<Vec<_>>(), "explained images differ");
    let (mut same, mut close) = (0, 0);
    for (stem, dir) in a {
        let rdir = &r[stem];
        let z = read_npy(&dir.join("z_final.npy")).unwrap();
        let zr = read_npy(&rdir.join("z_final.npy")).unwrap();
        let z0 = read_npy(&rdir.join("z_initial.npy")).unwrap();
        assert_eq!(z.shape, zr.shape, "{stem}");
        let norm = |x: &Array, y: &Array| {
            x.data.iter().zip(&y.data).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>().sqrt()
        };
        let moved = norm(&zr, &z0);
        assert!(moved > 0.0, "{stem}: the reference codes did not move");
        let company = |d: &Path| json(&d.join("result.json"))["batch"]["images"].clone();
        if company(dir) == company(rdir) {
            assert!(z.data == zr.data, "{stem}: same batch, codes differ (max {})", max_abs_diff(&z, &zr));
            same += 1;
        } else {
            let ratio = norm(&z, &zr) / moved;
            assert!(ratio <= 0.1, "{stem}: ||z - z_ref|| / ||z_ref - z0|| = {ratio}");
            close += 1;
        }
    }
    (same, close)
}

/// The result folders of a run's explained images, by stem.
fn result_dirs(out: &Path) -> BTreeMap<String, PathBuf> {
    latest(out).into_iter().filter(|(_, l)| l.status == Status::Ok).map(|(s, _)| (s.clone(), out.join(s))).collect()
}

#[test]
fn explains_a_folder_and_records_failed_images() {
    let (dir, src) = setup();
    let d = dir.path();
    let o = run(d, &args(&src, "out", 3, &["--batch", "2"]));
    ok(&o);
    assert!(o.stdout.is_empty(), "explain-dir prints nothing on stdout");
    let out = d.join("out");
    let lines = read_results(&out.join("results.jsonl")).unwrap();
    assert_eq!(lines.len(), 8, "one line per image: {lines:?}");
    let l = latest(&out);
    for s in GOOD {
        let line = &l[s];
        assert_eq!(line.status, Status::Ok, "{s}: {line:?}");
        let r = json(&out.join(s).join("result.json"));
        for f in ["query.png", "counterfactual.png", "report.png", "counterfactual.npy", "z_initial.npy", "z_final.npy"]
        {
            assert!(out.join(s).join(f).is_file(), "{s}: missing {f}");
        }
        // The line carries the result's own values.
        assert_eq!(r["image"], s);
        assert_eq!(line.steps_run, Some(3));
        assert_eq!(r["steps_run"], 3);
        assert_eq!(line.success, r["success"].as_bool());
        assert_eq!(line.loss_decision, r["loss_decision"].as_f64().map(|x| x as f32));
        let fs: Vec<f32> = r["final_scores"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        assert_eq!(line.final_scores.as_ref(), Some(&fs));
        assert!(line.seconds > 0.0);
    }
    for (s, why) in BAD {
        let line = &l[s];
        assert_eq!(line.status, Status::Failed, "{s}");
        let reason = line.reason.as_deref().unwrap();
        assert!(reason.contains(why), "{s}: {reason}");
        assert!(!out.join(s).exists(), "{s}: a failed image has a result folder");
    }
    // Different inputs, different results: the variants are not copies of one explanation.
    let z = |s: &str| read_npy(&out.join(s).join("z_final.npy")).unwrap();
    assert!(max_abs_diff(&z("a"), &z("b")) > 1e-4);
    assert!(max_abs_diff(&z("a"), &z("c")) > 1e-4);

    // The summary, from the lines.
    let sm = summary(&out);
    assert_eq!((sm.n_images, sm.n_ok, sm.n_failed, sm.n_pending), (8, 5, 3, 0));
    let ok_lines: Vec<&ResultLine> = l.values().filter(|l| l.status == Status::Ok).collect();
    let mean = |f: &dyn Fn(&ResultLine) -> f64| ok_lines.iter().map(|l| f(l)).sum::<f64>() / 5.0;
    let md = mean(&|l| l.loss_decision.unwrap() as f64);
    assert!((sm.mean_loss_decision.unwrap() - md).abs() <= 1e-9 * md.abs().max(1.0));
    let mp = mean(&|l| l.loss_proximity.unwrap() as f64);
    assert!((sm.mean_loss_proximity.unwrap() - mp).abs() <= 1e-9 * mp.abs().max(1.0));
    let n_success = ok_lines.iter().filter(|l| l.success == Some(true)).count();
    assert_eq!(sm.n_success, n_success);
    assert_eq!(sm.success_rate, n_success as f64 / 5.0);
    assert!(sm.seconds_per_image.unwrap() > 0.0);

    // One image's folder equals `steex explain` on that image (alone: within the tolerance,
    // `a` shared its batch with `b`).
    let one: Vec<String> = [
        "explain",
        "--generator",
        src.generator.to_str().unwrap(),
        "--classifier",
        src.classifier.to_str().unwrap(),
        "--attribute",
        &src.attribute,
        "--steps",
        "3",
        "--image",
        "images/a.npy",
        "--mask",
        "masks/a.png",
        "--out",
        "single",
    ]
    .map(String::from)
    .to_vec();
    ok(&run(d, &one));
    let z1 = read_npy(&d.join("single/z_final.npy")).unwrap();
    let z0 = read_npy(&d.join("single/z_initial.npy")).unwrap();
    assert!(max_abs_diff(&z0, &read_npy(&out.join("a/z_initial.npy")).unwrap()) < 1e-4);
    let norm =
        |x: &Array, y: &Array| x.data.iter().zip(&y.data).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>().sqrt();
    let ratio = norm(&z("a"), &z1) / norm(&z1, &z0);
    assert!(ratio <= 0.1, "explain-dir vs explain: {ratio}");

    // A non-empty --out needs --resume or --force and is left as it was.
    assert_fails(&run(d, &args(&src, "out", 3, &[])), &["out", "--resume", "--force"]);
    assert!(out.join("a/result.json").is_file());
    let before = z("a");
    let o = run(d, &args(&src, "out", 3, &["--batch", "2", "--force"]));
    ok(&o);
    assert_eq!(read_results(&out.join("results.jsonl")).unwrap().len(), 8, "--force starts over");
    assert!(z("a").data == before.data, "the same run twice gave other codes");
    // Bad arguments fail before any work.
    assert_fails(&run(d, &args(&src, "o2", 3, &["--shard", "2/2"])), &["shard `2/2`"]);
    assert_fails(&run(d, &args(&src, "o2", 3, &["--batch", "0"])), &["--batch 0"]);
    assert!(!d.join("o2").exists());
}

#[test]
fn resume_after_a_kill_equals_a_clean_run() {
    resume_check(setup(), 12);
}

#[test]
fn resume_after_a_kill_equals_a_clean_run_synthetic_world() {
    resume_check(setup_with(synthetic_source), 150);
}

fn resume_check((dir, src): (tempfile::TempDir, Source), steps: usize) {
    let d = dir.path();
    ok(&run(d, &args(&src, "clean", steps, &["--batch", "2"])));
    let clean = d.join("clean");

    let killed = d.join("killed");
    let o = stop_after_first_result(d, &args(&src, "killed", steps, &["--batch", "2"]), &killed, "KILL");
    assert!(!o.status.success(), "the run finished before it was killed: make it longer");
    let complete = GOOD.iter().filter(|s| killed.join(s).join("result.json").is_file()).count();
    assert!((1..GOOD.len()).contains(&complete), "{complete} results complete after the kill");
    // Without --resume the folder is refused.
    assert_fails(&run(d, &args(&src, "killed", steps, &["--batch", "2"])), &["--resume"]);
    // Other settings are refused too.
    assert_fails(&run(d, &args(&src, "killed", steps + 1, &["--batch", "2", "--resume"])), &["other settings"]);
    let o = run(d, &args(&src, "killed", steps, &["--batch", "2", "--resume"]));
    ok(&o);

    let (same, close) = compare_codes(&result_dirs(&killed), &result_dirs(&clean));
    assert_eq!(same + close, GOOD.len());
    assert!(same >= 1, "no image was compared bit for bit");
    let (lk, lc) = (latest(&killed), latest(&clean));
    let status = |l: &BTreeMap<String, ResultLine>| l.iter().map(|(k, v)| (k.clone(), v.status)).collect::<Vec<_>>();
    assert_eq!(status(&lk), status(&lc));
    // Every explained image has exactly one line; only failures are tried again.
    let lines = read_results(&killed.join("results.jsonl")).unwrap();
    for s in GOOD {
        assert_eq!(lines.iter().filter(|l| l.image == s).count(), 1, "{s}");
    }
    let (sk, sc) = (summary(&killed), summary(&clean));
    assert_eq!((sk.n_images, sk.n_ok, sk.n_failed, sk.n_success), (sc.n_images, sc.n_ok, sc.n_failed, sc.n_success));
    let rel = (sk.mean_loss_decision.unwrap() - sc.mean_loss_decision.unwrap()).abs()
        / sc.mean_loss_decision.unwrap().abs().max(1e-6);
    assert!(rel < 1e-2, "mean decision loss {} vs {}", sk.mean_loss_decision.unwrap(), sc.mean_loss_decision.unwrap());
    let names: Vec<String> =
        std::fs::read_dir(&killed).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!names.iter().any(|n| n.contains(".tmp")), "temporary folders left: {names:?}");
    // Resuming a finished run does nothing more.
    ok(&run(d, &args(&src, "killed", steps, &["--batch", "2", "--resume"])));
    assert_eq!(latest(&killed).len(), 8);
    assert_eq!(compare_codes(&result_dirs(&killed), &result_dirs(&clean)), (same, close));

    // A kill after a result folder was put in place but before its line was written, and one
    // in the middle of a line: the lines come back from the results, nothing is redone.
    let p = killed.join("results.jsonl");
    let jl = std::fs::read_to_string(&p).unwrap();
    let mut kept: String = jl.lines().filter(|l| !l.contains("\"image\":\"a\"")).map(|l| format!("{l}\n")).collect();
    kept.push_str("{\"image\":\"b\",\"stat");
    std::fs::write(&p, kept).unwrap();
    let z_before = std::fs::read(killed.join("a/z_final.npy")).unwrap();
    let a_json = std::fs::read(killed.join("a/result.json")).unwrap();
    ok(&run(d, &args(&src, "killed", steps, &["--batch", "2", "--resume"])));
    let lines = read_results(&p).unwrap();
    assert!(std::fs::read_to_string(&p).unwrap().ends_with('\n'));
    for s in GOOD {
        assert_eq!(lines.iter().filter(|l| l.image == s).count(), 1, "{s}");
    }
    let (x, y) = (latest(&killed)["a"].clone(), latest(&clean)["a"].clone());
    assert_eq!(ResultLine { seconds: 0.0, ..x }, ResultLine { seconds: 0.0, ..y }, "a's line, rebuilt");
    assert_eq!(std::fs::read(killed.join("a/result.json")).unwrap(), a_json, "a was explained again");
    assert_eq!(std::fs::read(killed.join("a/z_final.npy")).unwrap(), z_before);
}

#[test]
fn shards_merged_equal_one_run() {
    shards_check(setup());
}

#[test]
fn shards_merged_equal_one_run_synthetic_world() {
    shards_check(setup_with(synthetic_source));
}

fn shards_check((dir, src): (tempfile::TempDir, Source)) {
    let d = dir.path();
    ok(&run(d, &args(&src, "all", 3, &["--batch", "2"])));
    ok(&run(d, &args(&src, "s0", 3, &["--batch", "2", "--shard", "0/2"])));
    ok(&run(d, &args(&src, "s1", 3, &["--batch", "2", "--shard", "1/2"])));
    // Every other image, in file name order.
    assert_eq!(latest(&d.join("s0")).keys().collect::<Vec<_>>(), ["a", "c", "e", "y_small"]);
    assert_eq!(summary(&d.join("s1")).n_images, 4);

    ok(&run_bin(d, "steex", &["merge", "s0", "s1", "--out", "merged"]));
    let merged = d.join("merged");
    let (lm, la) = (latest(&merged), latest(&d.join("all")));
    assert_eq!(read_results(&merged.join("results.jsonl")).unwrap().len(), 8, "one line per image");
    let status = |l: &BTreeMap<String, ResultLine>| l.iter().map(|(k, v)| (k.clone(), v.status)).collect::<Vec<_>>();
    assert_eq!(status(&lm), status(&la));
    let dirs: BTreeMap<String, PathBuf> = lm
        .iter()
        .filter(|(_, l)| l.status == Status::Ok)
        .map(|(s, l)| (s.clone(), d.join(l.dir.as_ref().unwrap())))
        .collect();
    let (same, close) = compare_codes(&dirs, &result_dirs(&d.join("all")));
    assert_eq!(same + close, GOOD.len());
    assert!(close >= 1, "sharding changed no batch: the tolerance path is untested");
    let (sm, sa) = (summary(&merged), summary(&d.join("all")));
    assert_eq!((sm.n_images, sm.n_ok, sm.n_failed, sm.n_success), (sa.n_images, sa.n_ok, sa.n_failed, sa.n_success));
    assert!(sm.missing.is_empty() && sm.duplicates.is_empty() && sm.missing_shards.is_empty());
    let rel = (sm.mean_loss_decision.unwrap() - sa.mean_loss_decision.unwrap()).abs()
        / sa.mean_loss_decision.unwrap().abs().max(1e-6);
    assert!(rel < 1e-2, "mean decision loss {} vs {}", sm.mean_loss_decision.unwrap(), sa.mean_loss_decision.unwrap());

    // A missing shard, a shard given twice, a shard that lost an image: all reported.
    let o = run_bin(d, "steex", &["merge", "s0", "--out", "m1"]);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("1/2 (4 images)"), "{}", String::from_utf8_lossy(&o.stderr));
    let s1 = summary(&d.join("m1"));
    assert_eq!(s1.missing_shards, ["1/2 (4 images)"]);
    assert_eq!((s1.n_images, s1.n_pending), (8, 4));
    let o = run_bin(d, "steex", &["merge", "s0", "s1", "s0", "--out", "m2"]);
    ok(&o);
    assert_eq!(summary(&d.join("m2")).duplicates, ["a", "c", "e", "y_small"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("4 images duplicated"));
    let jl = std::fs::read_to_string(d.join("s1/results.jsonl")).unwrap();
    let kept: String = jl.lines().filter(|l| !l.contains("\"image\":\"d\"")).map(|l| format!("{l}\n")).collect();
    assert!(kept.len() < jl.len());
    std::fs::write(d.join("s1/results.jsonl"), kept).unwrap();
    ok(&run_bin(d, "steex", &["merge", "s0", "s1", "--out", "m3"]));
    let s3 = summary(&d.join("m3"));
    assert_eq!((s3.missing.clone(), s3.n_ok, s3.n_pending), (vec!["d".to_string()], 4, 1));
    // Refusals: an existing --out, a folder that is no shard.
    assert_fails(&run_bin(d, "steex", &["merge", "s0", "s1", "--out", "merged"]), &["merged", "--force"]);
    assert_fails(&run_bin(d, "steex", &["merge", "s0", "images", "--out", "m4"]), &["images", "plan.json"]);
}

#[test]
fn ctrl_c_writes_a_summary_and_resume_finishes() {
    let (dir, src) = setup();
    let d = dir.path();
    let out = d.join("out");
    let a = args(&src, "out", 12, &["--batch", "2"]);
    let o = stop_after_first_result(d, &a, &out, "INT");
    assert_eq!(o.status.code(), Some(130), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("interrupted") && err.contains("--resume"), "{err}");
    let s = summary(&out);
    assert!(s.interrupted);
    assert_eq!(s.n_images, 8);
    assert!(s.n_ok >= 1 && s.n_pending >= 1, "{s:?}");
    assert_eq!(s.n_ok, GOOD.iter().filter(|g| out.join(g).join("result.json").is_file()).count());
    let mut a = a;
    a.push("--resume".into());
    ok(&run(d, &a));
    let s = summary(&out);
    assert!(!s.interrupted);
    assert_eq!((s.n_ok, s.n_failed, s.n_pending), (5, 3, 0));
}

/// `summary.json`'s `region_share` is the mean, over the successful explanations, of each
/// region's share of the pixel change and code distance in their `result.json`; on the
/// synthetic world, where only the lamp decides, the lamp's share is the largest.
#[test]
fn summary_region_share_is_the_mean_over_successes() {
    let (dir, src) = setup_with(synthetic_source);
    let d = dir.path();
    let o = run(d, &args(&src, "out", 60, &["--batch", "5"]));
    ok(&o);
    let out = d.join("out");
    let sm = summary(&out);
    let l = latest(&out);
    let successes: Vec<&String> = l.iter().filter(|(_, v)| v.success == Some(true)).map(|(k, _)| k).collect();
    assert!(!successes.is_empty(), "no explanation succeeded: {sm:?}");
    // Expected: the per-region mean of the result.json records, computed here.
    let mut expected: BTreeMap<u64, (String, f64, f64)> = BTreeMap::new();
    for s in &successes {
        let r = json(&out.join(s).join("result.json"));
        let changes = r["region_change"].as_array().unwrap_or_else(|| panic!("{s}: no region_change"));
        assert!(!changes.is_empty());
        for c in changes {
            let e = expected.entry(c["id"].as_u64().unwrap()).or_insert((c["name"].as_str().unwrap().into(), 0.0, 0.0));
            e.1 += c["share"].as_f64().unwrap() / successes.len() as f64;
            e.2 += c["code_distance"].as_f64().unwrap() / successes.len() as f64;
        }
    }
    assert_eq!(sm.region_share.len(), expected.len(), "{:?}", sm.region_share);
    for r in &sm.region_share {
        let (name, share, dist) = &expected[&(r.id as u64)];
        assert_eq!((&r.name, r.images), (name, successes.len()));
        assert!((r.mean_share - share).abs() < 1e-6, "{name}: share {} vs {share}", r.mean_share);
        assert!(
            (r.mean_code_distance - dist).abs() < 1e-5 * dist.max(1.0),
            "{name}: {} vs {dist}",
            r.mean_code_distance
        );
    }
    let top = sm.region_share.iter().max_by(|a, b| a.mean_share.total_cmp(&b.mean_share)).unwrap();
    assert_eq!(top.id, steex::synth::scene::LAMP, "{:?}", sm.region_share);
    assert!(top.mean_share > 0.5, "{:?}", sm.region_share);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("most changed: {} ", top.name)), "{err}");
}

/// explain-dir's values against the published loop, not against its own files: image `a`
/// (the fixture's query) explained for 5 steps with noise off in a batch with other images
/// ends at the reference loop's codes (`tools/steex_reference.py`, `explain/cf_general_z.npy`)
/// within the explainer parity limit, and its line's scores are those of its result.
#[test]
fn explain_dir_codes_match_the_reference_loop() {
    let (dir, src) = setup();
    let d = dir.path();
    ok(&run(d, &args(&src, "out", 5, &["--batch", "2", "--noise", "off"])));
    let out = d.join("out");
    let z = read_npy(&out.join("a/z_final.npy")).unwrap();
    let z0 = read_npy(&out.join("a/z_initial.npy")).unwrap();
    let z_ref = read_npy(&fixture("explain/cf_general_z.npy")).unwrap();
    let norm = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>().sqrt();
    let moved = norm(&z_ref.data, &z0.data);
    assert!(moved > 0.0);
    let err = norm(&z.data, &z_ref.data) / moved;
    eprintln!("explain-dir, image a: z error / movement {err:.2e}");
    assert!(err <= 0.1, "explain-dir's codes for a: ||z - z_ref|| / ||z_ref - z0|| = {err}");
    // The mirrored image `c` is another explanation: far from a's reference.
    let zc = read_npy(&out.join("c/z_final.npy")).unwrap();
    assert!(norm(&zc.data, &z_ref.data) / moved > 0.1, "c ended at a's codes");
}
