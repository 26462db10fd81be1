//! A CSV of products with an image folder (`product_id, image, title, description, category,
//! subcategory, split`; every column name configurable), e.g. `fashion-real/products.csv`.
//! Optionally a second CSV joined on the id column gives same-title groups.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::images::{ImageError, ImageRoot};

/// Which CSV column holds which field.
#[derive(Debug, Clone)]
pub struct Columns {
    pub id: String,
    pub image: String,
    pub title: String,
    pub description: String,
    pub category: String,
    pub subcategory: String,
    /// Empty: no split column (splits are drawn from `valid_fraction`).
    pub split: String,
}

/// One data row of the CSV, before validation.
#[derive(Debug, Clone, Default)]
pub struct CsvRow {
    /// 1-based line number in the file (the header is line 1).
    pub line: usize,
    pub product_id: String,
    pub image: String,
    pub title: String,
    pub description: String,
    pub category: String,
    pub subcategory: String,
    pub split: String,
}

/// A row that could not be parsed at all.
#[derive(Debug, Clone)]
pub struct BadRow {
    pub line: usize,
    pub reason: String,
}

/// Reads the CSV. A missing required column fails before any row is read, naming the file and
/// column; a malformed row is returned in the second list with its line and reason.
pub fn read(path: &Path, cols: &Columns) -> Result<(Vec<CsvRow>, Vec<BadRow>)> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(false)
        .from_path(path)
        .map_err(|e| Error::input(path, format!("cannot open the products CSV: {e}")))?;
    let headers = rdr
        .headers()
        .map_err(|e| Error::input(path, format!("cannot read the CSV header: {e}")))?
        .clone();
    let find = |name: &str, what: &str| -> Result<usize> {
        headers.iter().position(|h| h.trim() == name).ok_or_else(|| Error::Input {
            path: path.to_path_buf(),
            row: Some(1),
            field: Some(name.to_string()),
            message: format!(
                "the header has no column `{name}` (needed for the {what}; the header has: {}); set the column name in the ingest params",
                headers.iter().collect::<Vec<_>>().join(", ")
            ),
        })
    };
    let i_id = find(&cols.id, "product id")?;
    let i_image = find(&cols.image, "image path")?;
    let i_title = find(&cols.title, "title")?;
    let i_desc = find(&cols.description, "description")?;
    let i_cat = find(&cols.category, "category")?;
    let i_sub = find(&cols.subcategory, "subcategory")?;
    let i_split = if cols.split.is_empty() {
        None
    } else {
        Some(find(&cols.split, "split")?)
    };

    let mut rows = Vec::new();
    let mut bad = Vec::new();
    for (k, rec) in rdr.records().enumerate() {
        match rec {
            Ok(r) => {
                let line = r.position().map(|p| p.line() as usize).unwrap_or(k + 2);
                let get = |i: usize| r.get(i).unwrap_or("").trim().to_string();
                rows.push(CsvRow {
                    line,
                    product_id: get(i_id),
                    image: get(i_image),
                    title: get(i_title),
                    description: get(i_desc),
                    category: get(i_cat),
                    subcategory: get(i_sub),
                    split: i_split.map(get).unwrap_or_default(),
                });
            }
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(k + 2);
                let reason = match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => {
                        format!("malformed row: {len} fields, expected {expected_len}")
                    }
                    csv::ErrorKind::Utf8 { .. } => "malformed row: not valid UTF-8".to_string(),
                    other => format!("malformed row: {other:?}"),
                };
                bad.push(BadRow { line, reason });
            }
        }
    }
    Ok((rows, bad))
}

/// Reads `id → group` from a second CSV (for example `same_title_group` in fashion-real's
/// `products_extra.csv`). Empty group cells are skipped.
pub fn read_groups(path: &Path, id_col: &str, group_col: &str) -> Result<HashMap<String, String>> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(|e| Error::input(path, format!("cannot open: {e}")))?;
    let headers = rdr
        .headers()
        .map_err(|e| Error::input(path, format!("cannot read the header: {e}")))?
        .clone();
    let pos = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| Error::Input {
                path: path.to_path_buf(),
                row: Some(1),
                field: Some(name.to_string()),
                message: "no such column in the header".into(),
            })
    };
    let (i_id, i_g) = (pos(id_col)?, pos(group_col)?);
    let mut out = HashMap::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| Error::input(path, format!("malformed row: {e}")))?;
        let g = rec.get(i_g).unwrap_or("").trim();
        if !g.is_empty() {
            out.insert(
                rec.get(i_id).unwrap_or("").trim().to_string(),
                g.to_string(),
            );
        }
    }
    Ok(out)
}

/// The image path of a row, relative to the config directory: `root_rel` (the image folder,
/// relative to the config directory) joined with the cell resolved inside the folder by
/// [`ImageRoot::resolve`]. A cell that leads outside the folder (`..`, an absolute path
/// elsewhere, a symbolic link pointing out), or that names a missing file, a directory, a FIFO,
/// a device or a file over the size limit, is an error; nothing outside the folder is opened.
/// `..` and links inside the folder are resolved, so the stored path names the file itself.
pub fn image_path(root: &ImageRoot, root_rel: &Path, cell: &str) -> Result<PathBuf, ImageError> {
    Ok(root_rel.join(root.resolve(cell)?))
}
