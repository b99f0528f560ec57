//! BDD100k segmentation: the 8-bit label PNGs (ids 0-18, 255 = unknown) to two label maps,
//! with the image beside them (copied), in BDD100k's own splits:
//! - `OUT/{train,val}/labels/<stem>.png`: the generator's label ids, exactly as STEEX's
//!   `data/pix2pix_dataset.py` makes them (`label_tensor[label_tensor == 255] =
//!   opt.label_nc`, `label_nc = 19`): ids 0-18 stay, 255 becomes 19 (`unlabeled`, the last
//!   of the BDD regions). What `explain --mask` and `explain-dir --masks` read.
//! - `OUT/{train,val}/segmenter_labels/<stem>.png`: the published BDD segmenter's training
//!   ids, the shift of STEEX's `data/BDDDataset_for_deeplab.py` (`label * 255 + 1`, then
//!   `> 255 -> 0`): ids 0-18 become 1-19 and 255 (unknown) becomes 0, the class
//!   `train_deeplabv3.py`'s loss ignores. What `steex train segmenter --classes 20` reads.
//! - `OUT/{train,val}/images/<stem>.jpg`: the image.
//!
//! Layouts read under the `bdd100k/` root: the one STEEX reads
//! (`seg/images/{train,val}/<stem>.jpg`, `seg/labels/{train,val}/<stem>_train_id.png`), and
//! the newer download's (`images/10k/{train,val}/<stem>.jpg`,
//! `labels/sem_seg/masks/{train,val}/<stem>.png`). Any other id than 0-18 and 255 fails
//! that image (recorded), as STEEX has no class for it.

use std::path::{Path, PathBuf};

use super::runner::Outcome;
use super::{DatasetError, Split};

/// The classes of BDD100k's segmentation labels (ids `0..CLASSES`).
pub const CLASSES: u8 = 19;
/// The unknown label in BDD100k's files.
pub const UNKNOWN: u8 = 255;
/// The splits BDD100k labels.
pub const SPLITS: [Split; 2] = [Split::Train, Split::Val];

/// The generator's label id of a BDD100k label id (`None`: not a BDD100k id).
pub fn generator_id(id: u8) -> Option<u8> {
    match id {
        UNKNOWN => Some(CLASSES),
        k if k < CLASSES => Some(k),
        _ => None,
    }
}

/// Where a BDD100k download keeps its images and labels.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The images folder holding `train/` and `val/`.
    pub images: PathBuf,
    /// The labels folder holding `train/` and `val/`.
    pub labels: PathBuf,
    /// What follows the image's stem in its label's name (`_train_id.png` or `.png`).
    pub label_suffix: &'static str,
}

/// One image to prepare.
#[derive(Debug, Clone)]
pub struct Item {
    /// Its split.
    pub split: Split,
    /// The image file.
    pub image: PathBuf,
    /// Its label file (maybe absent).
    pub label: PathBuf,
}

impl Item {
    /// `split/stem`, the name in the summary.
    pub fn name(&self) -> String {
        format!("{}/{}", self.split.name(), stem(&self.image))
    }
}

fn stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

impl Layout {
    /// Finds the layout under `root`; the error names the folders expected.
    pub fn find(root: &Path) -> Result<Self, DatasetError> {
        let candidates = [
            Layout { images: root.join("seg/images"), labels: root.join("seg/labels"), label_suffix: "_train_id.png" },
            Layout { images: root.join("images/10k"), labels: root.join("labels/sem_seg/masks"), label_suffix: ".png" },
        ];
        for l in candidates {
            if SPLITS.iter().any(|s| l.images.join(s.name()).is_dir()) && l.labels.is_dir() {
                return Ok(l);
            }
        }
        Err(DatasetError::NotDataset {
            root: root.to_path_buf(),
            dataset: "BDD100k (the bdd100k/ folder)",
            expected: format!(
                "{}/{{train,val}} and {}/{{train,val}} (as STEEX reads it; or images/10k/ and labels/sem_seg/masks/ of the newer download)",
                root.join("seg/images").display(),
                root.join("seg/labels").display()
            ),
        })
    }

    /// The images of both splits (`.jpg`, `.jpeg`, `.png`), sorted by split then name, with
    /// their label files; and the count of other files skipped.
    pub fn items(&self) -> Result<(Vec<Item>, usize), DatasetError> {
        let mut out = Vec::new();
        let mut other = 0;
        for split in SPLITS {
            let dir = self.images.join(split.name());
            if !dir.is_dir() {
                continue;
            }
            let mut v = Vec::new();
            for e in std::fs::read_dir(&dir).map_err(DatasetError::io(&dir))? {
                let p = e.map_err(DatasetError::io(&dir))?.path();
                let ext = p.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
                if p.is_file() && ["jpg", "jpeg", "png"].contains(&ext.as_str()) {
                    let label = self.labels.join(split.name()).join(format!("{}{}", stem(&p), self.label_suffix));
                    v.push(Item { split, image: p, label });
                } else {
                    other += 1;
                }
            }
            v.sort_by(|a, b| a.image.cmp(&b.image));
            out.extend(v);
        }
        Ok((out, other))
    }
}

