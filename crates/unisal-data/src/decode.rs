//! Decoding and validating one image file: format by content, dimensions checked from the header before
//! any pixel buffer is allocated, 8-bit RGB conversion, thumbnail, SHA-256 of the file bytes.
//!
//! Every refusal is a one-line reason meant for a person; the caller adds the file name.

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ColorType, DynamicImage, ImageEncoder, ImageFormat, ImageReader, RgbImage};
use sha2::{Digest, Sha256};
use std::io::Cursor;

use crate::thumbnail::{thumbnail_jpeg, THUMBNAIL_SIDE};

/// Size limits checked from the header, before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted width or height.
    pub max_side: u32,
    /// Largest accepted width x height.
    pub max_pixels: u64,
    /// Largest accepted file, in bytes.
    pub max_file_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self { max_side: 16_384, max_pixels: 64 * 1024 * 1024, max_file_bytes: 512 * 1024 * 1024 }
    }
}

/// A validated image, ready to store.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// SHA-256 of the original file bytes, lowercase hex.
    pub sha256: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `png`, `jpeg` or `tiff`: the original file's format.
    pub source_format: &'static str,
    /// `png` or `jpeg`: the format of `stored`.
    pub format: &'static str,
    /// The bytes to store: the original file for 8-bit PNG and JPEG; a lossless 8-bit RGB PNG otherwise.
    pub stored: Vec<u8>,
    /// JPEG thumbnail, at most [`THUMBNAIL_SIDE`] px on its longer side.
    pub thumbnail: Vec<u8>,
    /// What was converted, when something was.
    pub note: Option<String>,
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn format_name(f: ImageFormat) -> &'static str {
    match f {
        ImageFormat::Png => "png",
        ImageFormat::Jpeg => "jpeg",
        ImageFormat::Tiff => "tiff",
        ImageFormat::Gif => "GIF",
        ImageFormat::Bmp => "BMP",
        ImageFormat::WebP => "WebP",
        ImageFormat::Ico => "ICO",
        ImageFormat::Avif => "AVIF",
        _ => "this image format",
    }
}

/// A reader over in-memory bytes.
type BytesReader<'a> = ImageReader<Cursor<&'a [u8]>>;

fn reader(bytes: &[u8]) -> Result<(BytesReader<'_>, ImageFormat), String> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read the file: {e}"))?;
    match reader.format() {
        Some(f @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Tiff)) => Ok((reader, f)),
        Some(other) => Err(format!("unsupported format {}: use PNG, JPEG or TIFF", format_name(other))),
        None => Err("not an image: the content is not PNG, JPEG or TIFF".into()),
    }
}

/// A JPEG whose data stops before its end-of-image marker (trailing zero padding allowed).
fn jpeg_is_truncated(bytes: &[u8]) -> bool {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    !bytes[..end].ends_with(&[0xFF, 0xD9])
}

/// Decode `bytes` to 8-bit RGB after checking the header against `limits`. Returns the image, the source
/// format and a conversion note (16-bit, alpha, grayscale...).
pub fn decode_rgb(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<(RgbImage, ImageFormat, Option<String>), String> {
    let (img, format) = decode(bytes, limits)?;
    let note = conversion_note(&img);
    Ok((img.into_rgb8(), format, note))
}

/// Check the header against `limits`, then decode `bytes` as they are (any bit depth).
fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<(DynamicImage, ImageFormat), String> {
    if bytes.is_empty() {
        return Err("empty file (0 bytes)".into());
    }
    let (header, format) = reader(bytes)?;
    let (w, h) =
        header.into_dimensions().map_err(|e| format!("corrupt {} header: {e}", format_name(format)))?;
    if w == 0 || h == 0 {
        return Err(format!("the header claims an empty image ({w}x{h})"));
    }
    if w > limits.max_side || h > limits.max_side || u64::from(w) * u64::from(h) > limits.max_pixels {
        return Err(format!(
            "image too large: the header claims {w}x{h} pixels (limit {} px a side, {} Mpx); refused without decoding",
            limits.max_side,
            limits.max_pixels / (1024 * 1024)
        ));
    }
    if format == ImageFormat::Jpeg && jpeg_is_truncated(bytes) {
        return Err("truncated JPEG: the data ends before the end-of-image marker".into());
    }
    let (mut full, _) = reader(bytes)?;
    let mut lim = image::Limits::default();
    lim.max_image_width = Some(limits.max_side);
    lim.max_image_height = Some(limits.max_side);
    // RGBA at 16 bits a channel is the largest buffer a supported format decodes to.
    lim.max_alloc = Some(limits.max_pixels.saturating_mul(8).max(1 << 20));
    full.limits(lim);
    let img = full.decode().map_err(|e| format!("cannot decode {}: {e}", format_name(format)))?;
    if (img.width(), img.height()) != (w, h) {
        return Err(format!(
            "decoded size {}x{} differs from the header's {w}x{h}",
            img.width(),
            img.height()
        ));
    }
    Ok((img, format))
}

fn conversion_note(img: &DynamicImage) -> Option<String> {
    let what = match img.color() {
        ColorType::Rgb8 => return None,
        ColorType::L8 => "8-bit grayscale converted to RGB",
        ColorType::La8 => "8-bit grayscale with alpha converted to RGB (alpha dropped)",
        ColorType::Rgba8 => "RGBA converted to RGB (alpha dropped)",
        ColorType::L16 => "16-bit grayscale converted to 8-bit RGB",
        ColorType::La16 => "16-bit grayscale with alpha converted to 8-bit RGB (alpha dropped)",
        ColorType::Rgb16 => "16-bit RGB converted to 8-bit RGB",
        ColorType::Rgba16 => "16-bit RGBA converted to 8-bit RGB (alpha dropped)",
        ColorType::Rgb32F | ColorType::Rgba32F => "32-bit float converted to 8-bit RGB",
        _ => "converted to 8-bit RGB",
    };
    Some(what.to_string())
}

/// Encode `rgb` as a lossless PNG.
pub fn encode_png(rgb: &RgbImage) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Adaptive)
        .write_image(rgb.as_raw(), rgb.width(), rgb.height(), ColorType::Rgb8.into())
        .map_err(|e| format!("cannot encode PNG: {e}"))?;
    Ok(out)
}

