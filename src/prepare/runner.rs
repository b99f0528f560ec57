//! The loop every `steex prepare` shares: the output folder (locked, never inside the
//! input, resumed or replaced on request), the images prepared in parallel with a progress
//! bar, finished files skipped, and the summary written to `prepare.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::Serialize;
use steex_io::OutputLock;

use super::{DatasetError, Split, SplitRule};

/// The summary file in the output folder.
pub const SUMMARY_FILE: &str = "prepare.json";

/// What preparing one image did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Its files were written, into this split; the parts it has no file for are listed.
    Written {
        /// The split.
        split: Option<Split>,
        /// Parts without a file (CelebAMask-HQ; empty elsewhere).
        missing_parts: Vec<&'static str>,
    },
    /// Its files were already there (an earlier run): skipped.
    Skipped {
        /// The split.
        split: Option<Split>,
    },
    /// It could not be prepared; nothing of it was written.
    Failed {
        /// Why, naming the file.
        reason: String,
    },
}

/// One image that failed, in the summary.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Failure {
    /// The image's name.
    pub image: String,
    /// Why.
    pub reason: String,
}

/// `prepare.json`: what a run did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PrepareSummary {
    /// The dataset (`celebamaskhq`, `celeba`).
    pub dataset: String,
    /// How images were split.
    pub split: SplitRule,
    /// Images considered.
    pub n_images: usize,
    /// Images written by this run.
    pub n_written: usize,
    /// Images already prepared (skipped).
    pub n_skipped: usize,
    /// Images that failed.
    pub n_failed: usize,
    /// Images per split (written or skipped).
    pub per_split: BTreeMap<String, usize>,
    /// For every part, the images without a file for it (CelebAMask-HQ).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub missing_parts: BTreeMap<String, usize>,
    /// The failures, by image name.
    pub failed: Vec<Failure>,
    /// Other findings (images listed but absent, files copied).
    pub notes: Vec<String>,
}

impl PrepareSummary {
    /// The summary in a few lines, for stderr.
    pub fn text(&self) -> String {
        let mut s = format!(
            "{} images: {} written, {} already there, {} failed; split: {}",
            self.n_images,
            self.n_written,
            self.n_skipped,
            self.n_failed,
            self.split.text()
        );
        let per: Vec<String> = self.per_split.iter().map(|(k, v)| format!("{k} {v}")).collect();
        if !per.is_empty() {
            s += &format!(" ({})", per.join(", "));
        }
        if !self.missing_parts.is_empty() {
            let m: Vec<String> = self.missing_parts.iter().map(|(k, v)| format!("{k} {v}")).collect();
            s += &format!("\nimages without a part file: {}", m.join(", "));
        }
        for f in self.failed.iter().take(5) {
            s += &format!("\nfailed: {}: {}", f.image, f.reason);
        }
        if self.failed.len() > 5 {
            s += &format!("\n... and {} more failures (all in {SUMMARY_FILE})", self.failed.len() - 5);
        }
        for n in &self.notes {
            s += &format!("\n{n}");
        }
        s
    }
}

fn absolute(p: &Path) -> PathBuf {
    // The output may not exist yet: resolve its deepest existing ancestor.
    let mut missing = Vec::new();
    let mut cur = if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir().unwrap_or_default().join(p) };
    loop {
        if let Ok(c) = cur.canonicalize() {
            return missing.into_iter().rev().fold(c, |acc: PathBuf, m| acc.join(m));
        }
        match (cur.file_name().map(|n| n.to_os_string()), cur.parent()) {
            (Some(name), Some(parent)) => {
                missing.push(name);
                cur = parent.to_path_buf();
            }
            _ => return cur,
        }
    }
}

