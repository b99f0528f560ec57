//! Train/validation/test splits: CelebA's official partition (`list_eval_partition.txt`),
//! CelebAMask-HQ's mapping to CelebA (`CelebA-HQ-to-CelebA-mapping.txt`), or a seeded
//! fraction when neither is given.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::DatasetError;

/// First CelebA index (0-based, as the mapping's `orig_idx`) that STEEX's CelebAMask-HQ
/// loaders put in the test split (`int(x) >= 162771` in `CelebAMaskHQDataset_for_deeplab.py`).
pub const STEEX_TEST_FROM: usize = 162_771;

/// One split of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training images.
    Train,
    /// Validation images.
    Val,
    /// Test images.
    Test,
}

impl Split {
    /// The folder name: `train`, `val` or `test`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    /// CelebA's partition id (0 train, 1 validation, 2 test).
    pub fn from_partition(id: u8) -> Option<Split> {
        match id {
            0 => Some(Split::Train),
            1 => Some(Split::Val),
            2 => Some(Split::Test),
            _ => None,
        }
    }
}

/// How images were assigned to splits (recorded in `prepare.json` and printed).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum SplitRule {
    /// CelebA's official `list_eval_partition.txt` (through the CelebA-HQ mapping for
    /// CelebAMask-HQ).
    Partition {
        /// The partition file.
        partition: PathBuf,
    },
    /// The mapping's CelebA index: test from [`STEEX_TEST_FROM`] on, as STEEX's loaders do.
    Mapping {
        /// The mapping file.
        mapping: PathBuf,
    },
    /// A fraction of the images, chosen by a hash of each image's name and the seed (the
    /// same image always lands in the same split, whatever else the folder holds).
    Fraction {
        /// The fraction in the test split.
        test_fraction: f64,
        /// The seed.
        seed: u64,
    },
    /// The dataset's own split folders (BDD100k's `train/`, `val/`).
    Folders {
        /// The folder holding them.
        images: PathBuf,
    },
    /// No split: every image in one folder.
    None,
}

impl SplitRule {
    /// The rule in words, for the closing lines.
    pub fn text(&self) -> String {
        match self {
            SplitRule::Partition { partition } => format!("CelebA's official partition ({})", partition.display()),
            SplitRule::Mapping { mapping } => format!(
                "the CelebA index in {} (test from {STEEX_TEST_FROM} on, as STEEX's loaders split)",
                mapping.display()
            ),
            SplitRule::Fraction { test_fraction, seed } => {
                format!("--test-fraction {test_fraction} with --seed {seed} (no official split files found)")
            }
            SplitRule::Folders { images } => format!("the dataset's own split folders ({})", images.display()),
            SplitRule::None => "none (no partition file given)".into(),
        }
    }

    /// Whether the image named `key` is in the test split under a [`SplitRule::Fraction`].
    pub fn fraction_is_test(key: &str, test_fraction: f64, seed: u64) -> bool {
        // FNV-1a of the name, mixed with the seed by splitmix64: uniform in [0, 1).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        let mut z = h ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        ((z >> 11) as f64 / (1u64 << 53) as f64) < test_fraction
    }
}

fn read_lines(path: &Path) -> Result<Vec<String>, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(DatasetError::io(path))?;
    Ok(text.lines().map(str::to_string).collect())
}

/// `CelebA-HQ-to-CelebA-mapping.txt`: for every CelebA-HQ index, its CelebA index
/// (`orig_idx`, 0-based) and file name (`orig_file`). The header line is skipped.
pub fn read_mapping(path: &Path) -> Result<HashMap<usize, (usize, String)>, DatasetError> {
    let mut out = HashMap::new();
    for (i, line) in read_lines(path)?.iter().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() || (i == 0 && f.first() == Some(&"idx")) {
            continue;
        }
        let bad = |reason: String| DatasetError::Listing { path: path.to_path_buf(), line: i + 1, reason };
        if f.len() != 3 {
            return Err(bad(format!("expected `idx orig_idx orig_file`, got `{line}`")));
        }
        let idx = f[0].parse().map_err(|_| bad(format!("idx `{}` is not a whole number", f[0])))?;
        let orig = f[1].parse().map_err(|_| bad(format!("orig_idx `{}` is not a whole number", f[1])))?;
        out.insert(idx, (orig, f[2].to_string()));
    }
    if out.is_empty() {
        return Err(DatasetError::Listing { path: path.to_path_buf(), line: 1, reason: "no mapping lines".into() });
    }
    Ok(out)
}

/// CelebA's `list_eval_partition.txt`: file name to split (`000001.jpg 0`).
pub fn read_partition(path: &Path) -> Result<HashMap<String, Split>, DatasetError> {
    let mut out = HashMap::new();
    for (i, line) in read_lines(path)?.iter().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        let bad = |reason: String| DatasetError::Listing { path: path.to_path_buf(), line: i + 1, reason };
        if f.len() != 2 {
            return Err(bad(format!("expected `file partition` (as `000001.jpg 0`), got `{line}`")));
        }
        let split = f[1]
            .parse()
            .ok()
            .and_then(Split::from_partition)
            .ok_or_else(|| bad(format!("partition `{}`: expected 0, 1 or 2", f[1])))?;
        out.insert(f[0].to_string(), split);
    }
    if out.is_empty() {
        return Err(DatasetError::Listing { path: path.to_path_buf(), line: 1, reason: "no partition lines".into() });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fraction_is_stable_and_close_to_asked() {
        let n = 4000;
        let test = (0..n).filter(|k| SplitRule::fraction_is_test(&k.to_string(), 0.2, 7)).count();
        assert!((700..900).contains(&test), "{test} of {n} in test");
        let again = (0..n).filter(|k| SplitRule::fraction_is_test(&k.to_string(), 0.2, 7)).count();
        assert_eq!(test, again);
        let other = (0..n).filter(|k| SplitRule::fraction_is_test(&k.to_string(), 0.2, 8)).count();
        assert_ne!(
            (0..n).map(|k| SplitRule::fraction_is_test(&k.to_string(), 0.2, 8)).collect::<Vec<_>>(),
            (0..n).map(|k| SplitRule::fraction_is_test(&k.to_string(), 0.2, 7)).collect::<Vec<_>>(),
            "{other}"
        );
    }

    #[test]
    fn listings_parse_and_name_bad_lines() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("m.txt");
        std::fs::write(&m, "idx orig_idx orig_file\n0 119613 119614.jpg\n1 99094 099095.jpg\n").unwrap();
        let map = read_mapping(&m).unwrap();
        assert_eq!(map[&1], (99094, "099095.jpg".to_string()));
        std::fs::write(&m, "idx orig_idx orig_file\n0 x 1.jpg\n").unwrap();
        let e = read_mapping(&m).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("orig_idx `x`"), "{e}");
        let p = d.path().join("p.txt");
        std::fs::write(&p, "000001.jpg 0\n000002.jpg 2\n").unwrap();
        assert_eq!(read_partition(&p).unwrap()["000002.jpg"], Split::Test);
        std::fs::write(&p, "000001.jpg 5\n").unwrap();
        assert!(read_partition(&p).unwrap_err().to_string().contains("expected 0, 1 or 2"));
    }
}
