//! `--results DIR`: an `explain-dir` output folder, read through the typed schema
//! (`results.jsonl` as [`ResultLine`]s, `summary.json` as a [`Summary`], `plan.json` as a
//! [`Plan`]), and its PNGs served.
//!
//! No part of a request reaches the file system unchecked: an image name must be a plain
//! file name (no separator, no `..`, nothing hidden, no control character, no drive
//! prefix) naming an image of `results.jsonl`, a file must be one of the PNGs a result
//! folder holds ([`FILES`]), and the path they make, resolved (links followed), must lie
//! inside `DIR`.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use crate::dataset::{latest_by_stem, read_results};
use crate::results::{PLAN_FILE, Plan, RESULTS_FILE, ResultLine, SUMMARY_FILE, Status, Summary};

/// The files of a result folder the server hands out.
pub const FILES: [&str; 6] =
    ["query.png", "reconstruction.png", "counterfactual.png", "difference.png", "report.png", "mask.png"];

/// An `explain-dir` output folder.
pub struct ResultsDir {
    root: PathBuf,
}

/// Checks that `name` is one plain file or folder name: not empty, not `.`/`..`, no `/`,
/// `\`, `:` or control character, not hidden (a leading `.`), at most 255 bytes.
pub fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.chars().any(|c| matches!(c, '/' | '\\' | ':') || c.is_control())
}

impl ResultsDir {
    /// Opens `dir`, which must be a folder with a `results.jsonl`.
    pub fn open(dir: &Path) -> crate::Result<Self> {
        let root = dir.canonicalize().map_err(|e| crate::Error::io(dir, e))?;
        if !root.join(RESULTS_FILE).is_file() {
            return Err(crate::Error::Argument(format!(
                "--results {}: no {RESULTS_FILE} in it: give the --out folder of `steex explain-dir`",
                dir.display()
            )));
        }
        Ok(ResultsDir { root })
    }

    /// The folder (resolved).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lines(&self) -> ApiResult<Vec<ResultLine>> {
        let lines = read_results(&self.root.join(RESULTS_FILE)).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(latest_by_stem(&lines).into_values().collect())
    }

    /// The images of the run (the last line of each), with their score change and the
    /// addresses of their PNGs, the summary and the attribute explained.
    pub fn list(&self) -> ApiResult<Value> {
        let summary: Option<Summary> = crate::io::read_json(&self.root.join(SUMMARY_FILE)).ok();
        let plan: Option<Plan> = crate::io::read_json(&self.root.join(PLAN_FILE)).ok();
        let attribute_id =
            plan.as_ref().and_then(|p| p.settings.pointer("/explain/attribute")).and_then(Value::as_u64).unwrap_or(0)
                as usize;
        let attribute = plan.as_ref().and_then(|p| p.settings.get("attribute")).cloned().unwrap_or(Value::Null);
        let images: Vec<Value> = self
            .lines()?
            .iter()
            .map(|l| {
                let before = l.initial_scores.as_ref().and_then(|s| s.get(attribute_id)).copied();
                let after = l.final_scores.as_ref().and_then(|s| s.get(attribute_id)).copied();
                let files = plain_name(&l.image) && self.root.join(&l.image).is_dir();
                let urls: serde_json::Map<String, Value> = if files {
                    FILES
                        .iter()
                        .map(|f| {
                            let key = f.trim_end_matches(".png").to_string();
                            (key, json!(format!("/api/results/{}/{f}", encode(&l.image))))
                        })
                        .collect()
                } else {
                    Default::default()
                };
                json!({
                    "image": l.image,
                    "status": if l.status == Status::Ok { "ok" } else { "failed" },
                    "reason": l.reason,
                    "success": l.success,
                    "initial_score": before,
                    "final_score": after,
                    "score_change": before.zip(after).map(|(b, a)| a - b),
                    "steps_run": l.steps_run,
                    "seconds": l.seconds,
                    "files": urls,
                })
            })
            .collect();
        Ok(json!({
            "dir": self.root.display().to_string(),
            "attribute": attribute,
            "summary": summary,
            "images": images,
        }))
    }

    /// The bytes of `file` of image `image`'s result folder, after the checks above.
    pub fn file(&self, image: &str, file: &str) -> ApiResult<Vec<u8>> {
        if !plain_name(image) {
            return Err(ApiError::BadRequest(format!("image `{}`: not a plain name", image.escape_default())));
        }
        if !FILES.contains(&file) {
            return Err(ApiError::NotFound(format!(
                "file `{}`: not served (one of {})",
                file.escape_default(),
                FILES.join(", ")
            )));
        }
        if !self.lines()?.iter().any(|l| l.image == image) {
            return Err(ApiError::NotFound(format!("image `{image}`: not in {RESULTS_FILE}")));
        }
        let path = self.root.join(image).join(file);
        let resolved = path.canonicalize().map_err(|_| ApiError::NotFound(format!("{image}/{file}: no such file")))?;
        if !resolved.starts_with(&self.root) || !resolved.is_file() {
            return Err(ApiError::NotFound(format!("{image}/{file}: not inside the results folder")));
        }
        std::fs::read(&resolved).map_err(|e| ApiError::Internal(format!("{image}/{file}: {e}")))
    }
}

/// Percent-encodes a path segment (everything but unreserved characters).
pub fn encode(segment: &str) -> String {
    let mut out = String::new();
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_pass() {
        for ok in ["0001", "img_3.face", "a b", "été"] {
            assert!(plain_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "../x", "a/b", "a\\b", "/etc", "C:x", ".hidden", "a\0b", "a\nb"] {
            assert!(!plain_name(bad), "{bad:?}");
        }
        assert_eq!(encode("a b/é"), "a%20b%2F%C3%A9");
    }
}
