//! What the fault battery shares: a world of twelve small scenes, the commands that write
//! results, processes killed on an observed event, and folder comparisons.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use steex::io::{Array, LabelMap, write_npy};

use crate::common::run_bin;

/// Images in the battery's folder: eleven scenes that explain and one without a mask.
pub const N_IMAGES: usize = 12;
/// Optimisation steps per image: enough to take time, little enough to keep the battery fast.
pub const STEPS: usize = 6;
/// Images optimised together.
pub const BATCH: usize = 3;
/// The image that fails (no mask): its line is written again on every resume.
pub const NO_MASK: &str = "s11";

/// A temporary folder with the demo's bundled generator and decision model
/// (`g.safetensors`, `c.safetensors`), `images/` (twelve held-out scenes as `.npy`) and
/// `masks/` (their label maps; the last has none).
pub fn world() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("g.safetensors"), steex::demo::GENERATOR).unwrap();
    std::fs::write(d.join("c.safetensors"), steex::demo::CLASSIFIER).unwrap();
    let (im, ma) = (d.join("images"), d.join("masks"));
    std::fs::create_dir_all(&im).unwrap();
    std::fs::create_dir_all(&ma).unwrap();
    let (h, w) = (steex::synth::scene::HEIGHT, steex::synth::scene::WIDTH);
    for i in 0..N_IMAGES {
        let s = steex::synth::scene(steex::synth::scene::HELD_OUT_SEED + 100 + i as u64);
        let stem = format!("s{i}");
        write_npy(&im.join(format!("{stem}.npy")), &Array { shape: vec![1, 3, h, w], data: s.image.clone() }).unwrap();
        if stem != NO_MASK {
            let m = LabelMap { labels: s.labels.clone(), height: h, width: w };
            image::GrayImage::from_raw(w as u32, h as u32, m.labels)
                .unwrap()
                .save(ma.join(format!("{stem}.png")))
                .unwrap();
        }
    }
    dir
}

/// The stems of the folder's images that explain.
pub fn good_stems() -> Vec<String> {
    (0..N_IMAGES).map(|i| format!("s{i}")).filter(|s| s != NO_MASK).collect()
}

/// `explain-dir` of the world's images into `out` (relative to the world), plus `extra`.
pub fn explain_dir(out: &str, extra: &[&str]) -> Vec<String> {
    let steps = STEPS.to_string();
    let batch = BATCH.to_string();
    let mut a: Vec<&str> =
        vec!["explain-dir", "--images", "images", "--masks", "masks", "--generator", "g.safetensors"];
    a.extend(["--classifier", "c.safetensors", "--attribute", "stop", "--steps", &steps, "--batch", &batch]);
    a.extend(["--out", out]);
    a.extend(extra);
    a.iter().map(|s| s.to_string()).collect()
}

/// `explain` of the first scene into `out`, with `steps` steps.
pub fn explain(out: &str, steps: usize) -> Vec<String> {
    let steps = steps.to_string();
    let a = ["explain", "--image", "images/s0.npy", "--mask", "masks/s0.png", "--generator", "g.safetensors"];
    let b = ["--classifier", "c.safetensors", "--attribute", "stop", "--steps", &steps, "--out", out];
    a.iter().chain(&b).map(|s| s.to_string()).collect()
}

/// `demo` with two scenes and two steps into `out`.
pub fn demo(out: &str) -> Vec<String> {
    ["demo", "--scenes", "2", "--batch", "2", "--steps", "2", "--workers", "1", "--out", out].map(String::from).to_vec()
}

/// Runs `steex` in `d` to the end.
pub fn run(d: &Path, a: &[String]) -> Output {
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    run_bin(d, "steex", &a)
}

