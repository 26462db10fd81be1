//! `fashionbert show`: one record drawn as the model sees it — the image with its patch grid
//! and masked patches blacked out, the text with masked tokens marked, and the label.

use std::path::Path;

use crate::dag::Latest;
use crate::error::{Error, IoContext, Result};
use crate::images::{ImageLoader, ImageRef};
use crate::schema::{Grid, Pair, read_pairs, read_products};
use crate::table;

/// Draws a record: its image with the patch grid and masked patches blacked out, its text with
/// masked tokens marked, and its label.
pub fn draw(l: &Latest, record: &str, out: &Path) -> Result<()> {
    let mut pairs = read_pairs(&l.dir("pairs")?.join("pairs.parquet"))?;
    pairs.extend(read_pairs(&l.dir("negatives")?.join("negatives.parquet"))?);
    let pair = pairs.iter().find(|p| p.pair_id == record).ok_or_else(|| {
        Error::msg(format!(
            "no record `{record}`; record ids look like {} (positives p:<image id>, negatives n:<image id>)",
            pairs.iter().take(3).map(|p| p.pair_id.as_str()).collect::<Vec<_>>().join(", ")
        ))
    })?;
    let ingest = l.dir("ingest")?;
    let products = read_products(&ingest.join("products.parquet"))?;
    let product = products
        .iter()
        .find(|p| p.image_id == pair.image_id)
        .ok_or_else(|| {
            Error::msg(format!(
                "image {} is not in ingest's products",
                pair.image_id
            ))
        })?;
    let grid = Grid::read(&l.dir("patches")?)?;
    let masks = table::read_parquet(&l.dir("patches")?.join("patch_masks.parquet"))?;
    let ids = table::strings(&masks, "pair_id")?;
    let row = ids
        .iter()
        .position(|i| i == record)
        .ok_or_else(|| Error::msg("record has no patch mask"))?;
    let m = grid.masked_patches as usize;
    let masked =
        table::i32_lists(&masks, "masked_patch_positions", m)?[row * m..(row + 1) * m].to_vec();

    let tok_dir = l.dir("tokenize")?;
    let vocab_path = l.path_param("tokenize", "vocab")?;
    let vocab: Vec<String> = std::fs::read_to_string(&vocab_path)
        .at(&vocab_path)?
        .lines()
        .map(String::from)
        .collect();
    let tokens = table::read_parquet(&tok_dir.join("tokens.parquet"))?;
    let tids = table::strings(&tokens, "pair_id")?;
    let trow = tids
        .iter()
        .position(|i| i == record)
        .ok_or_else(|| Error::msg("record has no tokens"))?;
    let t = table::list_width(&tokens, "input_ids")?;
    let k = table::list_width(&tokens, "masked_lm_positions")?;
    let input = &table::i32_lists(&tokens, "input_ids", t)?[trow * t..(trow + 1) * t];
    let imask = &table::i32_lists(&tokens, "input_mask", t)?[trow * t..(trow + 1) * t];
    let mpos = &table::i32_lists(&tokens, "masked_lm_positions", k)?[trow * k..(trow + 1) * k];
    let mids = &table::i32_lists(&tokens, "masked_lm_ids", k)?[trow * k..(trow + 1) * k];
    let mw = &table::f32_lists(&tokens, "masked_lm_weights", k)?[trow * k..(trow + 1) * k];
    let tok = |i: i32| {
        vocab
            .get(i as usize)
            .cloned()
            .unwrap_or_else(|| format!("<{i}>"))
    };
    let mut words: Vec<(String, bool)> = Vec::new();
    for (pos, (&id, &mk)) in input.iter().zip(imask).enumerate() {
        if mk == 0 {
            break;
        }
        let slot = (0..k).find(|&j| mw[j] > 0.0 && mpos[j] as usize == pos);
        match slot {
            Some(j) if id == mids[j] => words.push((format!("{}(kept)", tok(id)), true)),
            Some(j) if tok(id) == "[MASK]" => {
                words.push((format!("[MASK:{}]", tok(mids[j])), true))
            }
            Some(j) => words.push((format!("{}→{}", tok(mids[j]), tok(id)), true)),
            None => words.push((tok(id), false)),
        }
    }
    let img =
        ImageLoader::new(&l.config.base_dir, &ingest).load(&ImageRef::parse(&product.image))?;
    let sq = crate::images::square(&img, grid.image_size, grid.fit());
    crate::eval::report::fonts();
    draw_record(out, &sq, &grid, &masked, &words, pair)
}

fn draw_record(
    out: &Path,
    img: &image::RgbImage,
    grid: &Grid,
    masked: &[i32],
    words: &[(String, bool)],
    pair: &Pair,
) -> Result<()> {
    use plotters::prelude::*;
    let scale = (512 / grid.image_size).max(1);
    let side = grid.image_size * scale;
    let (w, h) = (side + 560, side.max(520) + 20);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    let ps = grid.patch_size;
    for y in 0..side {
        for x in 0..side {
            let (sx, sy) = (x / scale, y / scale);
            let patch = (sy / ps) * grid.grid + sx / ps;
            let px = if masked.contains(&(patch as i32)) {
                [0, 0, 0]
            } else {
                img.get_pixel(sx, sy).0
            };
            let o = (((y + 10) * w + x + 10) * 3) as usize;
            buf[o..o + 3].copy_from_slice(&px);
        }
    }
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        for i in 0..=grid.grid {
            let v = (i * ps * scale + 10) as i32;
            let s = side as i32 + 10;
            root.draw(&PathElement::new(
                vec![(v, 10), (v, s)],
                RGBColor(0, 200, 255).stroke_width(1),
            ))
            .map_err(Error::render(out))?;
            root.draw(&PathElement::new(
                vec![(10, v), (s, v)],
                RGBColor(0, 200, 255).stroke_width(1),
            ))
            .map_err(Error::render(out))?;
        }
        let x0 = side as i32 + 30;
        let label = if pair.label == 1 {
            "label 1: matched"
        } else {
            "label 0: not matched"
        };
        let head = [
            format!("record {}", pair.pair_id),
            format!("{label} ({} split)", pair.split),
            format!(
                "image: product {} · {} / {}",
                pair.image_product_id, pair.category, pair.subcategory
            ),
            format!("text: product {}", pair.text_product_id),
            format!("masked patches: {masked:?} (black)"),
        ];
        for (i, line) in head.iter().enumerate() {
            root.draw(&Text::new(
                line.clone(),
                (x0, 14 + 22 * i as i32),
                ("sans-serif", 16).into_font().color(&BLACK),
            ))
            .map_err(Error::render(out))?;
        }
        // Wrap tokens; masked ones in red.
        let (mut x, mut y) = (x0, 14 + 22 * head.len() as i32 + 16);
        let max_x = w as i32 - 12;
        for (word, is_masked) in words {
            let wpx = (word.chars().count() as i32) * 8 + 8;
            if x + wpx > max_x {
                x = x0;
                y += 20;
            }
            let color = if *is_masked {
                RGBColor(210, 0, 0)
            } else {
                RGBColor(30, 30, 30)
            };
            root.draw(&Text::new(
                word.clone(),
                (x, y),
                ("sans-serif", 14).into_font().color(&color),
            ))
            .map_err(Error::render(out))?;
            x += wpx;
        }
        root.present().map_err(Error::render(out))?;
    }
    image::RgbImage::from_raw(w, h, buf)
        .expect("buffer size")
        .save(out)
        .map_err(Error::render(out))
}