/// Makes `out` ready: refused when inside an input (or holding one); locked; a non-empty
/// folder is continued with `resume` (finished files are skipped) or replaced with `force`,
/// else refused.
pub fn prepare_out(out: &Path, inputs: &[&Path], resume: bool, force: bool) -> Result<OutputLock, DatasetError> {
    let fail = |reason: String| DatasetError::Output { path: out.to_path_buf(), reason };
    let abs = absolute(out);
    for input in inputs {
        let i = absolute(input);
        if abs.starts_with(&i) || i.starts_with(&abs) {
            return Err(fail(format!(
                "is inside the input {} (or holds it): write the prepared dataset elsewhere",
                input.display()
            )));
        }
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| fail(format!("cannot create its parent folder: {e}")))?;
    }
    let lock = OutputLock::acquire(out).map_err(|e| fail(e.to_string()))?;
    if out.exists() {
        if !out.is_dir() {
            return Err(fail("exists and is not a folder".into()));
        }
        let non_empty = std::fs::read_dir(out).map_err(|e| fail(e.to_string()))?.next().is_some();
        if non_empty && !resume {
            if !force {
                return Err(fail(
                    "exists and is not empty (use --resume to finish an earlier run in it, or --force to start over)"
                        .into(),
                ));
            }
            std::fs::remove_dir_all(out).map_err(|e| fail(format!("cannot remove it: {e}")))?;
        }
    }
    std::fs::create_dir_all(out).map_err(|e| fail(format!("cannot create it: {e}")))?;
    Ok(lock)
}

/// Prepares every item in parallel (`threads`, 0 = all cores) with a progress bar named
/// `what`, and tallies the outcomes by item name.
pub fn run_all<T: Sync>(
    items: &[T],
    name: impl Fn(&T) -> String + Sync,
    what: &str,
    threads: usize,
    prepare: impl Fn(&T) -> Outcome + Sync,
) -> Result<Vec<(String, Outcome)>, DatasetError> {
    let bar = ProgressBar::new(items.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} images ({{elapsed}}, eta {{eta}})"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| DatasetError::Output {
        path: PathBuf::from("."),
        reason: format!("cannot start the worker threads: {e}"),
    })?;
    let done = Mutex::new(Vec::with_capacity(items.len()));
    pool.install(|| {
        items.par_iter().for_each(|item| {
            let o = prepare(item);
            bar.inc(1);
            done.lock().unwrap_or_else(|e| e.into_inner()).push((name(item), o));
        })
    });
    bar.finish_and_clear();
    let mut v = done.into_inner().unwrap_or_else(|e| e.into_inner());
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(v)
}

/// The summary of a run's outcomes.
pub fn summarize(
    dataset: &str,
    split: SplitRule,
    outcomes: &[(String, Outcome)],
    notes: Vec<String>,
) -> PrepareSummary {
    let mut s = PrepareSummary {
        dataset: dataset.to_string(),
        split,
        n_images: outcomes.len(),
        n_written: 0,
        n_skipped: 0,
        n_failed: 0,
        per_split: BTreeMap::new(),
        missing_parts: BTreeMap::new(),
        failed: Vec::new(),
        notes,
    };
    for (name, o) in outcomes {
        match o {
            Outcome::Written { split, missing_parts } => {
                s.n_written += 1;
                *s.per_split.entry(split.map_or("all", Split::name).to_string()).or_default() += 1;
                for p in missing_parts {
                    *s.missing_parts.entry(p.to_string()).or_default() += 1;
                }
            }
            Outcome::Skipped { split } => {
                s.n_skipped += 1;
                *s.per_split.entry(split.map_or("all", Split::name).to_string()).or_default() += 1;
            }
            Outcome::Failed { reason } => {
                s.n_failed += 1;
                s.failed.push(Failure { image: name.clone(), reason: reason.clone() });
            }
        }
    }
    s
}

/// Writes `prepare.json` into `out`.
pub fn write_summary(out: &Path, s: &PrepareSummary) -> Result<(), DatasetError> {
    let path = out.join(SUMMARY_FILE);
    steex_io::json::write_json(&path, s).map_err(|e| DatasetError::Output { path, reason: e.to_string() })
}
