//! Files to tensors and back: images, masks, `.npy` arrays, weights. Everything that
//! writes does so atomically (temporary file + rename).

use std::path::Path;

use burn::tensor::{Device, Int, Tensor, TensorData};
use image::imageops::FilterType;
use ndarray::{ArrayD, IxDyn};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use steex_nn::Weights;
use steex_sean::SeanGenerator;
use steex_sean::mask::nearest_indices;
use weights_convert::atomic_write;

use crate::error::{Error, Result};

/// A float32 array with its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// Shape, C order.
    pub shape: Vec<usize>,
    /// Values.
    pub data: Vec<f32>,
}

impl Array {
    /// As a burn tensor of rank `D` on `device` (the shape must have `D` dims).
    pub fn to_tensor<const D: usize>(&self, device: &Device) -> Tensor<D> {
        Tensor::from_data(TensorData::new(self.data.clone(), self.shape.clone()), device)
    }

    /// From a burn tensor.
    pub fn from_tensor<const D: usize>(t: Tensor<D>) -> Self {
        let shape = t.dims().to_vec();
        let data = t.into_data().convert::<f32>().try_into_vec::<f32>().expect("float32 data");
        Array { shape, data }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// Reads a float32 `.npy` file, refusing other dtypes and non-finite values.
pub fn read_npy(path: &Path) -> Result<Array> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    check_npy_sizes(&bytes).map_err(|reason| Error::Npy { path: path.to_path_buf(), reason })?;
    let arr = ArrayD::<f32>::read_npy(&bytes[..]).map_err(|e| Error::Npy {
        path: path.to_path_buf(),
        reason: format!("not a float32 .npy array in C order: {}", one_line(&e.to_string())),
    })?;
    let shape = arr.shape().to_vec();
    let data: Vec<f32> = arr.into_iter().collect();
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(Error::Npy {
            path: path.to_path_buf(),
            reason: format!("value {} at flat index {i} is not finite", data[i]),
        });
    }
    Ok(Array { shape, data })
}

/// A parser's message on one line: the source excerpt lines of a multi-line syntax error
/// (`1 | ...`, `  | ^---`) are dropped, the rest joined, control characters replaced.
fn one_line(message: &str) -> String {
    let kept: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with('|')
                && !l.trim_start_matches(|c: char| c.is_ascii_digit()).trim_start().starts_with('|')
        })
        .collect();
    kept.join(" ").chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// Checks the sizes a `.npy` header claims against the file before anything is allocated
/// from them: the header length, and the data the shape needs (4 bytes an element, as only
/// float32 is read). Other defects are left to the `.npy` parser's own messages.
fn check_npy_sizes(bytes: &[u8]) -> std::result::Result<(), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (no \\x93NUMPY magic string)".into());
    }
    let (prefix, header_len) = match bytes[6] {
        1 => (10, u16::from_le_bytes([bytes[8], bytes[9]]) as usize),
        2 | 3 if bytes.len() >= 12 => (12, u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize),
        v => return Err(format!("unsupported .npy format version {v} (expected 1, 2 or 3)")),
    };
    let data_start = prefix + header_len;
    if data_start > bytes.len() {
        return Err(format!("the header claims {header_len} bytes but the file holds {}", bytes.len()));
    }
    let header = String::from_utf8_lossy(&bytes[prefix..data_start]);
    let shape = header
        .find("shape")
        .and_then(|i| header[i..].find('(').map(|j| i + j + 1))
        .and_then(|s| header[s..].find(')').map(|e| &header[s..s + e]));
    if let Some(shape) = shape {
        let dims: Option<Vec<usize>> =
            shape.split(',').map(str::trim).filter(|d| !d.is_empty()).map(|d| d.parse().ok()).collect();
        if let Some(dims) = dims {
            let need = dims.iter().try_fold(4usize, |n, &d| n.checked_mul(d));
            let have = bytes.len() - data_start;
            if need.is_none_or(|n| n > have) {
                return Err(format!(
                    "the header's shape {dims:?} needs {} bytes of float32 data but the file holds {have}",
                    need.map_or("more than 2^64".to_string(), |n| n.to_string())
                ));
            }
        }
    }
    Ok(())
}

/// Writes a float32 `.npy` file atomically.
pub fn write_npy(path: &Path, a: &Array) -> Result<()> {
    let arr = ArrayD::from_shape_vec(IxDyn(&a.shape), a.data.clone()).map_err(|e| Error::Argument(e.to_string()))?;
    atomic_write(path, |w| arr.write_npy(w).map_err(std::io::Error::other))?;
    Ok(())
}

