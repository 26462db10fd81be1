//! `ingest`'s tables: `products.parquet` (one row per image), `images.parquet` (each distinct
//! image with the blake3 of its content: what `features` reads) and `rejects.parquet`.

use std::path::Path;

use crate::error::Result;
use crate::sources::{Product, Reject};
use crate::table::{self, col_i64, col_str};

/// One distinct image of the products, as `images.parquet` lists it: what `features` reads,
/// so its cache key follows the images' content and not the products' texts.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRow {
    pub image_id: String,
    /// An [`ImageRef`] string.
    pub image: String,
    /// blake3 of the image file's bytes (an HDF5 row: of its pixels).
    pub blake3: String,
}

pub fn write_images(images: &[ImageRow], path: &Path) -> Result<()> {
    let f = |get: fn(&ImageRow) -> &str| images.iter().map(get).collect::<Vec<&str>>();
    let mut df = table::frame(vec![
        col_str("image_id", &f(|r| &r.image_id)),
        col_str("image", &f(|r| &r.image)),
        col_str("blake3", &f(|r| &r.blake3)),
    ])?;
    table::write_parquet(&mut df, path)?;
    Ok(())
}

pub fn read_images(path: &Path) -> Result<Vec<ImageRow>> {
    let df = table::read_parquet(path)?;
    let c = |n: &str| table::strings(&df, n);
    let (ids, imgs, hashes) = (c("image_id")?, c("image")?, c("blake3")?);
    Ok(ids
        .into_iter()
        .zip(imgs)
        .zip(hashes)
        .map(|((image_id, image), blake3)| ImageRow {
            image_id,
            image,
            blake3,
        })
        .collect())
}

pub fn write_products(products: &[Product], path: &Path) -> Result<()> {
    let f = |get: fn(&Product) -> &str| products.iter().map(get).collect::<Vec<&str>>();
    let mut df = table::frame(vec![
        col_str("image_id", &f(|p| &p.image_id)),
        col_str("product_id", &f(|p| &p.product_id)),
        col_str("image", &f(|p| &p.image)),
        col_str("title", &f(|p| &p.title)),
        col_str("text", &f(|p| &p.text)),
        col_str("category", &f(|p| &p.category)),
        col_str("subcategory", &f(|p| &p.subcategory)),
        col_str("split", &f(|p| &p.split)),
        col_str("title_key", &f(|p| &p.title_key)),
    ])?;
    table::write_parquet(&mut df, path)?;
    Ok(())
}

pub fn read_products(path: &Path) -> Result<Vec<Product>> {
    let df = table::read_parquet(path)?;
    let c = |n: &str| table::strings(&df, n);
    let (ids, pids, imgs, titles, texts, cats, subs, splits, keys) = (
        c("image_id")?,
        c("product_id")?,
        c("image")?,
        c("title")?,
        c("text")?,
        c("category")?,
        c("subcategory")?,
        c("split")?,
        c("title_key")?,
    );
    Ok((0..ids.len())
        .map(|i| Product {
            image_id: ids[i].clone(),
            product_id: pids[i].clone(),
            image: imgs[i].clone(),
            title: titles[i].clone(),
            text: texts[i].clone(),
            category: cats[i].clone(),
            subcategory: subs[i].clone(),
            split: splits[i].clone(),
            title_key: keys[i].clone(),
        })
        .collect())
}

/// Writes the rejected rows with their reasons.
pub fn write_rejects(rejects: &[Reject], path: &Path) -> Result<()> {
    let lines: Vec<i64> = rejects.iter().map(|r| r.line).collect();
    let f = |get: fn(&Reject) -> &str| rejects.iter().map(get).collect::<Vec<&str>>();
    let mut df = table::frame(vec![
        col_i64("line", &lines),
        col_str("product_id", &f(|r| &r.product_id)),
        col_str("image", &f(|r| &r.image)),
        col_str("reason", &f(|r| &r.reason)),
    ])?;
    table::write_parquet(&mut df, path)?;
    Ok(())
}