/// Starts `steex` in `d`.
pub fn spawn(d: &Path, a: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_steex"))
        .args(a)
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Asserts success, with stderr in the message.
pub fn ok(o: &Output) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Polls until `event` holds or `child` exits: `true` when the event was seen with the
/// child still running. Never waits on a clock: a poll every 200 us, a 120 s safety limit.
pub fn wait_for(child: &mut Child, mut event: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    loop {
        if event() {
            return child.try_wait().unwrap().is_none();
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "no event in 120 s");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// SIGKILLs `child` and reaps it.
pub fn kill(mut child: Child) -> Output {
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

/// Names in a folder, sorted (none when it does not exist).
pub fn names(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<String> = rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Asserts `dir` holds no hidden entry (temporaries, `.old` folders, lock files).
pub fn assert_no_hidden(dir: &Path) {
    let hidden: Vec<String> = names(dir).into_iter().filter(|n| n.starts_with('.')).collect();
    assert!(hidden.is_empty(), "{}: temporaries left: {hidden:?}", dir.display());
}

/// Result folders of `out` whose `result.json` exists.
pub fn complete(out: &Path) -> usize {
    good_stems().iter().filter(|s| out.join(s).join("result.json").is_file()).count()
}

/// Lines of `out/results.jsonl` (0 when absent).
pub fn line_count(out: &Path) -> usize {
    std::fs::read_to_string(out.join("results.jsonl")).map_or(0, |t| t.lines().count())
}

/// Identity of a file (device, inode), `None` when absent: a rename over it changes it.
pub fn file_id(p: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

/// The pid a lock file names.
pub fn lock_pid(lock: &Path) -> Option<u32> {
    std::fs::read_to_string(lock).ok()?.trim().parse().ok()
}

/// A JSON file with the wall-clock fields (`seconds`, `seconds_per_image`) removed.
fn json_without_clock(p: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    strip_clock(&mut v);
    v
}

fn strip_clock(v: &mut serde_json::Value) {
    if let Some(o) = v.as_object_mut() {
        o.remove("seconds");
        o.remove("seconds_per_image");
    }
}

/// `results.jsonl` as JSON values without wall-clock fields, in file order.
fn lines_without_clock(p: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            strip_clock(&mut v);
            v
        })
        .collect()
}

/// Asserts two `explain-dir` output folders hold the same results: `results.jsonl` line for
/// line and `summary.json` (wall-clock fields aside), `plan.json`, and every file of every
/// result folder byte for byte (`result.json` without its `seconds`); no hidden entry in
/// either. Returns the number of files compared.
pub fn assert_same_results(a: &Path, b: &Path) -> usize {
    assert_no_hidden(a);
    assert_no_hidden(b);
    assert_eq!(names(a), names(b), "{} vs {}", a.display(), b.display());
    let la = lines_without_clock(&a.join("results.jsonl"));
    assert_eq!(la.len(), N_IMAGES, "one line per image");
    assert_eq!(la, lines_without_clock(&b.join("results.jsonl")), "results.jsonl");
    assert_eq!(json_without_clock(&a.join("summary.json")), json_without_clock(&b.join("summary.json")));
    assert_eq!(std::fs::read(a.join("plan.json")).unwrap(), std::fs::read(b.join("plan.json")).unwrap());
    let mut files = 3;
    for stem in good_stems() {
        let (da, db) = (a.join(&stem), b.join(&stem));
        assert_eq!(names(&da), names(&db), "{stem}");
        for f in names(&da) {
            if f == "result.json" {
                assert_eq!(json_without_clock(&da.join(&f)), json_without_clock(&db.join(&f)), "{stem}/{f}");
            } else {
                let (x, y) = (std::fs::read(da.join(&f)).unwrap(), std::fs::read(db.join(&f)).unwrap());
                assert!(x == y, "{stem}/{f} differs");
            }
            files += 1;
        }
    }
    files
}

/// A small file system for the disk-full checks: a tmpfs mounted over `dir` while this
/// lives (root only).
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -o size=...`) on `dir`; `None`, with a message, where
    /// this process cannot mount (not root, or a container without the right).
    pub fn mount(dir: &Path, size: &str, extra: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}{extra}"), "tmpfs"])
            .arg(dir)
            .output();
        match o {
            Ok(o) if o.status.success() => Some(Tmpfs(dir.to_path_buf())),
            Ok(o) => {
                eprintln!("SKIPPED: cannot mount a tmpfs (needs root): {}", stderr(&o).trim());
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes a filler file into `dir` until its file system is full, then frees `leave`
/// bytes: what a writer then finds free.
pub fn fill(dir: &Path, leave: u64) -> PathBuf {
    use std::io::Write;
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.flush();
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(leave)).unwrap();
    p
}

/// Every (relative path, bytes) under `dir`, for "nothing changed" checks.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut m = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&p) else { continue };
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                m.insert(path.strip_prefix(dir).unwrap().to_path_buf(), Vec::new());
                stack.push(path);
            } else {
                m.insert(path.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    m
}
