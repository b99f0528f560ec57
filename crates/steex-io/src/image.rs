//! Images: query images read as `[1, 3, H, W]` in [-1, 1], label maps, PNG encoding and
//! colours.

use std::path::Path;

use burn::tensor::{Device, Int, Tensor, TensorData};
use image::{GrayImage, Rgb, RgbImage};

use crate::error::{IoError, Result, io_err};
use crate::npy::{Array, read_npy};

fn is_npy(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"))
}

/// Opens and decodes an image file (format from its content); a decoding failure becomes
/// `refuse("cannot decode the <what>: ...")`.
fn decode(path: &Path, refuse: impl FnOnce(String) -> IoError, what: &str) -> Result<image::DynamicImage> {
    image::ImageReader::open(path)
        .map_err(io_err(path))?
        .with_guessed_format()
        .map_err(io_err(path))?
        .decode()
        .map_err(|e| refuse(format!("cannot decode the {what}: {e}")))
}

/// Reads a query image as `[1, 3, H, W]` in [-1, 1] at `(height, width)`:
/// a `.npy` float32 `[1, 3, H, W]` already in [-1, 1] and of that size, or a PNG/JPEG
/// resized bicubic as Pillow does (if its size differs; [`crate::resize::bicubic_rgb`]) and
/// mapped `x / 127.5 - 1`, as the published loaders' `Resize` + `ToTensor` +
/// `Normalize(0.5, 0.5)` do.
pub fn read_image(path: &Path, (height, width): (usize, usize)) -> Result<Array> {
    if is_npy(path) {
        let a = read_npy(path)?;
        if a.shape != [1, 3, height, width] {
            return Err(IoError::Image {
                path: path.to_path_buf(),
                reason: format!("array has shape {:?}, expected [1, 3, {height}, {width}]", a.shape),
            });
        }
        if a.data.iter().any(|v| !(-1.0..=1.0).contains(v)) {
            return Err(IoError::Image { path: path.to_path_buf(), reason: "values must lie in [-1, 1]".into() });
        }
        return Ok(a);
    }
    let img = decode(path, |reason| IoError::Image { path: path.to_path_buf(), reason }, "image")?;
    let rgb = img.to_rgb8();
    let rgb = if rgb.dimensions() != (width as u32, height as u32) {
        crate::resize::bicubic_rgb(&rgb, width, height)
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

/// The size `(height, width)` of an image file (`.npy` `[1, 3, H, W]` or PNG/JPEG), before
/// any resize.
pub fn image_size(path: &Path) -> Result<(usize, usize)> {
    if is_npy(path) {
        let a = read_npy(path)?;
        if a.shape.len() != 4 || a.shape[0] != 1 || a.shape[1] != 3 {
            return Err(IoError::Image {
                path: path.to_path_buf(),
                reason: format!("array has shape {:?}, expected [1, 3, H, W]", a.shape),
            });
        }
        return Ok((a.shape[2], a.shape[3]));
    }
    let (w, h) = image::image_dimensions(path)
        .map_err(|e| IoError::Image { path: path.to_path_buf(), reason: format!("cannot read the image: {e}") })?;
    Ok((h as usize, w as usize))
}

/// Reads an image at its own size as `[1, 3, H, W]` in [-1, 1] (`.npy` or PNG/JPEG).
pub fn read_image_native(path: &Path) -> Result<Array> {
    read_image(path, image_size(path)?)
}

/// Source indices of PyTorch's legacy `F.interpolate(mode="nearest")` along one axis:
/// `min(floor(dst * (in / out)), in - 1)`, with the scale and product in float32 as PyTorch
/// computes them.
pub fn nearest_indices(input: usize, output: usize) -> Vec<i64> {
    if input == output {
        return (0..output as i64).collect();
    }
    let scale = input as f32 / output as f32;
    (0..output).map(|d| ((d as f32 * scale).floor() as usize).min(input - 1) as i64).collect()
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
        let img = decode(path, |reason| IoError::Mask { path: path.to_path_buf(), reason }, "mask")?;
        let image::DynamicImage::ImageLuma8(g) = img else {
            return Err(IoError::Mask {
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
            return Err(IoError::Mask {
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

    /// Nearest resize as Pillow's `Image.resize(size, NEAREST)` does (the published loaders'
    /// rule for label map files: the source pixel under each output pixel's centre).
    pub fn resized_pil(&self, height: usize, width: usize) -> Self {
        if (height, width) == (self.height, self.width) {
            return self.clone();
        }
        let labels = crate::resize::nearest_u8(&self.labels, (self.height, self.width), (height, width));
        LabelMap { height, width, labels }
    }

    /// Checks that this map, read from `path`, can label the image `image` of size
    /// `(height, width)`: any size of the same aspect ratio (each is resized to the model's
    /// size on its own), else an error naming both files and sizes.
    pub fn check_fits(&self, path: &Path, image: &Path, (ih, iw): (usize, usize)) -> Result<()> {
        if crate::resize::same_aspect((self.height, self.width), (ih, iw)) {
            return Ok(());
        }
        Err(IoError::Mask {
            path: path.to_path_buf(),
            reason: format!(
                "the mask is {}x{} (W x H) but the image {} is {iw}x{ih}: their aspect ratios differ                  ({:.3} vs {:.3}); a mask may differ from its image in size (each is resized to the                  model's), not in shape",
                self.width,
                self.height,
                image.display(),
                self.width as f64 / self.height.max(1) as f64,
                iw as f64 / ih.max(1) as f64
            ),
        })
    }

    /// As a `[1, H, W]` integer tensor.
    pub fn to_tensor(&self, device: &Device) -> Tensor<3, Int> {
        let v: Vec<i64> = self.labels.iter().map(|&x| x as i64).collect();
        Tensor::from_data(TensorData::new(v, [1, self.height, self.width]), device)
    }

    /// The map as 8-bit single-channel PNG bytes (value = label id).
    pub fn png(&self) -> Vec<u8> {
        gray_png(&self.labels, self.height, self.width)
    }
}

/// An RGB image from `[3, H, W]` values in [-1, 1].
pub fn to_rgb(data: &[f32], height: usize, width: usize) -> RgbImage {
    let mut img = RgbImage::new(width as u32, height as u32);
    for (x, y, p) in img.enumerate_pixels_mut() {
        for c in 0..3 {
            let v = data[c * height * width + y as usize * width + x as usize];
            p[c] = ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
        }
    }
    img
}

/// PNG bytes of an RGB image.
pub fn png(img: &RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).expect("PNG encoding into memory");
    out.into_inner()
}

/// Encodes an image `[3, H, W]` in [-1, 1] as 8-bit RGB PNG bytes.
pub fn png_bytes(data: &[f32], height: usize, width: usize) -> Vec<u8> {
    png(&to_rgb(data, height, width))
}

/// 8-bit single-channel PNG bytes of row-major `values` (`height * width` of them).
pub fn gray_png(values: &[u8], height: usize, width: usize) -> Vec<u8> {
    let img = GrayImage::from_raw(width as u32, height as u32, values.to_vec()).expect("height * width values");
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).expect("PNG encoding into memory");
    out.into_inner()
}

/// RGB in [0, 1] of a colour given by its hue sector `h6` in [0, 6) (the hue in degrees
/// divided by 60), saturation and value in [0, 1].
pub fn hsv_sector_to_rgb(h6: f32, s: f32, v: f32) -> [f32; 3] {
    let c = v * s;
    let x = c * (1.0 - (h6 % 2.0 - 1.0).abs());
    let (r, g, b) = match h6 as usize {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [r + m, g + m, b + m]
}

/// RGB in [0, 1] of hue `h` in degrees (any value, taken modulo 360), saturation and value
/// in [0, 1].
pub fn hsv_to_rgb(h: f32, s: f32, v: f32) -> [f32; 3] {
    hsv_sector_to_rgb((h % 360.0 + 360.0) % 360.0 / 60.0, s, v)
}

/// RGB in [0, 1] as 8-bit (truncated, as the previews always drew them).
pub fn rgb8(c: [f32; 3]) -> Rgb<u8> {
    Rgb([(c[0] * 255.0) as u8, (c[1] * 255.0) as u8, (c[2] * 255.0) as u8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primaries_and_resizes() {
        assert_eq!(hsv_to_rgb(0.0, 1.0, 1.0), [1.0, 0.0, 0.0]);
        assert_eq!(hsv_to_rgb(480.0, 1.0, 1.0), [0.0, 1.0, 0.0]);
        assert_eq!(hsv_to_rgb(-120.0, 1.0, 1.0), [0.0, 0.0, 1.0]);
        assert_eq!(nearest_indices(5, 3), vec![0, 1, 3]);
        let m = LabelMap { height: 2, width: 2, labels: vec![0, 1, 2, 3] };
        assert_eq!(m.resized(4, 4).labels, vec![0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3]);
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.png");
        std::fs::write(&p, m.png()).unwrap();
        assert_eq!(LabelMap::read(&p).unwrap(), m);
        let e = m.check(3, &p).unwrap_err().to_string();
        assert!(e.contains("m.png") && e.contains("label id 3"), "{e}");
    }
}
