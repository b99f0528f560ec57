//! Explaining a folder of images: the stable walk, sharding, result lines (`results.jsonl`)
//! and the summary, shared by `steex explain-dir` and `steex merge`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// File extensions taken as images (case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "npy"];

/// Name of the append-only file of result lines in an output folder.
pub const RESULTS_FILE: &str = "results.jsonl";
/// Name of the summary in an output folder.
pub const SUMMARY_FILE: &str = "summary.json";
/// Name of the run's plan (shard, images, settings) in an output folder.
pub const PLAN_FILE: &str = "plan.json";
/// Name of the file whose presence marks a per-image result folder complete.
pub const RESULT_FILE: &str = "result.json";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// One image of a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageEntry {
    /// File name without its extension: names the result folder and pairs the mask.
    pub stem: String,
    /// The image file.
    pub path: PathBuf,
}

/// The images of `dir` (files with an [`IMAGE_EXTENSIONS`] extension, hidden files and
/// subfolders skipped), sorted by file name (byte order), so every machine sees the same
/// order.
pub fn list_images(dir: &Path) -> Result<Vec<ImageEntry>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        let Some(ext) = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()) else { continue };
        if !IMAGE_EXTENSIONS.contains(&ext.as_str()) {
            continue;
        }
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        out.push((name, ImageEntry { stem, path }));
    }
    out.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(out.into_iter().map(|(_, e)| e).collect())
}

/// The mask of the image `stem` in `masks`: `<stem>.png`.
pub fn mask_for(masks: &Path, stem: &str) -> PathBuf {
    masks.join(format!("{stem}.png"))
}

/// Shard `index` of `count` (`K/N`): every N-th item from offset K.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// K, from 0 to N - 1.
    pub index: usize,
    /// N, at least 1.
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    /// `K/N` with `0 <= K < N`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let err = || format!("shard `{s}`: expected K/N with 0 <= K < N (e.g. 0/4)");
        let (k, n) = s.split_once('/').ok_or_else(err)?;
        let (index, count) = (k.trim().parse().map_err(|_| err())?, n.trim().parse().map_err(|_| err())?);
        if count == 0 || index >= count {
            return Err(err());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Items `K, K + N, K + 2N, ...` of `items`.
    pub fn select<T: Clone>(&self, items: &[T]) -> Vec<T> {
        items.iter().skip(self.index).step_by(self.count).cloned().collect()
    }

    /// How many of `total` items this shard takes.
    pub fn len_of(&self, total: usize) -> usize {
        total.saturating_sub(self.index).div_ceil(self.count)
    }
}

/// Whether an image's result folder in `out` is complete (its `result.json` exists).
pub fn is_complete(out: &Path, stem: &str) -> bool {
    out.join(stem).join(RESULT_FILE).is_file()
}

/// Outcome of one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Explained; its result folder is complete.
    Ok,
    /// Not explained (unreadable file, wrong size, missing mask, non-finite optimisation).
    Failed,
}

/// One line of `results.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultLine {
    /// The image's file stem.
    pub image: String,
    /// Outcome.
    pub status: Status,
    /// Why it failed (`None` when ok).
    #[serde(default)]
    pub reason: Option<String>,
    /// Whether the decision flipped (`None` when not explained).
    #[serde(default)]
    pub success: Option<bool>,
    /// Scores on the query.
    #[serde(default)]
    pub initial_scores: Option<Vec<f32>>,
    /// Scores on the counterfactual.
    #[serde(default)]
    pub final_scores: Option<Vec<f32>>,
    /// Adam updates applied.
    #[serde(default)]
    pub steps_run: Option<usize>,
    /// Seconds spent on this image (its batch's time divided by the batch's images).
    #[serde(default)]
    pub seconds: f64,
    /// Decision loss at the final codes.
    #[serde(default)]
    pub loss_decision: Option<f32>,
    /// Proximity loss at the final codes.
    #[serde(default)]
    pub loss_proximity: Option<f32>,
    /// The image file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The result folder (`steex merge` adds it: the shard's folder joined with the stem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
}

