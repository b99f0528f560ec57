//! BDD-OIA's action files to the attribute CSV that `steex train classifier` reads.
//!
//! A BDD-OIA download holds `data/` (the images) and `{train,val}_25k_images_actions.json`.
//! The published loader (`data/bdd_dataset.py`, `BDDOIADataset`) sorts the images by file
//! name, takes each image's actions from `annotations[image.id]`, leaves out the images whose
//! fifth action ("confuse") is set, and then the ones whose file is not in `data/`; the
//! decision model learns the first four actions. [`actions_csv`] keeps the same images, in
//! the same order, as `file,move_forward,stop,turn_left,turn_right` with values 0/1.

use std::path::{Path, PathBuf};

use steex_train::labels::{BDD_ACTIONS, LabelTable};

use super::DatasetError;
use super::Split;

/// The splits BDD-OIA ships action files for.
pub const SPLITS: [Split; 2] = [Split::Train, Split::Val];

/// A split's action file under a BDD-OIA root.
pub fn actions_file(root: &Path, split: Split) -> PathBuf {
    root.join(format!("{}_25k_images_actions.json", split.name()))
}

/// The images folder under a BDD-OIA root.
pub fn images_dir(root: &Path) -> PathBuf {
    root.join("data")
}

/// One split's CSV, with what was left out.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionsCsv {
    /// The CSV text (header and one line per image kept).
    pub text: String,
    /// Images kept.
    pub kept: usize,
    /// Images of the action file whose file is not in the images folder (left out, as the
    /// published loader does).
    pub missing: usize,
}

/// The attribute CSV of the action file `json`, keeping the images present in `images`.
pub fn actions_csv(json: &Path, images: &Path) -> Result<ActionsCsv, DatasetError> {
    let table = LabelTable::read(json)?;
    if table.names != BDD_ACTIONS {
        return Err(DatasetError::input(json, "not a BDD-OIA action file (images, annotations)"));
    }
    let mut text = format!("file,{}\n", BDD_ACTIONS.join(","));
    let (mut kept, mut missing) = (0, 0);
    for (file, values) in &table.rows {
        if !images.join(file).is_file() {
            missing += 1;
            continue;
        }
        if file.contains([',', '\n', '"']) {
            return Err(DatasetError::input(json, format!("file name `{file}` cannot be written in a CSV")));
        }
        let v: Vec<&str> = values.iter().map(|&x| if x != 0.0 { "1" } else { "0" }).collect();
        text.push_str(&format!("{file},{}\n", v.join(",")));
        kept += 1;
    }
    Ok(ActionsCsv { text, kept, missing })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_published_loaders_images_in_its_order() {
        let dir = tempfile::tempdir().unwrap();
        let data = images_dir(dir.path());
        std::fs::create_dir_all(&data).unwrap();
        for f in ["a.jpg", "b.jpg", "d.jpg"] {
            std::fs::write(data.join(f), b"x").unwrap();
        }
        // d's id points at the first annotation, a at the last (ids are not positions);
        // b is "confuse" (left out), c has no file (left out).
        let json = r#"{"images": [{"file_name": "d.jpg", "id": 0}, {"file_name": "b.jpg", "id": 1},
            {"file_name": "c.jpg", "id": 2}, {"file_name": "a.jpg", "id": 3}],
            "annotations": [{"category": [0, 1, 1, 0, 0]}, {"category": [1, 0, 0, 0, 1]},
            {"category": [1, 0, 0, 0, 0]}, {"category": [1, 0, 0, 1]}]}"#;
        let path = actions_file(dir.path(), Split::Train);
        std::fs::write(&path, json).unwrap();
        let csv = actions_csv(&path, &data).unwrap();
        assert_eq!(csv.text, "file,move_forward,stop,turn_left,turn_right\na.jpg,1,0,0,1\nd.jpg,0,1,1,0\n");
        assert_eq!((csv.kept, csv.missing), (2, 1));
        std::fs::write(&path, "file,cat\na.jpg,1\n").unwrap();
        let e = actions_csv(&path, &data).unwrap_err().to_string();
        assert!(e.contains("not a BDD-OIA action file") && e.contains("train_25k_images_actions.json"), "{e}");
        let e = actions_csv(&dir.path().join("absent.json"), &data).unwrap_err().to_string();
        assert!(e.contains("absent.json"), "{e}");
    }
}
