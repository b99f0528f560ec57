//! Pillow's resizes, bit for bit: `Image.resize(size, BICUBIC)` of an 8-bit RGB image and
//! `Image.resize(size, NEAREST)` of an 8-bit label map, as the published loaders
//! (`torchvision.transforms.Resize` on PIL images) apply them to a query and its mask.
//!
//! The bicubic resize is Pillow's `ImagingResample`: a separable convolution with the
//! `a = -0.5` cubic kernel widened by the scale when reducing (antialiasing), coefficients
//! in 22-bit fixed point, a horizontal pass rounded to 8 bits, then a vertical pass. The
//! nearest resize is Pillow's affine scale: output pixel `x` reads input
//! `floor((x + 0.5) * in / out)`, with the position accumulated in double precision.

use image::RgbImage;

/// Fixed-point precision of Pillow's 8-bit resampling (`32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;

/// Pillow's bicubic kernel (`a = -0.5`), support 2.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// One axis' taps: for every output index, the first input index and its fixed-point
/// weights (Pillow's `precompute_coeffs` then `normalize_coeffs_8bpc`).
struct Taps {
    first: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

fn taps(input: usize, output: usize) -> Taps {
    let scale = input as f64 / output as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let mut first = Vec::with_capacity(output);
    let mut weights = Vec::with_capacity(output);
    for xx in 0..output {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's `(int)` truncates toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(input as i64) as usize;
        let n = xmax.saturating_sub(xmin);
        let w: Vec<f64> = (0..n).map(|x| bicubic((x as f64 + xmin as f64 - center + 0.5) * ss)).collect();
        let total: f64 = w.iter().sum();
        let fixed = w
            .iter()
            .map(|&v| {
                let v = if total != 0.0 { v / total } else { v };
                let s = v * (1u32 << PRECISION_BITS) as f64;
                if v < 0.0 { (-0.5 + s) as i32 } else { (0.5 + s) as i32 }
            })
            .collect();
        first.push(xmin);
        weights.push(fixed);
    }
    Taps { first, weights }
}

/// Pillow's `clip8`: a fixed-point sum back to a byte.
fn clip8(v: i64) -> u8 {
    if v >= (1i64 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Resizes interleaved 8-bit pixels of `channels` channels along one axis: `stride` is the
/// distance between consecutive samples on that axis, `lines` the other axis' positions.
fn pass(src: &[u8], channels: usize, (w, h): (usize, usize), (ow, oh): (usize, usize), horizontal: bool) -> Vec<u8> {
    let t = if horizontal { taps(w, ow) } else { taps(h, oh) };
    let mut out = vec![0u8; ow * oh * channels];
    for y in 0..oh {
        for x in 0..ow {
            let (i, fixed) = if horizontal { (x, y) } else { (y, x) };
            let (start, k) = (t.first[i], &t.weights[i]);
            for c in 0..channels {
                let mut s: i64 = 1 << (PRECISION_BITS - 1);
                for (j, &wt) in k.iter().enumerate() {
                    let (sx, sy) = if horizontal { (start + j, fixed) } else { (fixed, start + j) };
                    s += src[(sy * w + sx) * channels + c] as i64 * wt as i64;
                }
                out[(y * ow + x) * channels + c] = clip8(s);
            }
        }
    }
    out
}

/// `Image.resize((width, height), Image.BICUBIC)` of an RGB image, as Pillow computes it.
pub fn bicubic_rgb(img: &RgbImage, width: usize, height: usize) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if (w, h) == (width, height) {
        return img.clone();
    }
    let mut data = img.as_raw().clone();
    let mut cur_w = w;
    if width != w {
        data = pass(&data, 3, (w, h), (width, h), true);
        cur_w = width;
    }
    if height != h {
        data = pass(&data, 3, (cur_w, h), (cur_w, height), false);
    }
    RgbImage::from_raw(width as u32, height as u32, data).expect("buffer of the output's size")
}

/// Pillow's nearest source indices along one axis: `floor(0.5 * s + x * s)`, `s = in / out`,
/// the position accumulated in double precision as Pillow's affine scale does.
pub fn pil_nearest_indices(input: usize, output: usize) -> Vec<usize> {
    let scale = input as f64 / output as f64;
    let mut pos = scale * 0.5;
    let mut idx = Vec::with_capacity(output);
    for _ in 0..output {
        idx.push((pos as usize).min(input.saturating_sub(1)));
        pos += scale;
    }
    idx
}

/// `Image.resize((width, height), Image.NEAREST)` of a single-channel 8-bit map stored
/// row-major as `(src_height, src_width)`.
pub fn nearest_u8(src: &[u8], (src_height, src_width): (usize, usize), (height, width): (usize, usize)) -> Vec<u8> {
    let rows = pil_nearest_indices(src_height, height);
    let cols = pil_nearest_indices(src_width, width);
    let mut out = Vec::with_capacity(height * width);
    for &r in &rows {
        out.extend(cols.iter().map(|&c| src[r * src_width + c]));
    }
    out
}

/// Whether two sizes `(height, width)` have the same aspect ratio, up to the rounding of
/// one of them to whole pixels (within half a pixel on the smaller size's axes).
pub fn same_aspect((h1, w1): (usize, usize), (h2, w2): (usize, usize)) -> bool {
    if h1 == 0 || w1 == 0 || h2 == 0 || w2 == 0 {
        return false;
    }
    // Scale the larger onto the smaller by width; the height must match within a pixel.
    let ((hs, ws), (hl, wl)) = if w1 * h1 <= w2 * h2 { ((h1, w1), (h2, w2)) } else { ((h2, w2), (h1, w1)) };
    let expect = hl as f64 * ws as f64 / wl as f64;
    (expect - hs as f64).abs() <= 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_takes_pixel_centres() {
        assert_eq!(pil_nearest_indices(4, 2), vec![1, 3]);
        assert_eq!(pil_nearest_indices(2, 4), vec![0, 0, 1, 1]);
        assert_eq!(pil_nearest_indices(3, 3), vec![0, 1, 2]);
    }

    #[test]
    fn bicubic_keeps_a_constant_image() {
        let img = RgbImage::from_pixel(37, 23, image::Rgb([200, 10, 128]));
        let out = bicubic_rgb(&img, 11, 64);
        assert!(out.pixels().all(|p| p.0 == [200, 10, 128]));
    }

    #[test]
    fn aspect_ratio_within_a_pixel() {
        assert!(same_aspect((1024, 1024), (512, 512)));
        assert!(same_aspect((720, 1280), (256, 455)));
        assert!(!same_aspect((64, 64), (64, 32)));
        assert!(!same_aspect((0, 64), (64, 64)));
    }
}