/// Validate and prepare the file content `bytes` for the pool: hash, header check, decode, thumbnail,
/// and the bytes to store. The error is a reason for a person (the caller names the file).
pub fn prepare_patch(bytes: &[u8], limits: &DecodeLimits) -> Result<Prepared, String> {
    let sha256 = sha256_hex(bytes);
    let (img, format) = decode(bytes, limits)?;
    let note = conversion_note(&img);
    // Files of more than 8 bits a channel are stored converted, so every stored image is 8-bit.
    let high_depth = img.color().bytes_per_pixel() > img.color().channel_count();
    let rgb = img.into_rgb8();
    let thumbnail = thumbnail_jpeg(&rgb, THUMBNAIL_SIDE)?;
    let keep_original = matches!(format, ImageFormat::Png | ImageFormat::Jpeg) && !high_depth;
    let (stored_format, stored, note) = if keep_original {
        (if format == ImageFormat::Png { "png" } else { "jpeg" }, bytes.to_vec(), note)
    } else {
        let png = encode_png(&rgb)?;
        let why = match (format, note) {
            (ImageFormat::Tiff, None) => "TIFF stored as lossless 8-bit RGB PNG".to_string(),
            (ImageFormat::Tiff, Some(n)) => format!("TIFF {n}, stored as PNG"),
            (_, Some(n)) => format!("{n}, stored as PNG"),
            (_, None) => "stored as PNG".to_string(),
        };
        ("png", png, Some(why))
    };
    Ok(Prepared {
        sha256,
        width: rgb.width(),
        height: rgb.height(),
        source_format: format_name(format),
        format: stored_format,
        stored,
        thumbnail,
        note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }

    /// A PNG whose IHDR claims `w`x`h` RGB pixels, followed by a tiny IDAT and IEND.
    fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit, RGB, deflate, adaptive, no interlace
        let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(&mut out, b"IDAT", &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
        chunk(&mut out, b"IEND", &[]);
        out
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }

    #[test]
    fn huge_header_is_refused_before_decoding() {
        let t = std::time::Instant::now();
        let err = prepare_patch(&png_header(100_000, 100_000), &DecodeLimits::default()).unwrap_err();
        assert!(err.contains("100000x100000"), "{err}");
        assert!(t.elapsed().as_millis() < 100, "took {:?}", t.elapsed());
    }

    #[test]
    fn gray_16_bit_and_rgba_are_converted_with_a_note() {
        let gray16 =
            image::ImageBuffer::<image::Luma<u16>, _>::from_fn(20, 10, |x, _| image::Luma([x as u16 * 3000]));
        let mut png = Vec::new();
        DynamicImage::ImageLuma16(gray16).write_to(&mut Cursor::new(&mut png), ImageFormat::Png).unwrap();
        let p = prepare_patch(&png, &DecodeLimits::default()).unwrap();
        assert_eq!((p.width, p.height, p.format, p.source_format), (20, 10, "png", "png"));
        assert!(p.note.as_deref().unwrap().contains("16-bit grayscale"), "{:?}", p.note);
        let back = image::load_from_memory(&p.stored).unwrap();
        assert_eq!(back.color(), ColorType::Rgb8);
        let v = back.to_rgb8().get_pixel(19, 0).0;
        assert!(v[0].abs_diff((19 * 3000 / 257) as u8) <= 1 && v[0] == v[1] && v[1] == v[2], "{v:?}");

        let rgb16 = image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(6, 4, |x, y| {
            image::Rgb([x as u16 * 10_000, y as u16 * 20_000, 65_535])
        });
        let mut tiff = Vec::new();
        DynamicImage::ImageRgb16(rgb16).write_to(&mut Cursor::new(&mut tiff), ImageFormat::Tiff).unwrap();
        let p = prepare_patch(&tiff, &DecodeLimits::default()).unwrap();
        assert_eq!((p.width, p.height, p.format, p.source_format), (6, 4, "png", "tiff"));
        let note = p.note.unwrap();
        assert!(note.contains("TIFF") && note.contains("16-bit RGB"), "{note}");
        let back = image::load_from_memory(&p.stored).unwrap().to_rgb8();
        let want = [50_000.0f64, 60_000.0, 65_535.0].map(|v| (v / 257.0).round() as u8);
        assert_eq!(back.get_pixel(5, 3).0, want, "16-bit values scaled to 8 bits");

        let rgba = image::RgbaImage::from_pixel(8, 8, image::Rgba([10, 20, 30, 128]));
        let mut png = Vec::new();
        DynamicImage::ImageRgba8(rgba).write_to(&mut Cursor::new(&mut png), ImageFormat::Png).unwrap();
        let p = prepare_patch(&png, &DecodeLimits::default()).unwrap();
        assert_eq!(p.stored, png, "an 8-bit PNG is stored as it came");
        assert!(p.note.unwrap().contains("alpha dropped"));
        let thumb = image::load_from_memory(&p.thumbnail).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (8, 8));
    }
}
