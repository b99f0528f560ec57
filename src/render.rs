//! Pictures of results: difference heat maps and side-by-side reports with captions
//! (drawn with the `font8x8` bitmap font, so no font file is needed).

use font8x8::UnicodeFonts;
use image::{Rgb, RgbImage};
use steex_io::image::{hsv_sector_to_rgb, rgb8};
pub use steex_io::image::{png, to_rgb};

/// A black-red-yellow-white heat map of `mean_c |a - b|` (both `[3, H, W]`), scaled so
/// that the largest change is white. Returns the map and that largest change.
pub fn difference_map(a: &[f32], b: &[f32], height: usize, width: usize) -> (RgbImage, f32) {
    let n = height * width;
    let d: Vec<f32> = (0..n).map(|i| (0..3).map(|c| (a[c * n + i] - b[c * n + i]).abs()).sum::<f32>() / 3.0).collect();
    let max = d.iter().cloned().fold(0f32, f32::max);
    let mut img = RgbImage::new(width as u32, height as u32);
    for (i, p) in img.pixels_mut().enumerate() {
        let t = if max > 0.0 { d[i] / max } else { 0.0 };
        let r = (3.0 * t).min(1.0);
        let g = (3.0 * t - 1.0).clamp(0.0, 1.0);
        let bl = (3.0 * t - 2.0).clamp(0.0, 1.0);
        *p = Rgb([(r * 255.0) as u8, (g * 255.0) as u8, (bl * 255.0) as u8]);
    }
    (img, max)
}

/// Draws `text` at `(x, y)` in `color`, each font pixel `scale` x `scale`.
pub fn draw_text(img: &mut RgbImage, text: &str, x: u32, y: u32, scale: u32, color: Rgb<u8>) {
    let mut cx = x;
    for ch in text.chars() {
        let glyph = font8x8::BASIC_FONTS.get(ch).or_else(|| font8x8::BASIC_FONTS.get('?')).unwrap_or([0; 8]);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let (px, py) = (cx + col * scale + dx, y + row as u32 * scale + dy);
                        if px < img.width() && py < img.height() {
                            img.put_pixel(px, py, color);
                        }
                    }
                }
            }
        }
        cx += 8 * scale;
    }
}

/// Panels side by side with a title above each and caption lines below the row.
pub fn panel_row(panels: &[(&str, &RgbImage)], captions: &[String]) -> RgbImage {
    let pad = 6u32;
    let (w, h) = panels.first().map(|(_, p)| p.dimensions()).unwrap_or((64, 64));
    let scale = if w >= 192 { 2 } else { 1 };
    let title_h = 8 * scale + 2 * pad;
    let width = panels.len() as u32 * (w + pad) + pad;
    // Caption lines wrap to the image width.
    let per_line = ((width - 2 * pad) / 8).max(8) as usize;
    let mut lines = Vec::new();
    for c in captions {
        let mut rest = c.as_str();
        while rest.len() > per_line {
            let cut = rest[..per_line].rfind(' ').unwrap_or(per_line);
            lines.push(rest[..cut].to_string());
            rest = rest[cut..].trim_start();
        }
        lines.push(rest.to_string());
    }
    let height = title_h + h + pad + lines.len() as u32 * 10 + pad;
    let mut out = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    for (i, (title, p)) in panels.iter().enumerate() {
        let x0 = pad + i as u32 * (w + pad);
        let fit = (w / (8 * scale)).max(1) as usize;
        let title: String = title.chars().take(fit).collect();
        draw_text(&mut out, &title, x0, pad, scale, Rgb([0, 0, 0]));
        image::imageops::overlay(&mut out, *p, x0 as i64, title_h as i64);
    }
    for (i, line) in lines.iter().enumerate() {
        draw_text(&mut out, line, pad, title_h + h + pad + i as u32 * 10, 1, Rgb([0, 0, 0]));
    }
    out
}

/// A distinct colour for label `i` (255, unknown, is grey).
pub fn label_colour(i: usize) -> Rgb<u8> {
    if i == 255 {
        return Rgb([128, 128, 128]);
    }
    let h = (i as f32 * 0.618_034).fract() * 6.0;
    let (s, v) = (0.75f32, if i.is_multiple_of(2) { 0.95 } else { 0.7 });
    rgb8(hsv_sector_to_rgb(h, s, v))
}

/// A colour-coded label map with a legend naming the labels present (`names[id]`, and
/// "unknown" for 255).
pub fn label_preview(labels: &[u8], height: usize, width: usize, names: &[String]) -> RgbImage {
    let scale = if width < 256 { 256 / width.max(1) } else { 1 } as u32;
    let (pw, ph) = (width as u32 * scale, height as u32 * scale);
    let mut present: Vec<u8> = labels.to_vec();
    present.sort_unstable();
    present.dedup();
    let cols = (pw / 160).max(1);
    let rows = (present.len() as u32).div_ceil(cols);
    let mut out = RgbImage::from_pixel(pw.max(160), ph + 8 + rows * 12 + 4, Rgb([255, 255, 255]));
    for y in 0..ph {
        for x in 0..pw {
            let l = labels[(y / scale) as usize * width + (x / scale) as usize];
            out.put_pixel(x, y, label_colour(l as usize));
        }
    }
    for (i, &l) in present.iter().enumerate() {
        let (cx, cy) = ((i as u32 % cols) * 160 + 4, ph + 8 + (i as u32 / cols) * 12);
        for dy in 0..8 {
            for dx in 0..8 {
                out.put_pixel(cx + dx, cy + dy, label_colour(l as usize));
            }
        }
        let name = if l == 255 {
            "unknown".to_string()
        } else {
            names.get(l as usize).cloned().unwrap_or_else(|| format!("label {l}"))
        };
        draw_text(&mut out, &format!("{l} {name}"), cx + 12, cy, 1, Rgb([0, 0, 0]));
    }
    out
}
