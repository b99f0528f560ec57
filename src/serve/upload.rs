//! Uploaded files to pixels: a PNG or JPEG query image, an 8-bit PNG label map. Bodies are
//! size-limited before they are read whole, the format is sniffed from the bytes (not the
//! name or the content type), and decoding runs within fixed limits on the image size and
//! the memory it may take, so a small file that claims a huge image is refused.

use std::io::Cursor;

use axum::body::{Body, Bytes};
use image::{DynamicImage, ImageFormat, ImageReader, Limits, RgbImage};
use steex_io::LabelMap;

use super::error::{ApiError, ApiResult};

/// The largest body an upload may have (16 MiB).
pub const MAX_UPLOAD_BYTES: usize = 16 * 1024 * 1024;
/// The largest width or height of an uploaded image or mask.
pub const MAX_SIDE: u32 = 8192;
/// The most memory decoding one upload may take.
pub const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;

/// Reads a request body of at most [`MAX_UPLOAD_BYTES`]; `what` names it in the error.
pub async fn read_body(body: Body, what: &str) -> ApiResult<Bytes> {
    // A declared length over the limit is refused before anything is read.
    if axum::body::HttpBody::size_hint(&body).lower() > MAX_UPLOAD_BYTES as u64 {
        return Err(ApiError::TooLarge { what: what.to_string(), limit: MAX_UPLOAD_BYTES });
    }
    let bytes = axum::body::to_bytes(body, MAX_UPLOAD_BYTES).await.map_err(|e| {
        // Over the limit, http-body-util's `LengthLimitError` ("length limit exceeded") is in
        // the chain; anything else is a client that hung up mid-body.
        let mut cause: Option<&dyn std::error::Error> = Some(&e);
        while let Some(c) = cause {
            if c.to_string().contains("length limit") {
                return ApiError::TooLarge { what: what.to_string(), limit: MAX_UPLOAD_BYTES };
            }
            cause = c.source();
        }
        ApiError::BadRequest(format!("{what}: the body could not be read: {e}"))
    })?;
    if bytes.is_empty() {
        return Err(ApiError::BadRequest(format!("{what}: the body is empty (send the file's bytes as the body)")));
    }
    Ok(bytes)
}

/// Decodes a PNG or JPEG within the limits; `what` names it in the error.
fn decode(bytes: &[u8], what: &str) -> ApiResult<DynamicImage> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ApiError::BadRequest(format!("{what}: cannot be read: {e}")))?;
    match reader.format() {
        Some(ImageFormat::Png | ImageFormat::Jpeg) => {}
        Some(f) => return Err(ApiError::Unsupported(format!("{what}: {f:?} is not taken: send a PNG or JPEG"))),
        None => return Err(ApiError::Unsupported(format!("{what}: not a PNG or JPEG image"))),
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    reader.decode().map_err(|e| match e {
        image::ImageError::Limits(l) => ApiError::Unprocessable(format!(
            "{what}: too large to decode ({l}; at most {MAX_SIDE} x {MAX_SIDE} pixels)"
        )),
        e => ApiError::Unprocessable(format!("{what}: cannot decode it: {e}")),
    })
}

/// A query image: PNG or JPEG, any size within the limits, as 8-bit RGB.
pub fn decode_image(bytes: &[u8]) -> ApiResult<RgbImage> {
    Ok(decode(bytes, "the image")?.to_rgb8())
}

/// A label map: an 8-bit single-channel PNG (value = label id).
pub fn decode_mask(bytes: &[u8]) -> ApiResult<LabelMap> {
    match decode(bytes, "the mask")? {
        DynamicImage::ImageLuma8(g) => {
            let (w, h) = g.dimensions();
            Ok(LabelMap { height: h as usize, width: w as usize, labels: g.into_raw() })
        }
        other => Err(ApiError::Unprocessable(format!(
            "the mask: expected an 8-bit single-channel PNG label map (value = label id), got {:?}",
            other.color()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_of(img: DynamicImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn images_and_masks_are_sniffed_and_checked() {
        let rgb = png_of(DynamicImage::ImageRgb8(RgbImage::new(5, 3)));
        assert_eq!(decode_image(&rgb).unwrap().dimensions(), (5, 3));
        let e = decode_image(b"hello, not an image").unwrap_err();
        assert!(matches!(e, ApiError::Unsupported(_)), "{e}");
        let e = decode_mask(&rgb).unwrap_err();
        assert!(matches!(e, ApiError::Unprocessable(_)) && e.to_string().contains("8-bit"), "{e}");
        let gray = png_of(DynamicImage::ImageLuma8(image::GrayImage::from_pixel(4, 2, image::Luma([3]))));
        let m = decode_mask(&gray).unwrap();
        assert_eq!((m.height, m.width, m.labels[7]), (2, 4, 3));
        // A truncated PNG is refused, not a panic.
        let e = decode_image(&rgb[..rgb.len() / 2]).unwrap_err();
        assert!(matches!(e, ApiError::Unprocessable(_)), "{e}");
    }

    #[test]
    fn bodies_over_the_limit_are_refused_declared_or_streamed() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let declared = Body::from(vec![0u8; MAX_UPLOAD_BYTES + 1]);
        let e = rt.block_on(read_body(declared, "the image")).unwrap_err();
        assert!(matches!(e, ApiError::TooLarge { .. }), "{e}");
        // No length declared: cut off while it is read.
        let chunks = (0..17).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![1u8; 1024 * 1024])));
        let streamed = Body::from_stream(futures_util::stream::iter(chunks));
        let e = rt.block_on(read_body(streamed, "the image")).unwrap_err();
        assert!(matches!(e, ApiError::TooLarge { .. }) && e.to_string().contains("the image"), "{e}");
        let ok = rt.block_on(read_body(Body::from(vec![7u8; 1000]), "the image")).unwrap();
        assert_eq!(ok.len(), 1000);
    }

    #[test]
    fn a_header_claiming_a_huge_image_is_refused() {
        // A valid PNG signature and IHDR of 100000 x 100000 pixels, nothing else.
        let mut png = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, b'I', b'H', b'D', b'R'];
        png.extend_from_slice(&100_000u32.to_be_bytes());
        png.extend_from_slice(&100_000u32.to_be_bytes());
        png.extend_from_slice(&[8, 2, 0, 0, 0]);
        let crc = crc32(&png[12..]);
        png.extend_from_slice(&crc.to_be_bytes());
        let e = decode_image(&png).unwrap_err();
        assert!(matches!(e, ApiError::Unprocessable(_)), "{e}");
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }
}
