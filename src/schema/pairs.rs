//! The pair table (`pairs.parquet`, `negatives.parquet`): one image–text pair per row with its
//! label, split and (for negatives) round.

use std::path::Path;

use crate::error::Result;
use crate::table::{self, col_i32, col_str};

/// An image–text pair. Its text is the text of `text_product_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    /// `p:<image_id>` for positives, `n:<image_id>` for negatives.
    pub pair_id: String,
    pub split: String,
    pub image_id: String,
    pub image_product_id: String,
    pub text_product_id: String,
    /// 1 = matched, 0 = not matched.
    pub label: i32,
    pub category: String,
    pub subcategory: String,
    pub text: String,
    /// For negatives: "" (same subcategory), "category" or "split" (fallbacks).
    pub fallback: String,
    /// The negatives round (one per training epoch, see `negatives`); -1 for a positive.
    pub round: i32,
}

pub fn write_pairs(pairs: &[Pair], path: &Path) -> Result<()> {
    let f = |get: fn(&Pair) -> &str| pairs.iter().map(get).collect::<Vec<&str>>();
    let labels: Vec<i32> = pairs.iter().map(|p| p.label).collect();
    let rounds: Vec<i32> = pairs.iter().map(|p| p.round).collect();
    let mut df = table::frame(vec![
        col_str("pair_id", &f(|p| &p.pair_id)),
        col_str("split", &f(|p| &p.split)),
        col_str("image_id", &f(|p| &p.image_id)),
        col_str("image_product_id", &f(|p| &p.image_product_id)),
        col_str("text_product_id", &f(|p| &p.text_product_id)),
        col_i32("label", &labels),
        col_str("category", &f(|p| &p.category)),
        col_str("subcategory", &f(|p| &p.subcategory)),
        col_str("text", &f(|p| &p.text)),
        col_str("fallback", &f(|p| &p.fallback)),
        col_i32("round", &rounds),
    ])?;
    table::write_parquet(&mut df, path)?;
    Ok(())
}

pub fn read_pairs(path: &Path) -> Result<Vec<Pair>> {
    let df = table::read_parquet(path)?;
    let c = |n: &str| table::strings(&df, n);
    let (ids, splits, imgs, ipids, tpids, cats, subs, texts, fb) = (
        c("pair_id")?,
        c("split")?,
        c("image_id")?,
        c("image_product_id")?,
        c("text_product_id")?,
        c("category")?,
        c("subcategory")?,
        c("text")?,
        c("fallback")?,
    );
    let labels = table::i32s(&df, "label")?;
    let rounds = table::i32s(&df, "round")?;
    Ok((0..ids.len())
        .map(|i| Pair {
            pair_id: ids[i].clone(),
            split: splits[i].clone(),
            image_id: imgs[i].clone(),
            image_product_id: ipids[i].clone(),
            text_product_id: tpids[i].clone(),
            label: labels[i],
            category: cats[i].clone(),
            subcategory: subs[i].clone(),
            text: texts[i].clone(),
            fallback: fb[i].clone(),
            round: rounds[i],
        })
        .collect())
}
