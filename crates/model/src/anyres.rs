//! LLaVA-NeXT's "anyres" geometry, exactly as transformers computes it: the best grid resolution among the
//! pinpoints, the tile grid, the number of tiles, and the unpadded feature-map size. All sizes are
//! (height, width) — transformers' order, which candle's port mixes up.

/// transformers' `select_best_resolution`: the pinpoint that keeps the most of the image at the least waste.
pub fn select_best_resolution(image_hw: (usize, usize), pinpoints: &[[usize; 2]]) -> Option<(usize, usize)> {
    let (oh, ow) = (image_hw.0 as f64, image_hw.1 as f64);
    let mut best = None;
    let (mut max_eff, mut min_waste) = (0i64, i64::MAX);
    for &[h, w] in pinpoints {
        let scale = (w as f64 / ow).min(h as f64 / oh);
        let (dw, dh) = ((ow * scale) as i64, (oh * scale) as i64);
        let eff = (dw * dh).min((ow * oh) as i64);
        let waste = (w * h) as i64 - eff;
        if eff > max_eff || (eff == max_eff && waste < min_waste) {
            max_eff = eff;
            min_waste = waste;
            best = Some((h, w));
        }
    }
    best
}

/// Tiles per side (rows, columns) for an image: best resolution / tile size.
pub fn grid_shape(image_hw: (usize, usize), pinpoints: &[[usize; 2]], tile: usize) -> Option<(usize, usize)> {
    select_best_resolution(image_hw, pinpoints).map(|(h, w)| (h / tile, w / tile))
}

/// Tiles the processor makes for an image, the base (whole-image) tile included.
pub fn num_tiles(image_hw: (usize, usize), pinpoints: &[[usize; 2]], tile: usize) -> Option<usize> {
    let (h, w) = select_best_resolution(image_hw, pinpoints)?;
    Some(h.div_ceil(tile) * w.div_ceil(tile) + 1)
}

/// Python's `round(x, 7)` then `int()`: rounding half to even at the seventh decimal, then truncation.
fn round7_trunc(x: f64) -> usize {
    ((x * 1e7).round_ties_even() / 1e7) as usize
}

/// transformers' `unpad_image` on a feature map of (height, width) `current`: the rows (or columns) to keep,
/// as (start, end) along the padded axis, and which axis (true = height is cropped).
pub fn unpad_range(current_hw: (usize, usize), original_hw: (usize, usize)) -> (bool, usize, usize) {
    let (ch, cw) = current_hw;
    let (oh, ow) = original_hw;
    let original_aspect = ow as f64 / oh as f64;
    let current_aspect = cw as f64 / ch as f64;
    if original_aspect > current_aspect {
        let scale = cw as f64 / ow as f64;
        let new_h = round7_trunc(oh as f64 * scale);
        let pad = (ch - new_h.min(ch)) / 2;
        (true, pad, ch - pad)
    } else {
        let scale = ch as f64 / oh as f64;
        let new_w = round7_trunc(ow as f64 * scale);
        let pad = (cw - new_w.min(cw)) / 2;
        (false, pad, cw - pad)
    }
}

/// Image tokens of one LLaVA-NeXT image: base tile features + unpadded grid features + one newline per row.
pub fn num_image_tokens(
    image_hw: (usize, usize),
    pinpoints: &[[usize; 2]],
    tile: usize,
    patch: usize,
    with_cls: bool,
) -> Option<usize> {
    let g = tile / patch;
    let per_tile = g * g + with_cls as usize;
    let (gh, gw) = grid_shape(image_hw, pinpoints, tile)?;
    let (axis_h, start, end) = unpad_range((gh * g, gw * g), image_hw);
    let (rows, cols) = if axis_h {
        (end - start, gw * g)
    } else {
        (gh * g, end - start)
    };
    Some(per_tile + rows * cols + rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PINPOINTS_336: [[usize; 2]; 5] = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]];

    #[test]
    fn full_size_llava_next_token_counts() {
        // A square image uses the 672×672 grid: 576 base + 48·48 unpadded + 48 newlines.
        assert_eq!(
            select_best_resolution((1000, 1000), &PINPOINTS_336),
            Some((672, 672))
        );
        assert_eq!(
            num_image_tokens((1000, 1000), &PINPOINTS_336, 336, 14, false),
            Some(576 + 48 * 48 + 48)
        );
        // Wide image (h 250, w 900): 336×1008 grid (1 row, 3 columns of tiles) → 24×72 features; wider than
        // the grid, so rows are cropped: 250·(72/900) = 20 rows kept.
        assert_eq!(grid_shape((250, 900), &PINPOINTS_336, 336), Some((1, 3)));
        assert_eq!(unpad_range((24, 72), (250, 900)), (true, 2, 22));
        // Exactly the grid's aspect: nothing cropped.
        assert_eq!(unpad_range((24, 72), (300, 900)), (false, 0, 72));
        // Tall image (h 900, w 300): transposed, width is unpadded — (h, w) order matters.
        assert_eq!(grid_shape((900, 300), &PINPOINTS_336, 336), Some((3, 1)));
        assert_eq!(num_tiles((900, 300), &PINPOINTS_336, 336), Some(4));
    }

    #[test]
    fn tiny_fixture_geometry() {
        // The fixture's 60×100 image with pinpoints scaled to 56-px tiles: transformers made 5 tiles and 52
        // image tokens (tests/fixtures/reference/llava-next.safetensors).
        let pp = [[56, 112], [112, 56], [112, 112], [168, 56], [56, 168]];
        assert_eq!(num_tiles((60, 100), &pp, 56), Some(5));
        assert_eq!(num_image_tokens((60, 100), &pp, 56, 14, false), Some(52));
    }
}
