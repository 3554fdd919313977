//! Image preprocessing identical to transformers' PIL-based processors: `CLIPImageProcessor` (resize the
//! shortest edge with Pillow's bicubic, centre crop, rescale, normalise), `LlavaImageProcessor` with
//! LLaVA-1.5's pad-to-square in the mean colour, and `LlavaNextImageProcessor` (anyres: best pinpoint,
//! aspect-preserving resize, centred black padding, tiles, plus the whole image stretched to one tile).
//!
//! Decoding uses the `image` crate with limits (a 20000×20000 picture is refused before any pixel buffer is
//! allocated); resizing is Pillow's own algorithm (`crate::resample`).

use std::path::Path;

use image::{ImageReader, Limits, RgbImage};
use serde::Deserialize;

use crate::anyres;
use crate::error::{ModelError, Result};

/// Largest accepted width or height; larger images are refused with an error (bounded memory).
pub const MAX_SIDE: u32 = 16384;

/// The fields of `preprocessor_config.json` that matter here, with CLIP's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProcessorConfig {
    #[serde(default = "defaults::size")]
    pub size: SizeSpec,
    #[serde(default = "defaults::crop")]
    pub crop_size: CropSpec,
    #[serde(default = "defaults::mean")]
    pub image_mean: [f32; 3],
    #[serde(default = "defaults::std")]
    pub image_std: [f32; 3],
    #[serde(default = "defaults::rescale")]
    pub rescale_factor: f64,
    /// LlavaImageProcessor's pad-to-square (LLaVA-1.5 as trained; llava-hf's CLIPImageProcessor omits it).
    #[serde(default)]
    pub do_pad: bool,
    #[serde(default)]
    pub image_grid_pinpoints: Option<Vec<[usize; 2]>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct SizeSpec {
    pub shortest_edge: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct CropSpec {
    pub height: usize,
    pub width: usize,
}

mod defaults {
    pub fn size() -> super::SizeSpec {
        super::SizeSpec { shortest_edge: 336 }
    }
    pub fn crop() -> super::CropSpec {
        super::CropSpec {
            height: 336,
            width: 336,
        }
    }
    #[allow(clippy::excessive_precision)] // as published
    pub fn mean() -> [f32; 3] {
        [0.481_454_66, 0.457_827_5, 0.408_210_73]
    }
    #[allow(clippy::excessive_precision)] // OpenAI CLIP's constants exactly as published (rounded to f32 in use)
    pub fn std() -> [f32; 3] {
        [0.268_629_54, 0.261_302_58, 0.275_777_11]
    }
    pub fn rescale() -> f64 {
        1.0 / 255.0
    }
}

impl ProcessorConfig {
    /// CLIP ViT at `size` px with OpenAI's mean/std (pinpoints for NeXT optional).
    pub fn clip(size: usize) -> Self {
        Self {
            size: SizeSpec { shortest_edge: size },
            crop_size: CropSpec {
                height: size,
                width: size,
            },
            image_mean: defaults::mean(),
            image_std: defaults::std(),
            rescale_factor: defaults::rescale(),
            do_pad: false,
            image_grid_pinpoints: None,
        }
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ModelError::Image(format!("{}: {e}", path.display())))?;
        serde_json::from_str(&text).map_err(|e| ModelError::Image(format!("{}: {e}", path.display())))
    }
}

/// Decodes PNG/JPEG/WebP to 8-bit RGB (grey replicated, alpha dropped — PIL's `convert("RGB")`).
pub fn load_image(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::Image(format!("{}: {e}", path.display())))?;
    decode_image(&bytes).map_err(|e| ModelError::Image(format!("{}: {e}", path.display())))
}

/// [`load_image`] on bytes in memory.
pub fn decode_image(bytes: &[u8]) -> std::result::Result<RgbImage, String> {
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(1 << 30);
    reader.limits(limits);
    match reader.format() {
        None => return Err("not a PNG, JPEG or WebP image".into()),
        // JPEG decoders fill a cut-off scan with grey instead of failing; PIL refuses ("image file is
        // truncated"), so do we: entropy-coded data cannot contain the end-of-image marker FF D9.
        Some(image::ImageFormat::Jpeg) => {
            let tail = &bytes[bytes.len().saturating_sub(4096)..];
            if !tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
                return Err("truncated JPEG (no end-of-image marker)".into());
            }
        }
        Some(_) => {}
    }
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(l) => format!("image too large (limit {MAX_SIDE} px per side, 1 GiB): {l}"),
        other => format!("cannot decode: {other}"),
    })?;
    if img.width() == 0 || img.height() == 0 {
        return Err(format!(
            "image has a zero dimension ({}×{})",
            img.width(),
            img.height()
        ));
    }
    Ok(img.to_rgb8())
}

/// Pillow's bicubic resize of an RGB image to (height, width).
pub fn resize(img: &RgbImage, height: usize, width: usize) -> Result<RgbImage> {
    if img.height() as usize == height && img.width() as usize == width {
        // PIL returns a copy for a same-size resize; no filtering happens.
        return Ok(img.clone());
    }
    if height == 0 || width == 0 {
        return Err(ModelError::Image(format!("cannot resize to {height}×{width}")));
    }
    let out = crate::resample::resize_rgb(
        img.as_raw(),
        img.width() as usize,
        img.height() as usize,
        width,
        height,
    );
    RgbImage::from_raw(width as u32, height as u32, out)
        .ok_or_else(|| ModelError::Image("resize buffer".into()))
}