/// Reads a query image as `[1, 3, H, W]` in [-1, 1] at `(height, width)`:
/// a `.npy` float32 `[1, 3, H, W]` already in [-1, 1] and of that size, or a PNG/JPEG
/// resized bicubic (if its size differs) and mapped `x / 127.5 - 1`, as the reference's
/// `ToTensor` + `Normalize(0.5, 0.5)` do.
pub fn read_image(path: &Path, (height, width): (usize, usize)) -> Result<Array> {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")) {
        let a = read_npy(path)?;
        if a.shape != [1, 3, height, width] {
            return Err(Error::Image {
                path: path.to_path_buf(),
                reason: format!("array has shape {:?}, expected [1, 3, {height}, {width}]", a.shape),
            });
        }
        if a.data.iter().any(|v| !(-1.0..=1.0).contains(v)) {
            return Err(Error::Image { path: path.to_path_buf(), reason: "values must lie in [-1, 1]".into() });
        }
        return Ok(a);
    }
    let img = image::ImageReader::open(path)
        .map_err(io_err(path))?
        .with_guessed_format()
        .map_err(io_err(path))?
        .decode()
        .map_err(|e| Error::Image { path: path.to_path_buf(), reason: format!("cannot decode the image: {e}") })?;
    let rgb = img.to_rgb8();
    let rgb = if rgb.dimensions() != (width as u32, height as u32) {
        image::imageops::resize(&rgb, width as u32, height as u32, FilterType::CatmullRom)
    } else {
        rgb
    };
    let mut data = vec![0f32; 3 * height * width];
    for (x, y, p) in rgb.enumerate_pixels() {
        for c in 0..3 {
            data[c * height * width + y as usize * width + x as usize] = p[c] as f32 / 127.5 - 1.0;
        }
    }
    Ok(Array { shape: vec![1, 3, height, width], data })
}

/// A label map read from an 8-bit single-channel PNG (value = label id).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelMap {
    /// Height.
    pub height: usize,
    /// Width.
    pub width: usize,
    /// Row-major label ids.
    pub labels: Vec<u8>,
}

impl LabelMap {
    /// Reads an 8-bit single-channel PNG, refusing other pixel formats.
    pub fn read(path: &Path) -> Result<Self> {
        let img = image::ImageReader::open(path)
            .map_err(io_err(path))?
            .with_guessed_format()
            .map_err(io_err(path))?
            .decode()
            .map_err(|e| Error::Mask { path: path.to_path_buf(), reason: format!("cannot decode the mask: {e}") })?;
        let image::DynamicImage::ImageLuma8(g) = img else {
            return Err(Error::Mask {
                path: path.to_path_buf(),
                reason: format!("expected an 8-bit single-channel label map (value = label id), got {:?}", img.color()),
            });
        };
        let (w, h) = g.dimensions();
        Ok(LabelMap { height: h as usize, width: w as usize, labels: g.into_raw() })
    }

    /// Checks every id is below `labels` or 255 (unknown); names the first bad pixel.
    pub fn check(&self, labels: usize, path: &Path) -> Result<()> {
        if let Some(i) = self.labels.iter().position(|&v| v != 255 && v as usize >= labels) {
            return Err(Error::Mask {
                path: path.to_path_buf(),
                reason: format!(
                    "label id {} at pixel (x {}, y {}) is out of range: the model has {labels} labels (0..={}, or 255 for unknown)",
                    self.labels[i],
                    i % self.width,
                    i / self.width,
                    labels - 1
                ),
            });
        }
        Ok(())
    }

    /// Nearest resize with PyTorch's legacy rule (`floor(dst * in / out)`).
    pub fn resized(&self, height: usize, width: usize) -> Self {
        if (height, width) == (self.height, self.width) {
            return self.clone();
        }
        let rows = nearest_indices(self.height, height);
        let cols = nearest_indices(self.width, width);
        let mut labels = Vec::with_capacity(height * width);
        for &r in &rows {
            for &c in &cols {
                labels.push(self.labels[r as usize * self.width + c as usize]);
            }
        }
        LabelMap { height, width, labels }
    }

    /// As a `[1, H, W]` integer tensor.
    pub fn to_tensor(&self, device: &Device) -> Tensor<3, Int> {
        let v: Vec<i64> = self.labels.iter().map(|&x| x as i64).collect();
        Tensor::from_data(TensorData::new(v, [1, self.height, self.width]), device)
    }
}