/// The published BDD segmenter's training id of a BDD100k label id (`None`: not a BDD100k
/// id): `BDDDataset_for_deeplab.py`'s shift, `id + 1`, unknown (255) to 0.
pub fn segmenter_id(id: u8) -> Option<u8> {
    match id {
        UNKNOWN => Some(0),
        k if k < CLASSES => Some(k + 1),
        _ => None,
    }
}

/// The label map of `path` in BDD100k's ids (checked: 0-18 or 255), with its width and
/// height.
pub fn read_label(path: &Path) -> Result<(Vec<u8>, u32, u32), DatasetError> {
    let img = image::ImageReader::open(path)
        .map_err(|e| DatasetError::input(path, format!("cannot open the label: {e}")))?
        .with_guessed_format()
        .map_err(|e| DatasetError::input(path, format!("cannot open the label: {e}")))?
        .decode()
        .map_err(|e| DatasetError::input(path, format!("cannot decode the label: {e}")))?;
    let (w, h) = (img.width(), img.height());
    let gray = match img {
        image::DynamicImage::ImageLuma8(g) => g.into_raw(),
        other => {
            return Err(DatasetError::input(
                path,
                format!("the label is {:?}, expected an 8-bit grey PNG (ids 0-18, 255 = unknown)", other.color()),
            ));
        }
    };
    if let Some(i) = gray.iter().position(|&v| generator_id(v).is_none()) {
        let (x, y) = (i as u32 % w.max(1), i as u32 / w.max(1));
        return Err(DatasetError::input(
            path,
            format!("label id {} at x={x}, y={y}: expected 0-18 or 255 (unknown)", gray[i]),
        ));
    }
    Ok((gray, w, h))
}

/// `map` with each id through `f` (ids checked by [`read_label`]).
fn mapped(map: &[u8], f: fn(u8) -> Option<u8>) -> Vec<u8> {
    map.iter().map(|&v| f(v).unwrap_or(0)).collect()
}

/// The files [`prepare_one`] writes for an image.
#[derive(Debug, Clone)]
pub struct Outputs {
    /// The generator's label map.
    pub labels: PathBuf,
    /// The segmenter's training label map.
    pub segmenter_labels: PathBuf,
    /// The image's copy.
    pub image: PathBuf,
}

impl Outputs {
    fn all_there(&self) -> bool {
        [&self.labels, &self.segmenter_labels, &self.image].iter().all(|p| p.is_file())
    }
}

/// The folders under each split of the output.
pub const OUT_DIRS: [&str; 3] = ["labels", "segmenter_labels", "images"];

/// The files of `item` in `out`.
pub fn outputs(out: &Path, item: &Item) -> Outputs {
    let ext = item.image.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_else(|| "jpg".into());
    let d = out.join(item.split.name());
    let s = stem(&item.image);
    Outputs {
        labels: d.join("labels").join(format!("{s}.png")),
        segmenter_labels: d.join("segmenter_labels").join(format!("{s}.png")),
        image: d.join("images").join(format!("{s}.{ext}")),
    }
}

/// Prepares one image: its label maps (the generator's and the segmenter's ids) and a copy of
/// the image, unless all three are there.
pub fn prepare_one(out: &Path, item: &Item) -> Outcome {
    let split = Some(item.split);
    let o = outputs(out, item);
    if o.all_there() {
        return Outcome::Skipped { split };
    }
    let r = (|| -> Result<(), DatasetError> {
        if !item.label.is_file() {
            return Err(DatasetError::input(&item.label, "no label file for this image"));
        }
        let (map, w, h) = read_label(&item.label)?;
        let (iw, ih) = image::image_dimensions(&item.image)
            .map_err(|e| DatasetError::input(&item.image, format!("cannot read the image: {e}")))?;
        if (iw, ih) != (w, h) {
            return Err(DatasetError::input(
                &item.label,
                format!("the label is {w}x{h}, its image {} is {iw}x{ih}", item.image.display()),
            ));
        }
        let bytes = std::fs::read(&item.image).map_err(DatasetError::io(&item.image))?;
        for (path, f) in [(&o.labels, generator_id as fn(u8) -> Option<u8>), (&o.segmenter_labels, segmenter_id)] {
            let png = steex_io::image::gray_png(&mapped(&map, f), h as usize, w as usize);
            steex_io::write_bytes(path, &png).map_err(|e| DatasetError::input(path, e.to_string()))?;
        }
        steex_io::write_bytes(&o.image, &bytes).map_err(|e| DatasetError::input(&o.image, e.to_string()))?;
        Ok(())
    })();
    match r {
        Ok(()) => Outcome::Written { split, missing_parts: Vec::new() },
        Err(e) => Outcome::Failed { reason: e.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_as_pix2pix_dataset() {
        assert_eq!(generator_id(0), Some(0));
        assert_eq!(generator_id(18), Some(18));
        assert_eq!(generator_id(255), Some(19));
        assert_eq!(generator_id(19), None);
        assert_eq!(generator_id(254), None);
    }

    #[test]
    fn segmenter_ids_as_bdd_dataset_for_deeplab() {
        // label * 255 + 1, then > 255 -> 0
        for k in 0..19u8 {
            assert_eq!(segmenter_id(k), Some(k + 1));
        }
        assert_eq!(segmenter_id(255), Some(0));
        assert_eq!(segmenter_id(19), None);
    }
}
