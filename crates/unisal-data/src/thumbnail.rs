//! Thumbnails: an integer box-filter downscale (each output pixel averages the source pixels it covers)
//! and a JPEG encode. Both are a small fraction of an import's time; `image`'s float `thumbnail` and its
//! JPEG encoder took about 60% of it.

use image::RgbImage;

/// Longest side of a thumbnail, in pixels.
pub const THUMBNAIL_SIDE: u32 = 96;

/// JPEG quality of thumbnails.
const QUALITY: u8 = 85;

/// The size of `rgb`'s thumbnail: at most `side` on the longer side, aspect kept, never enlarged.
pub fn thumbnail_size(width: u32, height: u32, side: u32) -> (u32, u32) {
    let long = width.max(height);
    if long <= side {
        return (width, height);
    }
    let scale =
        |v: u32| ((u64::from(v) * u64::from(side) + u64::from(long) / 2) / u64::from(long)).max(1) as u32;
    (scale(width), scale(height))
}

/// The source range `[start, end)` each output index covers, for `src` pixels into `dst` (`dst <= src`).
fn spans(src: u32, dst: u32) -> Vec<(usize, usize)> {
    (0..dst)
        .map(|o| {
            let start = (u64::from(o) * u64::from(src) / u64::from(dst)) as usize;
            let end = ((u64::from(o) + 1) * u64::from(src) / u64::from(dst)) as usize;
            (start, end.max(start + 1))
        })
        .collect()
}

/// Downscale `rgb` to `tw` x `th` (no larger than it) by averaging, in integers.
pub fn downscale(rgb: &RgbImage, tw: u32, th: u32) -> RgbImage {
    let (w, h) = rgb.dimensions();
    if (tw, th) == (w, h) {
        return rgb.clone();
    }
    let (xs, ys) = (spans(w, tw.min(w)), spans(h, th.min(h)));
    let src = rgb.as_raw();
    let stride = w as usize * 3;
    let mut out = Vec::with_capacity(xs.len() * ys.len() * 3);
    for &(y0, y1) in &ys {
        for &(x0, x1) in &xs {
            let mut sum = [0u32; 3];
            for y in y0..y1 {
                let row = &src[y * stride + x0 * 3..y * stride + x1 * 3];
                for px in row.chunks_exact(3) {
                    sum[0] += u32::from(px[0]);
                    sum[1] += u32::from(px[1]);
                    sum[2] += u32::from(px[2]);
                }
            }
            let n = ((y1 - y0) * (x1 - x0)) as u32;
            out.extend(sum.iter().map(|s| ((s + n / 2) / n) as u8));
        }
    }
    RgbImage::from_raw(xs.len() as u32, ys.len() as u32, out).expect("buffer size matches")
}

/// A JPEG thumbnail of `rgb`, at most `side` px on its longer side (never enlarged).
pub fn thumbnail_jpeg(rgb: &RgbImage, side: u32) -> Result<Vec<u8>, String> {
    let (tw, th) = thumbnail_size(rgb.width(), rgb.height(), side);
    let small = downscale(rgb, tw, th);
    let (w, h) = (u16::try_from(tw), u16::try_from(th));
    let (Ok(w), Ok(h)) = (w, h) else {
        return Err(format!("thumbnail size {tw}x{th} out of range"));
    };
    let mut out = Vec::with_capacity(8 * 1024);
    jpeg_encoder::Encoder::new(&mut out, QUALITY)
        .encode(small.as_raw(), w, h, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| format!("cannot encode the thumbnail: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_keep_aspect_and_never_enlarge() {
        assert_eq!(thumbnail_size(150, 150, 96), (96, 96));
        assert_eq!(thumbnail_size(300, 150, 96), (96, 48));
        assert_eq!(thumbnail_size(40, 30, 96), (40, 30));
        assert_eq!(thumbnail_size(10_000, 1, 96), (96, 1));
    }

    #[test]
    fn downscale_averages_the_covered_pixels() {
        // Left half black, right half white: the 2x1 result is one black and one white pixel.
        let img =
            RgbImage::from_fn(
                4,
                2,
                |x, _| if x < 2 { image::Rgb([0, 0, 0]) } else { image::Rgb([255, 255, 255]) },
            );
        let small = downscale(&img, 2, 1);
        assert_eq!(small.as_raw(), &vec![0, 0, 0, 255, 255, 255]);
        // A 3x3 checker of 0/90 averages to 40 (= 360 / 9 rounded).
        let img = RgbImage::from_fn(3, 3, |x, y| image::Rgb([if (x + y) % 2 == 0 { 0 } else { 90 }; 3]));
        assert_eq!(downscale(&img, 1, 1).as_raw(), &vec![40, 40, 40]);
    }

    #[test]
    fn thumbnails_decode_at_the_right_size() {
        let rgb = RgbImage::from_pixel(300, 150, image::Rgb([200, 100, 50]));
        let t = image::load_from_memory(&thumbnail_jpeg(&rgb, 96).unwrap()).unwrap().to_rgb8();
        assert_eq!(t.dimensions(), (96, 48));
        let px = t.get_pixel(40, 20).0;
        assert!(px[0].abs_diff(200) < 6 && px[1].abs_diff(100) < 6 && px[2].abs_diff(50) < 6, "{px:?}");
    }
}
