//! CelebAMask-HQ: the per-part masks `CelebAMask-HQ-mask-anno/{k / 2000}/{k:05}_{part}.png`
//! composed into one label map per image exactly as the published `g_mask.py` does, written
//! with the image beside it as `OUT/{train,test}/{labels,images}/{k}.{png,jpg}`.
//!
//! `g_mask.py`: a 512x512 map of zeros (background); for every part in [`PARTS`]' order
//! whose file exists, the pixels where the file's first channel as OpenCV reads it (blue,
//! of BGR) is non-zero get the part's id (its position + 1), a later part overwriting an
//! earlier one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::DatasetError;
use super::runner::Outcome;
use super::split::{STEEX_TEST_FROM, Split, SplitRule};

/// The parts in `g_mask.py`'s order; part `PARTS[i]` gets label id `i + 1`.
pub const PARTS: [&str; 18] = [
    "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear", "mouth", "u_lip", "l_lip", "hair",
    "hat", "ear_r", "neck_l", "neck", "cloth",
];

/// The size of the label maps (and of every part mask).
pub const MAP_SIZE: usize = 512;

/// Images per annotation subfolder (`k / 2000`).
pub const PER_FOLDER: usize = 2000;

/// The images folder of a CelebAMask-HQ download.
pub const IMAGES_DIR: &str = "CelebA-HQ-img";
/// The per-part masks folder.
pub const ANNO_DIR: &str = "CelebAMask-HQ-mask-anno";
/// The attribute file.
pub const ATTRIBUTES_FILE: &str = "CelebAMask-HQ-attribute-anno.txt";
/// The mapping to CelebA.
pub const MAPPING_FILE: &str = "CelebA-HQ-to-CelebA-mapping.txt";

/// The files of a CelebAMask-HQ download.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `CelebA-HQ-img/`.
    pub images: PathBuf,
    /// `CelebAMask-HQ-mask-anno/`.
    pub anno: PathBuf,
    /// `CelebAMask-HQ-attribute-anno.txt`, if present.
    pub attributes: Option<PathBuf>,
    /// `CelebA-HQ-to-CelebA-mapping.txt`, if present.
    pub mapping: Option<PathBuf>,
}

impl Layout {
    /// Finds the download's folders under `root`; the error names what was expected.
    pub fn find(root: &Path) -> Result<Self, DatasetError> {
        let not = |expected: String| DatasetError::NotDataset {
            root: root.to_path_buf(),
            dataset: "CelebAMask-HQ",
            expected,
        };
        if !root.is_dir() {
            return Err(not("a folder".into()));
        }
        let (images, anno) = (root.join(IMAGES_DIR), root.join(ANNO_DIR));
        for d in [&images, &anno] {
            if !d.is_dir() {
                return Err(not(format!(
                    "the folder {} (the unzipped CelebAMask-HQ.zip holds {IMAGES_DIR}/ and {ANNO_DIR}/)",
                    d.display()
                )));
            }
        }
        let file = |name: &str| Some(root.join(name)).filter(|p| p.is_file());
        Ok(Layout { images, anno, attributes: file(ATTRIBUTES_FILE), mapping: file(MAPPING_FILE) })
    }

    /// The images: `(k, path)` for every `{k}.jpg` (or `.png`) of `CelebA-HQ-img/`, by `k`;
    /// and the number of other files skipped.
    pub fn images(&self) -> Result<(Vec<(usize, PathBuf)>, usize), DatasetError> {
        let mut out = Vec::new();
        let mut other = 0;
        for e in std::fs::read_dir(&self.images).map_err(DatasetError::io(&self.images))? {
            let p = e.map_err(DatasetError::io(&self.images))?.path();
            let ext = p.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
            let k = p.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse::<usize>().ok());
            match k {
                Some(k) if p.is_file() && ["jpg", "jpeg", "png"].contains(&ext.as_str()) => out.push((k, p)),
                _ => other += 1,
            }
        }
        out.sort();
        Ok((out, other))
    }
}

/// The file of part `part` of image `k`: `anno/{k / 2000}/{k:05}_{part}.png`.
pub fn part_path(anno: &Path, k: usize, part: &str) -> PathBuf {
    anno.join((k / PER_FOLDER).to_string()).join(format!("{k:05}_{part}.png"))
}