impl ResultLine {
    /// A failed image.
    pub fn failed(stem: &str, file: Option<&Path>, reason: String) -> Self {
        ResultLine {
            image: stem.to_string(),
            status: Status::Failed,
            reason: Some(reason),
            success: None,
            initial_scores: None,
            final_scores: None,
            steps_run: None,
            seconds: 0.0,
            loss_decision: None,
            loss_proximity: None,
            file: file.map(|p| p.display().to_string()),
            dir: None,
        }
    }

    /// The line of an image from its `result.json` (as `steex explain-dir` writes it):
    /// status `failed` when the optimisation stopped on a non-finite value.
    pub fn from_result_json(stem: &str, v: &serde_json::Value) -> Self {
        let f32s = |k: &str| {
            v.get(k).and_then(|x| x.as_array()).map(|a| a.iter().filter_map(|x| x.as_f64()).map(|x| x as f32).collect())
        };
        let failure = v.get("failure").and_then(|f| f.as_str()).map(str::to_string);
        ResultLine {
            image: stem.to_string(),
            status: if failure.is_some() { Status::Failed } else { Status::Ok },
            reason: failure,
            success: v.get("success").and_then(|x| x.as_bool()),
            initial_scores: f32s("initial_scores"),
            final_scores: f32s("final_scores"),
            steps_run: v.get("steps_run").and_then(|x| x.as_u64()).map(|x| x as usize),
            seconds: v.get("seconds").and_then(|x| x.as_f64()).unwrap_or(0.0),
            loss_decision: v.get("loss_decision").and_then(|x| x.as_f64()).map(|x| x as f32),
            loss_proximity: v.get("loss_proximity").and_then(|x| x.as_f64()).map(|x| x as f32),
            file: v.pointer("/inputs/image").and_then(|x| x.as_str()).map(str::to_string),
            dir: None,
        }
    }
}

/// Reads the lines of a `results.jsonl`; a missing file has none. A last line cut short (a
/// run killed while writing it) is ignored; any other unreadable line is an error.
pub fn read_results(path: &Path) -> Result<Vec<ResultLine>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::Io { path: path.to_path_buf(), source: e }),
    };
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<ResultLine>(line) {
            Ok(l) => out.push(l),
            Err(_) if i + 1 == lines.len() && !complete => {}
            Err(e) => {
                return Err(Error::Argument(format!("{} line {}: not a result line: {e}", path.display(), i + 1)));
            }
        }
    }
    Ok(out)
}

/// The last line of every image, by stem.
pub fn latest_by_stem(lines: &[ResultLine]) -> BTreeMap<String, ResultLine> {
    let mut m = BTreeMap::new();
    for l in lines {
        m.insert(l.image.clone(), l.clone());
    }
    m
}

/// Appends result lines to `results.jsonl`, each flushed and fsynced.
pub struct ResultsWriter {
    path: PathBuf,
    file: std::fs::File,
}

impl ResultsWriter {
    /// Opens (creating) the file for appending; a last line cut short by a kill is removed
    /// first so the next line starts on its own.
    pub fn open(path: &Path) -> Result<Self> {
        if let Ok(bytes) = std::fs::read(path)
            && !bytes.is_empty()
            && !bytes.ends_with(b"\n")
        {
            let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let f = std::fs::OpenOptions::new().write(true).open(path).map_err(io_err(path))?;
            f.set_len(keep as u64).map_err(io_err(path))?;
            f.sync_all().map_err(io_err(path))?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io_err(path))?;
        Ok(ResultsWriter { path: path.to_path_buf(), file })
    }

    /// Appends one line and syncs it to disk.
    pub fn append(&mut self, line: &ResultLine) -> Result<()> {
        let mut text = serde_json::to_string(line).expect("serialisable");
        text.push('\n');
        let path = self.path.clone();
        self.file.write_all(text.as_bytes()).map_err(io_err(&path))?;
        self.file.flush().map_err(io_err(&path))?;
        self.file.sync_all().map_err(io_err(&path))
    }
}