/// transformers' `get_resize_output_image_size(default_to_square=False)`: shortest edge to `s`, the other
/// scaled and truncated.
fn shortest_edge_size(h: usize, w: usize, s: usize) -> (usize, usize) {
    if w <= h {
        (((s as f64) * h as f64 / w as f64) as usize, s)
    } else {
        (s, ((s as f64) * w as f64 / h as f64) as usize)
    }
}

fn center_crop(img: &RgbImage, ch: usize, cw: usize) -> RgbImage {
    let (h, w) = (img.height() as usize, img.width() as usize);
    let (top, left) = (h.saturating_sub(ch) / 2, w.saturating_sub(cw) / 2);
    image::imageops::crop_imm(img, left as u32, top as u32, cw.min(w) as u32, ch.min(h) as u32).to_image()
}

/// Rescale and normalise into channel-first f32, as transformers (`x·factor` in f64 → f32, then
/// `(x − mean) / std` in f32).
fn normalize(img: &RgbImage, cfg: &ProcessorConfig, out: &mut Vec<f32>) {
    let (h, w) = (img.height() as usize, img.width() as usize);
    let raw = img.as_raw();
    for c in 0..3 {
        for i in 0..h * w {
            let x = (raw[i * 3 + c] as f64 * cfg.rescale_factor) as f32;
            out.push((x - cfg.image_mean[c]) / cfg.image_std[c]);
        }
    }
}

/// CLIP's pipeline on one image → [3, crop_h, crop_w] values (channel-first).
pub fn clip_pixels(img: &RgbImage, cfg: &ProcessorConfig) -> Result<Vec<f32>> {
    let (h, w) = (img.height() as usize, img.width() as usize);
    let (nh, nw) = shortest_edge_size(h, w, cfg.size.shortest_edge);
    let resized = resize(img, nh, nw)?;
    let cropped = center_crop(&resized, cfg.crop_size.height, cfg.crop_size.width);
    let mut out = Vec::with_capacity(3 * cfg.crop_size.height * cfg.crop_size.width);
    normalize(&cropped, cfg, &mut out);
    Ok(out)
}

/// LLaVA-1.5: pad to a square of the longer side in the mean colour (`int(mean·255)`), centred, then CLIP's
/// pipeline.
pub fn llava15_pixels(img: &RgbImage, cfg: &ProcessorConfig) -> Result<Vec<f32>> {
    let (h, w) = (img.height(), img.width());
    if h == w {
        return clip_pixels(img, cfg);
    }
    let side = h.max(w);
    let bg = image::Rgb(cfg.image_mean.map(|m| (m * 255.0) as u8));
    let mut square = RgbImage::from_pixel(side, side, bg);
    let (x, y) = if w > h {
        (0, (side - h) / 2)
    } else {
        ((side - w) / 2, 0)
    };
    image::imageops::replace(&mut square, img, x as i64, y as i64);
    clip_pixels(&square, cfg)
}

/// LLaVA-NeXT: returns ([tiles, 3, S, S] values with the whole image first, tile count, (height, width)).
pub fn llava_next_pixels(img: &RgbImage, cfg: &ProcessorConfig) -> Result<(Vec<f32>, usize, (usize, usize))> {
    let pinpoints = cfg
        .image_grid_pinpoints
        .as_deref()
        .ok_or_else(|| ModelError::Image("LLaVA-NeXT preprocessing needs image_grid_pinpoints".into()))?;
    let (h, w) = (img.height() as usize, img.width() as usize);
    let (th, tw) = anyres::select_best_resolution((h, w), pinpoints)
        .ok_or_else(|| ModelError::Image("no pinpoints".into()))?;
    // get_patch_output_size: fit inside the target, ceil on the scaled side.
    let (sw, sh) = (tw as f64 / w as f64, th as f64 / h as f64);
    let (nh, nw) = if sw < sh {
        (((h as f64 * sw).ceil() as usize).min(th), tw)
    } else {
        (th, ((w as f64 * sh).ceil() as usize).min(tw))
    };
    let resized = resize(img, nh, nw)?;
    let mut padded = RgbImage::new(tw as u32, th as u32);
    image::imageops::replace(
        &mut padded,
        &resized,
        ((tw - nw) / 2) as i64,
        ((th - nh) / 2) as i64,
    );
    let tile = cfg.crop_size.height;
    let s = cfg.size.shortest_edge;
    let base = resize(img, s, s)?;
    let mut out = Vec::new();
    let mut tiles = 1;
    // Every tile goes through CLIP's pipeline (a no-op resize and crop at tile size, then normalisation).
    out.extend(clip_pixels(&base, cfg)?);
    for y in (0..th).step_by(tile) {
        for x in (0..tw).step_by(tile) {
            let t =
                image::imageops::crop_imm(&padded, x as u32, y as u32, tile as u32, tile as u32).to_image();
            out.extend(clip_pixels(&t, cfg)?);
            tiles += 1;
        }
    }
    Ok((out, tiles, (h, w)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_edge_truncates_like_python() {
        assert_eq!(shortest_edge_size(427, 640, 336), (336, 503));
        assert_eq!(shortest_edge_size(1000, 50, 336), (6720, 336));
        assert_eq!(shortest_edge_size(1, 1, 336), (336, 336));
    }

    #[test]
    fn bad_bytes_are_clear_errors() {
        assert!(decode_image(&[]).unwrap_err().contains("empty"));
        assert!(decode_image(b"hello, world").unwrap_err().contains("not a PNG"));
        let mut png = Vec::new();
        image::RgbImage::new(4, 4)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        assert!(
            decode_image(&png[..png.len() / 2])
                .unwrap_err()
                .contains("cannot decode")
        );
    }
}
