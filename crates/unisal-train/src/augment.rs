//! Image views of UNISAL.md section 1.2: decode to RGB8, resize the shorter side, then either the training view
//! (random square crop, random 90-degree rotation, random flip, normalisation) or the evaluation view
//! (normalisation only, no crop).
//!
//! Training view details: the crop position is uniform; with p = 0.5 the crop is rotated by k * 90 degrees
//! counter-clockwise with k uniform in 0..=3 (as UNISAL.md states "k in 0..3"; k = 0 leaves it unrotated); with
//! p = 0.5 it is flipped horizontally, vertically or both (each a third). No colour augmentation.
//! Evaluation view: a square image is used whole; a non-square one is centre-cropped to a square of its shorter
//! side, so that a batch has one shape (pool patches are square; this is documented, not silent).
//!
//! Randomness comes from [`sample_rng`], derived from (seed, stream, a, b) alone, so a sample's view does not
//! depend on which thread draws it or when.

use crate::error::{Result, TrainError};
use image::{imageops::FilterType, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Normalisation mean (CLIP's), RGB, written as UNISAL.md publishes it.
#[allow(clippy::excessive_precision)]
pub const MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// Normalisation standard deviation (CLIP's), RGB, written as UNISAL.md publishes it.
#[allow(clippy::excessive_precision)]
pub const STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// Decodes encoded image bytes (PNG, JPEG, TIFF; 16-bit, grayscale and alpha converted) to 8-bit RGB with
/// `unisal_data`'s validating decoder (header limits checked before decoding); the error names the patch.
pub fn decode_rgb(bytes: &[u8], patch_id: i64) -> Result<RgbImage> {
    unisal_data::decode_rgb(bytes, &unisal_data::DecodeLimits::default())
        .map(|(img, _, _)| img)
        .map_err(|reason| TrainError::Image { patch_id, reason })
}

/// Resizes so that the shorter side is `side` (the longer side scaled and truncated, as torchvision does),
/// with a triangle (bilinear, antialiased when shrinking) filter; an image already at that size is returned as is.
pub fn resize_shorter(img: RgbImage, side: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let (nw, nh) = if w <= h {
        (side, ((h as u64 * side as u64) / w as u64) as u32)
    } else {
        (((w as u64 * side as u64) / h as u64) as u32, side)
    };
    if (nw, nh) == (w, h) {
        img
    } else {
        image::imageops::resize(&img, nw.max(1), nh.max(1), FilterType::Triangle)
    }
}

/// A deterministic RNG for one (stream, a, b) under `seed`, independent of every other tuple.
pub fn sample_rng(seed: u64, stream: u64, a: u64, b: u64) -> ChaCha8Rng {
    let mut x = splitmix(seed ^ 0x5151_5eed);
    for v in [stream, a, b] {
        x = splitmix(x ^ v.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }
    ChaCha8Rng::seed_from_u64(x)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The flip applied after the rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flip {
    None,
    Horizontal,
    Vertical,
    Both,
}

/// One draw of the training augmentation for an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Augmentation {
    pub top: u32,
    pub left: u32,
    /// Counter-clockwise quarter turns, 0..=3.
    pub quarter_turns: u8,
    pub flip: Flip,
}

impl Augmentation {
    /// Draws crop position, rotation and flip for an image of `width` x `height` and a `crop`-sided crop.
    pub fn draw(rng: &mut impl Rng, width: u32, height: u32, crop: u32) -> Self {
        let top = rng.gen_range(0..=height.saturating_sub(crop));
        let left = rng.gen_range(0..=width.saturating_sub(crop));
        let quarter_turns = if rng.gen_bool(0.5) { rng.gen_range(0..4u8) } else { 0 };
        let flip = if rng.gen_bool(0.5) {
            [Flip::Horizontal, Flip::Vertical, Flip::Both][rng.gen_range(0..3usize)]
        } else {
            Flip::None
        };
        Self { top, left, quarter_turns, flip }
    }

    /// Source pixel (x, y) of the image for output pixel (x, y) of an `n`-sided view.
    fn source(&self, x: u32, y: u32, n: u32) -> (u32, u32) {
        let (mut i, mut j) = (y, x);
        // undo the flip
        if matches!(self.flip, Flip::Vertical | Flip::Both) {
            i = n - 1 - i;
        }
        if matches!(self.flip, Flip::Horizontal | Flip::Both) {
            j = n - 1 - j;
        }
        // undo the rotation: rot90(a)[i, j] = a[j, n - 1 - i]
        for _ in 0..self.quarter_turns {
            (i, j) = (j, n - 1 - i);
        }
        (self.left + j, self.top + i)
    }
}

/// Writes the normalised CHW view of `img` for `aug` into `out` (3 * crop * crop floats).
pub fn write_train_view(img: &RgbImage, aug: &Augmentation, crop: u32, out: &mut [f32]) -> Result<()> {
    let (w, h) = img.dimensions();
    if w < crop || h < crop {
        return Err(TrainError::InvalidInput(format!(
            "a {w}x{h} image is smaller than the {crop}-pixel crop"
        )));
    }
    let n = crop as usize;
    check_len(out, n, n)?;
    for y in 0..crop {
        for x in 0..crop {
            let (sx, sy) = aug.source(x, y, crop);
            let p = img.get_pixel(sx, sy).0;
            put(out, n * n, y as usize * n + x as usize, p);
        }
    }
    Ok(())
}

/// The side of the evaluation view of a `width` x `height` (already resized) image.
pub fn eval_side(width: u32, height: u32) -> u32 {
    width.min(height)
}

/// Writes the normalised CHW evaluation view (whole square image, or its centred square) into `out`.
pub fn write_eval_view(img: &RgbImage, out: &mut [f32]) -> Result<()> {
    let (w, h) = img.dimensions();
    let side = eval_side(w, h);
    let (left, top) = ((w - side) / 2, (h - side) / 2);
    let n = side as usize;
    check_len(out, n, n)?;
    for y in 0..side {
        for x in 0..side {
            let p = img.get_pixel(left + x, top + y).0;
            put(out, n * n, y as usize * n + x as usize, p);
        }
    }
    Ok(())
}

fn check_len(out: &[f32], h: usize, w: usize) -> Result<()> {
    if out.len() != 3 * h * w {
        return Err(TrainError::InvalidInput(format!(
            "view buffer holds {} floats, need {}",
            out.len(),
            3 * h * w
        )));
    }
    Ok(())
}

#[inline]
fn put(out: &mut [f32], plane: usize, idx: usize, p: [u8; 3]) {
    for c in 0..3 {
        out[c * plane + idx] = (p[c] as f32 / 255.0 - MEAN[c]) / STD[c];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4x4 image whose red channel encodes the position: 10 * y + x.
    fn coded(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| image::Rgb([(10 * y + x) as u8, 0, 0]))
    }

    fn red_codes(out: &[f32], n: usize) -> Vec<u8> {
        out[..n * n].iter().map(|v| ((v * STD[0] + MEAN[0]) * 255.0).round() as u8).collect()
    }

    #[test]
    fn rotation_and_flips_move_pixels_like_numpy() {
        let img = coded(3, 3);
        let mut out = vec![0.0; 27];
        let id = Augmentation { top: 0, left: 0, quarter_turns: 0, flip: Flip::None };
        write_train_view(&img, &id, 3, &mut out).unwrap();
        assert_eq!(red_codes(&out, 3), vec![0, 1, 2, 10, 11, 12, 20, 21, 22]);
        // np.rot90(a) of [[0,1,2],[10,11,12],[20,21,22]] = [[2,12,22],[1,11,21],[0,10,20]]
        let rot = Augmentation { quarter_turns: 1, ..id };
        write_train_view(&img, &rot, 3, &mut out).unwrap();
        assert_eq!(red_codes(&out, 3), vec![2, 12, 22, 1, 11, 21, 0, 10, 20]);
        let hflip = Augmentation { flip: Flip::Horizontal, ..id };
        write_train_view(&img, &hflip, 3, &mut out).unwrap();
        assert_eq!(red_codes(&out, 3), vec![2, 1, 0, 12, 11, 10, 22, 21, 20]);
        let both = Augmentation { flip: Flip::Both, quarter_turns: 2, ..id };
        write_train_view(&img, &both, 3, &mut out).unwrap();
        assert_eq!(red_codes(&out, 3), vec![0, 1, 2, 10, 11, 12, 20, 21, 22]);
    }

    #[test]
    fn crop_offsets_and_eval_view() {
        let img = coded(5, 4);
        let mut out = vec![0.0; 12];
        let aug = Augmentation { top: 2, left: 3, quarter_turns: 0, flip: Flip::None };
        write_train_view(&img, &aug, 2, &mut out).unwrap();
        assert_eq!(red_codes(&out, 2), vec![23, 24, 33, 34]);
        let mut eval = vec![0.0; 48];
        write_eval_view(&img, &mut eval).unwrap();
        assert_eq!(red_codes(&eval, 4)[..4], [0, 1, 2, 3]); // centred: left = 0 for 5 -> 4 (integer half)
        assert!(write_train_view(&img, &aug, 6, &mut vec![0.0; 108]).is_err());
    }

    #[test]
    fn resize_keeps_aspect_and_rng_is_per_tuple() {
        let r = resize_shorter(coded(150, 300), 64);
        assert_eq!(r.dimensions(), (64, 128));
        assert_eq!(resize_shorter(coded(20, 10), 10).dimensions(), (20, 10));
        let a: u64 = sample_rng(1, 2, 3, 4).gen();
        assert_eq!(a, sample_rng(1, 2, 3, 4).gen::<u64>());
        assert_ne!(a, sample_rng(1, 2, 3, 5).gen::<u64>());
        assert_ne!(a, sample_rng(2, 2, 3, 4).gen::<u64>());
    }

    #[test]
    fn draws_cover_every_rotation_and_flip() {
        let mut rng = sample_rng(0, 0, 0, 0);
        let draws: Vec<Augmentation> = (0..400).map(|_| Augmentation::draw(&mut rng, 10, 12, 8)).collect();
        assert!(draws.iter().all(|d| d.left <= 2 && d.top <= 4));
        for k in 0..4 {
            assert!(draws.iter().any(|d| d.quarter_turns == k));
        }
        for f in [Flip::None, Flip::Horizontal, Flip::Vertical, Flip::Both] {
            assert!(draws.iter().any(|d| d.flip == f));
        }
        let unflipped = draws.iter().filter(|d| d.flip == Flip::None).count();
        assert!((150..250).contains(&unflipped), "{unflipped}");
    }

    #[test]
    fn bad_bytes_name_the_patch() {
        let e = decode_rgb(b"not an image", 42).unwrap_err().to_string();
        assert!(e.contains("patch 42"), "{e}");
        let e = decode_rgb(&[], 7).unwrap_err().to_string();
        assert!(e.contains("patch 7") && e.contains("empty"), "{e}");
    }
}