/// What `summary.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Images in the run (the shard's, or every shard's for a merge).
    pub n_images: usize,
    /// Images explained.
    pub n_ok: usize,
    /// Images that failed.
    pub n_failed: usize,
    /// Images with no result yet (an interrupted run, a missing shard).
    pub n_pending: usize,
    /// Images whose decision flipped.
    pub n_success: usize,
    /// `n_success / n_ok` (0 when nothing was explained).
    pub success_rate: f64,
    /// Mean decision loss at the final codes over the images explained.
    pub mean_loss_decision: Option<f64>,
    /// Mean proximity loss at the final codes over the images explained.
    pub mean_loss_proximity: Option<f64>,
    /// Mean seconds per explained image.
    pub seconds_per_image: Option<f64>,
    /// Whether the run was stopped before the end (Ctrl-C).
    #[serde(default)]
    pub interrupted: bool,
    /// The shard (`K/N`) or `None` for a merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// Images expected but without a result (merge).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// Images with results in more than one shard (merge).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub duplicates: Vec<String>,
    /// Shards (`K/N (M images)`) not given to a merge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_shards: Vec<String>,
}

/// The summary of `n_images` images from their latest result lines.
pub fn summarize<'a>(n_images: usize, latest: impl IntoIterator<Item = &'a ResultLine>) -> Summary {
    let (mut ok, mut failed, mut success) = (0, 0, 0);
    let (mut ld, mut lp, mut secs) = (0f64, 0f64, 0f64);
    for l in latest {
        match l.status {
            Status::Ok => {
                ok += 1;
                success += l.success.unwrap_or(false) as usize;
                ld += l.loss_decision.unwrap_or(f32::NAN) as f64;
                lp += l.loss_proximity.unwrap_or(f32::NAN) as f64;
                secs += l.seconds;
            }
            Status::Failed => failed += 1,
        }
    }
    let mean = |x: f64| (ok > 0).then(|| x / ok as f64);
    Summary {
        n_images,
        n_ok: ok,
        n_failed: failed,
        n_pending: n_images.saturating_sub(ok + failed),
        n_success: success,
        success_rate: if ok > 0 { success as f64 / ok as f64 } else { 0.0 },
        mean_loss_decision: mean(ld),
        mean_loss_proximity: mean(lp),
        seconds_per_image: mean(secs),
        interrupted: false,
        shard: None,
        missing: Vec::new(),
        duplicates: Vec::new(),
        missing_shards: Vec::new(),
    }
}

/// Writes a value as pretty JSON, atomically.
pub fn write_json(path: &Path, v: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(v).expect("serialisable");
    crate::io::write_bytes(path, text.as_bytes())
}

/// Reads a JSON file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    serde_json::from_str(&text).map_err(|e| Error::Argument(format!("{}: not the expected JSON: {e}", path.display())))
}