/// One image's label map (row-major, 512x512, ids 0..=18) and the parts it has no file
/// for. A part file that cannot be decoded or is not 512x512 fails the image.
pub fn compose(anno: &Path, k: usize) -> Result<(Vec<u8>, Vec<&'static str>), DatasetError> {
    let mut map = vec![0u8; MAP_SIZE * MAP_SIZE];
    let mut missing = Vec::new();
    for (idx, part) in PARTS.iter().enumerate() {
        let path = part_path(anno, k, part);
        if !path.exists() {
            missing.push(*part);
            continue;
        }
        let img = image::ImageReader::open(&path)
            .map_err(|e| DatasetError::input(&path, format!("cannot open the part mask: {e}")))?
            .with_guessed_format()
            .map_err(|e| DatasetError::input(&path, format!("cannot open the part mask: {e}")))?
            .decode()
            .map_err(|e| DatasetError::input(&path, format!("cannot decode the part mask: {e}")))?;
        if (img.width() as usize, img.height() as usize) != (MAP_SIZE, MAP_SIZE) {
            return Err(DatasetError::input(
                &path,
                format!("the part mask is {}x{}, expected {MAP_SIZE}x{MAP_SIZE}", img.width(), img.height()),
            ));
        }
        // OpenCV reads BGR: its first channel is the blue one.
        let rgb = img.to_rgb8();
        for (m, p) in map.iter_mut().zip(rgb.pixels()) {
            if p[2] != 0 {
                *m = idx as u8 + 1;
            }
        }
    }
    Ok((map, missing))
}

/// Assigns images to `train`/`test`.
pub enum Splitter {
    /// Through the mapping to CelebA's official partition (validation and test -> test).
    Partition(HashMap<usize, (usize, String)>, HashMap<String, Split>),
    /// The mapping's CelebA index, as STEEX's loaders split.
    Mapping(HashMap<usize, (usize, String)>),
    /// A seeded fraction.
    Fraction(f64, u64),
}

impl Splitter {
    /// The split of image `k`; `Err` when the split files do not list it.
    pub fn split(&self, k: usize) -> Result<Split, String> {
        let mapped = |m: &HashMap<usize, (usize, String)>| {
            m.get(&k).cloned().ok_or_else(|| format!("image {k} is not in {MAPPING_FILE}"))
        };
        match self {
            Splitter::Partition(m, p) => {
                let (_, file) = mapped(m)?;
                match p.get(&file) {
                    Some(Split::Train) => Ok(Split::Train),
                    Some(_) => Ok(Split::Test),
                    None => Err(format!("image {k} (CelebA {file}) is not in the partition file")),
                }
            }
            Splitter::Mapping(m) => Ok(if mapped(m)?.0 >= STEEX_TEST_FROM { Split::Test } else { Split::Train }),
            Splitter::Fraction(f, seed) => {
                Ok(if SplitRule::fraction_is_test(&k.to_string(), *f, *seed) { Split::Test } else { Split::Train })
            }
        }
    }
}

/// The label map and image files of image `k` in `out`.
pub fn outputs(out: &Path, split: Split, k: usize, image: &Path) -> (PathBuf, PathBuf) {
    let ext = image.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_else(|| "jpg".into());
    let d = out.join(split.name());
    (d.join("labels").join(format!("{k}.png")), d.join("images").join(format!("{k}.{ext}")))
}

/// Prepares image `k`: its label map and a copy of its image, unless both are there.
pub fn prepare_one(layout: &Layout, splitter: &Splitter, out: &Path, k: usize, image: &Path) -> Outcome {
    let split = match splitter.split(k) {
        Ok(s) => s,
        Err(reason) => return Outcome::Failed { reason },
    };
    let (label, copy) = outputs(out, split, k, image);
    if label.is_file() && copy.is_file() {
        return Outcome::Skipped { split: Some(split) };
    }
    let r = (|| -> Result<Vec<&'static str>, DatasetError> {
        // As g_mask.py, an image without any part file gets an all-background map (counted).
        let (map, missing) = compose(&layout.anno, k)?;
        let png = steex_io::image::gray_png(&map, MAP_SIZE, MAP_SIZE);
        let bytes = std::fs::read(image).map_err(DatasetError::io(image))?;
        steex_io::write_bytes(&label, &png).map_err(|e| DatasetError::input(&label, e.to_string()))?;
        steex_io::write_bytes(&copy, &bytes).map_err(|e| DatasetError::input(&copy, e.to_string()))?;
        Ok(missing)
    })();
    match r {
        Ok(missing_parts) => Outcome::Written { split: Some(split), missing_parts },
        Err(e) => Outcome::Failed { reason: e.to_string() },
    }
}