/// Encodes images `[3, H, W]` in [-1, 1] as 8-bit RGB PNG bytes.
pub fn png_bytes(data: &[f32], height: usize, width: usize) -> Vec<u8> {
    let mut img = image::RgbImage::new(width as u32, height as u32);
    for (x, y, p) in img.enumerate_pixels_mut() {
        for c in 0..3 {
            let v = data[c * height * width + y as usize * width + x as usize];
            p[c] = ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
        }
    }
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).expect("PNG encoding into memory");
    out.into_inner()
}

/// Writes bytes to `path` atomically.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write(path, |w| w.write_all(bytes))?;
    Ok(())
}

/// Reads a weights file written by `weights-convert`.
pub fn read_weights(path: &Path) -> Result<Weights> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    Weights::from_safetensors(bytes).map_err(|e| Error::Model { path: path.to_path_buf(), reason: e.to_string() })
}

/// Loads a SEAN generator from a `weights-convert sean` file.
pub fn load_generator(path: &Path, device: &Device) -> Result<SeanGenerator> {
    let w = read_weights(path)?;
    SeanGenerator::from_weights(&w, device)
        .map_err(|e| Error::Model { path: path.to_path_buf(), reason: e.to_string() })
}

/// Loads a decision model from a `weights-convert densenet|resnet` file.
pub fn load_classifier(path: &Path, device: &Device) -> Result<steex_classifier::AnyClassifier> {
    let w = read_weights(path)?;
    steex_classifier::AnyClassifier::from_weights(&w, device)
        .map_err(|e| Error::Model { path: path.to_path_buf(), reason: e.to_string() })
}

/// The size `(height, width)` of an image file (`.npy` `[1, 3, H, W]` or PNG/JPEG), before
/// any resize.
pub fn image_size(path: &Path) -> Result<(usize, usize)> {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")) {
        let a = read_npy(path)?;
        if a.shape.len() != 4 || a.shape[0] != 1 || a.shape[1] != 3 {
            return Err(Error::Image {
                path: path.to_path_buf(),
                reason: format!("array has shape {:?}, expected [1, 3, H, W]", a.shape),
            });
        }
        return Ok((a.shape[2], a.shape[3]));
    }
    let (w, h) = image::image_dimensions(path)
        .map_err(|e| Error::Image { path: path.to_path_buf(), reason: format!("cannot read the image: {e}") })?;
    Ok((h as usize, w as usize))
}

/// Reads an image at its own size as `[1, 3, H, W]` in [-1, 1] (`.npy` or PNG/JPEG).
pub fn read_image_native(path: &Path) -> Result<Array> {
    read_image(path, image_size(path)?)
}

/// A segmenter loaded from a `weights-convert deeplab` file, with its preset (if recorded).
pub fn load_segmenter(path: &Path, device: &Device) -> Result<(steex_deeplab::DeepLabV3, Option<String>)> {
    let w = read_weights(path)?;
    let err = |reason: String| Error::Model { path: path.to_path_buf(), reason };
    let kind: String = w.meta("kind").map_err(|e| err(e.to_string()))?;
    if kind != steex_deeplab::KIND {
        return Err(err(format!("this is a `{kind}` file, not a segmenter (kind {})", steex_deeplab::KIND)));
    }
    let config = steex_deeplab::DeepLabConfig::from_metadata(&w).map_err(|e| err(e.to_string()))?;
    let preset = w.meta::<String>("preset").ok();
    let model = steex_deeplab::DeepLabV3::load(&w, config, device).map_err(|e| err(e.to_string()))?;
    Ok((model, preset))
}

/// Segments an image `[1, 3, H, W]` and returns the label map in the generator's label ids
/// (the segmenter's convention undone), with the raw logits.
pub fn segment_to_labels(
    model: &steex_deeplab::DeepLabV3,
    preset: Option<&str>,
    image: &Array,
    device: &Device,
) -> (LabelMap, Array, Vec<usize>) {
    let (h, w) = (image.shape[2], image.shape[3]);
    let logits = Array::from_tensor(model.forward(image.to_tensor::<4>(device)).detach());
    let classes = model.config().classes;
    let arg = steex_deeplab::argmax_classes(&logits.data, classes, h, w);
    let conv = steex_deeplab::LabelConvention::detect(preset, classes);
    let labels = arg.iter().map(|&k| conv.to_generator(k)).collect();
    (LabelMap { height: h, width: w, labels }, logits, arg)
}
