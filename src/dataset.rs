//! Explaining a folder of images: the stable walk, sharding, result lines (`results.jsonl`)
//! and the summary, shared by `steex explain-dir` and `steex merge`.
//!
//! `results.jsonl` holds one line per image once a run has ended (finished, interrupted or
//! killed): `explain-dir` appends a line as each image is done and rewrites the file with
//! each image's last line, in stem order, when it starts and when it ends. Readers take
//! each image's last line ([`latest_by_stem`]), which also reads a log of an older version
//! that kept several.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use steex_io::error::io_err;

use crate::error::{Error, Result};
pub use crate::results::{
    PLAN_FILE, Plan, RESULT_FILE, RESULTS_FILE, ResultLine, SUMMARY_FILE, Status, Summary, summarize,
};

/// File extensions taken as images (case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "npy"];

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

/// Checks or prepares a run's output folder before any work (`explain-dir`, `segment-dir`):
/// a non-empty folder needs `resume` (kept) or `force` (deleted), else it is refused.
pub fn prepare_out(out: &Path, resume: bool, force: bool) -> Result<()> {
    let arg = |m: String| Error::Argument(format!("--out {}: {m}", out.display()));
    if out.exists() {
        if !out.is_dir() {
            return Err(arg("exists and is not a folder".into()));
        }
        let non_empty = std::fs::read_dir(out).map_err(|e| arg(e.to_string()))?.next().is_some();
        if non_empty && !resume {
            if !force {
                return Err(arg(
                    "exists and is not empty (use --resume to continue the run in it, or --force to start over)".into(),
                ));
            }
            std::fs::remove_dir_all(out).map_err(|e| arg(format!("cannot remove it: {e}")))?;
        }
    }
    std::fs::create_dir_all(out).map_err(|e| arg(format!("cannot create it: {e}")))
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

/// Reads the lines of a `results.jsonl`; a missing file has none. A last line cut short (a
/// run killed while writing it) is ignored; any other unreadable line is an error.
pub fn read_results(path: &Path) -> Result<Vec<ResultLine>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
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

/// Replaces `results.jsonl` at `path` with `lines`, atomically (a reader sees the old file
/// or the new one).
pub fn write_results<'a>(path: &Path, lines: impl IntoIterator<Item = &'a ResultLine>) -> Result<()> {
    let mut text = String::new();
    for l in lines {
        text.push_str(&steex_io::json::to_line(l));
        text.push('\n');
    }
    Ok(steex_io::write_bytes(path, text.as_bytes())?)
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
        let mut text = steex_io::json::to_line(line);
        text.push('\n');
        let path = self.path.clone();
        self.file.write_all(text.as_bytes()).map_err(io_err(&path))?;
        self.file.flush().map_err(io_err(&path))?;
        Ok(self.file.sync_all().map_err(io_err(&path))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::tests::line;

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
}
