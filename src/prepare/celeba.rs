//! CelebA: the aligned images (`img_align_celeba/`, 178x218) center-cropped to 150x150 and
//! resized bicubic to 128x128, as the published `preprocess_celeba.py` does
//! (`CenterCrop(150)` then `Resize((128, 128), BICUBIC)` on PIL images), written as PNG
//! (lossless) under `OUT/{train,val,test}/images/` by CelebA's official partition, or
//! `OUT/images/` without one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use image::RgbImage;

use super::runner::Outcome;
use super::{DatasetError, Split};

/// The side of the center crop.
pub const CROP: usize = 150;
/// The side of the prepared images.
pub const SIZE: usize = 128;

/// torchvision's `CenterCrop(size)` offsets: `int(round((in - size) / 2))`, Python's
/// round (half to even).
pub fn center_offset(input: usize, size: usize) -> usize {
    ((input as f64 - size as f64) / 2.0).round_ties_even().max(0.0) as usize
}

/// The published crop: center `CROP`x`CROP`, then Pillow's bicubic to `SIZE`x`SIZE`.
/// Images smaller than the crop are refused (torchvision would pad them with black).
pub fn crop_and_resize(img: &RgbImage) -> Result<RgbImage, String> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w < CROP || h < CROP {
        return Err(format!("the image is {w}x{h}, smaller than the {CROP}x{CROP} crop"));
    }
    let (top, left) = (center_offset(h, CROP), center_offset(w, CROP));
    let crop = image::imageops::crop_imm(img, left as u32, top as u32, CROP as u32, CROP as u32).to_image();
    Ok(steex_io::resize::bicubic_rgb(&crop, SIZE, SIZE))
}

/// The images of `dir` (`.jpg`, `.jpeg`, `.png`), by file name; and the count of other files.
pub fn list(dir: &Path) -> Result<(Vec<PathBuf>, usize), DatasetError> {
    if !dir.is_dir() {
        return Err(DatasetError::NotDataset {
            root: dir.to_path_buf(),
            dataset: "CelebA's aligned images",
            expected: "a folder of images (img_align_celeba/ from img_align_celeba.zip)".into(),
        });
    }
    let mut out = Vec::new();
    let mut other = 0;
    for e in std::fs::read_dir(dir).map_err(DatasetError::io(dir))? {
        let p = e.map_err(DatasetError::io(dir))?.path();
        let ext = p.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        if p.is_file() && ["jpg", "jpeg", "png"].contains(&ext.as_str()) {
            out.push(p);
        } else {
            other += 1;
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(DatasetError::NotDataset {
            root: dir.to_path_buf(),
            dataset: "CelebA's aligned images",
            expected: "JPEG or PNG images in it (as 000001.jpg)".into(),
        });
    }
    Ok((out, other))
}

/// The prepared file of `image` in `out`.
pub fn output(out: &Path, split: Option<Split>, image: &Path) -> PathBuf {
    let stem = image.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let dir = match split {
        Some(s) => out.join(s.name()).join("images"),
        None => out.join("images"),
    };
    dir.join(format!("{stem}.png"))
}

/// Prepares one image, unless its file is there.
pub fn prepare_one(partition: Option<&HashMap<String, Split>>, out: &Path, image: &Path) -> Outcome {
    let name = image.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let split = match partition {
        Some(p) => match p.get(&name) {
            Some(s) => Some(*s),
            None => return Outcome::Failed { reason: format!("{name} is not in the partition file") },
        },
        None => None,
    };
    let dst = output(out, split, image);
    if dst.is_file() {
        return Outcome::Skipped { split };
    }
    let r = (|| -> Result<(), String> {
        let img = image::ImageReader::open(image)
            .and_then(|r| r.with_guessed_format())
            .map_err(|e| format!("{}: cannot open the image: {e}", image.display()))?
            .decode()
            .map_err(|e| format!("{}: cannot decode the image: {e}", image.display()))?
            .to_rgb8();
        let small = crop_and_resize(&img).map_err(|e| format!("{}: {e}", image.display()))?;
        let png = steex_io::image::png(&small);
        steex_io::write_bytes(&dst, &png).map_err(|e| e.to_string())
    })();
    match r {
        Ok(()) => Outcome::Written { split, missing_parts: Vec::new() },
        Err(reason) => Outcome::Failed { reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_half_to_even_as_python() {
        assert_eq!(center_offset(218, 150), 34);
        assert_eq!(center_offset(178, 150), 14);
        assert_eq!(center_offset(151, 150), 0);
        assert_eq!(center_offset(153, 150), 2);
    }
}