/// What a run records about itself in `plan.json`: enough for `--resume` to refuse
/// different settings and for `steex merge` to find missing images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The shard.
    pub shard: Shard,
    /// Images in the whole folder (every shard).
    pub n_total: usize,
    /// This shard's images, by stem, in order.
    pub images: Vec<String>,
    /// What determines the results (models, options), compared on `--resume`.
    pub settings: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(stem: &str, ok: bool, success: bool, ld: f32) -> ResultLine {
        let mut l = ResultLine::failed(stem, None, "bad".into());
        if ok {
            l.status = Status::Ok;
            l.reason = None;
            l.success = Some(success);
            l.loss_decision = Some(ld);
            l.loss_proximity = Some(2.0 * ld);
            l.seconds = 10.0 * ld as f64;
        }
        l
    }

    #[test]
    fn shards_partition_in_order() {
        let items: Vec<usize> = (0..11).collect();
        let s: Shard = "1/3".parse().unwrap();
        assert_eq!(s.select(&items), vec![1, 4, 7, 10]);
        let mut all: Vec<usize> = (0..3).flat_map(|k| Shard { index: k, count: 3 }.select(&items)).collect();
        all.sort();
        assert_eq!(all, items);
        for k in 0..4 {
            let sh = Shard { index: k, count: 4 };
            assert_eq!(sh.len_of(11), sh.select(&items).len());
        }
        assert_eq!(Shard::default().select(&items), items);
        for bad in ["3/3", "1", "a/2", "0/0", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert_eq!(s.to_string(), "1/3");
    }

    #[test]
    fn walk_is_sorted_and_skips_other_files() {
        let d = tempfile::tempdir().unwrap();
        for f in ["b.png", "a.NPY", "c.jpg", "notes.txt", ".hidden.png", "a10.png", "a2.jpeg"] {
            std::fs::write(d.path().join(f), b"x").unwrap();
        }
        std::fs::create_dir(d.path().join("sub.png")).unwrap();
        let stems: Vec<String> = list_images(d.path()).unwrap().into_iter().map(|e| e.stem).collect();
        assert_eq!(stems, ["a.NPY", "a10.png", "a2.jpeg", "b.png", "c.jpg"].map(|s| s.split('.').next().unwrap()));
        assert!(list_images(&d.path().join("nope")).is_err());
    }

    #[test]
    fn results_survive_a_cut_last_line_and_append_after_it() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(RESULTS_FILE);
        assert!(read_results(&p).unwrap().is_empty());
        let mut w = ResultsWriter::open(&p).unwrap();
        w.append(&line("a", true, true, 0.5)).unwrap();
        w.append(&line("b", false, false, 0.0)).unwrap();
        drop(w);
        // A kill in the middle of the third line.
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"image\":\"c\",\"sta").unwrap();
        drop(f);
        let lines = read_results(&p).unwrap();
        assert_eq!(lines, vec![line("a", true, true, 0.5), line("b", false, false, 0.0)]);
        let mut w = ResultsWriter::open(&p).unwrap();
        w.append(&line("b", true, false, 1.5)).unwrap();
        let lines = read_results(&p).unwrap();
        assert_eq!(lines.len(), 3);
        let latest = latest_by_stem(&lines);
        assert_eq!(latest["b"].status, Status::Ok);
        // A broken line in the middle is an error that names the file and line.
        std::fs::write(&p, "{}\n{\"image\":\"a\"}\n").unwrap();
        let e = read_results(&p).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn summary_counts_and_means() {
        let ls = [line("a", true, true, 1.0), line("b", true, false, 3.0), line("c", false, false, 0.0)];
        let s = summarize(4, &ls);
        assert_eq!((s.n_images, s.n_ok, s.n_failed, s.n_pending, s.n_success), (4, 2, 1, 1, 1));
        assert_eq!(s.success_rate, 0.5);
        assert_eq!(s.mean_loss_decision, Some(2.0));
        assert_eq!(s.mean_loss_proximity, Some(4.0));
        assert_eq!(s.seconds_per_image, Some(20.0));
        let s = summarize(1, &ls[2..]);
        assert_eq!((s.success_rate, s.mean_loss_decision), (0.0, None));
    }

    #[test]
    fn line_from_result_json() {
        let v = serde_json::json!({"success": true, "initial_scores": [0.25, 0.5], "final_scores": [0.75, 1.0],
            "steps_run": 3, "seconds": 1.5, "loss_decision": 0.125, "loss_proximity": 0.0625, "failure": null,
            "inputs": {"image": "x/a.png"}});
        let l = ResultLine::from_result_json("a", &v);
        assert_eq!(l.status, Status::Ok);
        assert_eq!(l.final_scores, Some(vec![0.75, 1.0]));
        assert_eq!((l.steps_run, l.seconds, l.loss_proximity), (Some(3), 1.5, Some(0.0625)));
        assert_eq!(l.file.as_deref(), Some("x/a.png"));
        let v = serde_json::json!({"failure": "non-finite"});
        assert_eq!(ResultLine::from_result_json("a", &v).status, Status::Failed);
    }
}
