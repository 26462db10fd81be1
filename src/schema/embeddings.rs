//! The `embed` stage's artefact: every product's ITC embeddings under one model.
//!
//! - `items.parquet`: one row per product, in matrix row order: `row`, `product_id`, `image_id`,
//!   `title`, `category`, `subcategory`, `split`;
//! - `image.npy`, `text.npy`: `[N, D]` row-major little-endian `<f4` (or `<f2`) NumPy arrays, row
//!   i of both the product of `items.parquet` row i, L2-normalised (`numpy.load` reads them);
//! - `meta.json`: the model entry (`train` key), `dim`, `dtype`, `scale` (the model's inverse
//!   temperature: scaled cosine = its ITC score) and the count.

use std::io::{Read, Write};
use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::table::{self, col_i64, col_str};

pub const ITEMS: &str = "items.parquet";
pub const IMAGE: &str = "image.npy";
pub const TEXT: &str = "text.npy";
pub const META: &str = "meta.json";

/// One embedded product.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub product_id: String,
    pub image_id: String,
    pub title: String,
    pub category: String,
    pub subcategory: String,
    pub split: String,
}

/// Storage type of the matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
}

impl Dtype {
    fn descr(self) -> &'static str {
        match self {
            Dtype::F32 => "<f4",
            Dtype::F16 => "<f2",
        }
    }
    fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 => 2,
        }
    }
}

/// The embeddings of a catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// The `train` entry the embeddings came from (`train/<key>`).
    pub model: String,
    pub items: Vec<Item>,
    pub dim: usize,
    /// The model's inverse temperature.
    pub scale: f32,
    /// `[N, D]` row-major, f32 in memory whatever the storage type.
    pub image: Vec<f32>,
    pub text: Vec<f32>,
}

impl Embeddings {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The row of a product id, if the embeddings hold it.
    pub fn row_of(&self, product_id: &str) -> Option<usize> {
        self.items.iter().position(|i| i.product_id == product_id)
    }

    pub fn image_row(&self, i: usize) -> &[f32] {
        &self.image[i * self.dim..(i + 1) * self.dim]
    }

    pub fn text_row(&self, i: usize) -> &[f32] {
        &self.text[i * self.dim..(i + 1) * self.dim]
    }

    /// Writes the four files into `dir`.
    pub fn write(&self, dir: &Path, dtype: Dtype) -> Result<()> {
        let n = self.items.len();
        let col = |f: fn(&Item) -> &str| self.items.iter().map(f).collect::<Vec<_>>();
        let mut df = table::frame(vec![
            col_i64("row", &(0..n as i64).collect::<Vec<_>>()),
            col_str("product_id", &col(|i| &i.product_id)),
            col_str("image_id", &col(|i| &i.image_id)),
            col_str("title", &col(|i| &i.title)),
            col_str("category", &col(|i| &i.category)),
            col_str("subcategory", &col(|i| &i.subcategory)),
            col_str("split", &col(|i| &i.split)),
        ])?;
        table::write_parquet(&mut df, &dir.join(ITEMS))?;
        write_npy(&dir.join(IMAGE), &self.image, n, self.dim, dtype)?;
        write_npy(&dir.join(TEXT), &self.text, n, self.dim, dtype)?;
        let meta = serde_json::json!({
            "model": self.model,
            "count": n,
            "dim": self.dim,
            "dtype": dtype.descr(),
            "scale": self.scale,
            "normalised": true,
        });
        let p = dir.join(META);
        std::fs::write(&p, serde_json::to_string_pretty(&meta).unwrap()).at(&p)?;
        Ok(())
    }

    /// Reads what [`Embeddings::write`] wrote.
    pub fn read(dir: &Path) -> Result<Embeddings> {
        let p = dir.join(META);
        let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).at(&p)?)
            .map_err(|e| Error::input(&p, format!("not JSON: {e}")))?;
        let scale = meta["scale"]
            .as_f64()
            .ok_or_else(|| Error::input(&p, "no `scale`"))? as f32;
        let model = meta["model"]
            .as_str()
            .ok_or_else(|| Error::input(&p, "no `model`"))?
            .to_string();
        let ip = dir.join(ITEMS);
        let df = table::read_parquet(&ip)?;
        let s = |c: &str| table::strings(&df, c).map_err(|e| Error::input(&ip, e.to_string()));
        let (pid, iid, title, cat, sub, split) = (
            s("product_id")?,
            s("image_id")?,
            s("title")?,
            s("category")?,
            s("subcategory")?,
            s("split")?,
        );
        let items: Vec<Item> = (0..pid.len())
            .map(|i| Item {
                product_id: pid[i].clone(),
                image_id: iid[i].clone(),
                title: title[i].clone(),
                category: cat[i].clone(),
                subcategory: sub[i].clone(),
                split: split[i].clone(),
            })
            .collect();
        let (image, n, d) = read_npy(&dir.join(IMAGE))?;
        let (text, n2, d2) = read_npy(&dir.join(TEXT))?;
        if n != items.len() || n2 != n || d2 != d {
            return Err(Error::input(
                dir,
                format!(
                    "the embeddings do not agree: {} items, image {n}×{d}, text {n2}×{d2}",
                    items.len()
                ),
            ));
        }
        Ok(Embeddings {
            model,
            items,
            dim: d,
            scale,
            image,
            text,
        })
    }
}

/// Writes a 2-D array as a NumPy `.npy` file (format 1.0).
pub fn write_npy(path: &Path, v: &[f32], rows: usize, cols: usize, dtype: Dtype) -> Result<()> {
    assert_eq!(v.len(), rows * cols, "npy data does not match its shape");
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': ({rows}, {cols}), }}",
        dtype.descr()
    );
    // Magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64,
    // ending in a newline.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + v.len() * dtype.size());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    match dtype {
        Dtype::F32 => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
        Dtype::F16 => v
            .iter()
            .for_each(|x| out.extend(half::f16::from_f32(*x).to_le_bytes())),
    }
    let mut f = std::fs::File::create(path).at(path)?;
    f.write_all(&out).at(path)?;
    Ok(())
}

/// Reads a 2-D `<f4` or `<f2` C-order `.npy` file as f32: `(data, rows, cols)`.
pub fn read_npy(path: &Path) -> Result<(Vec<f32>, usize, usize)> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .at(path)?;
    let bad = |why: &str| Error::input(path, format!("not a 2-D float .npy file: {why}"));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" || bytes[6] != 1 {
        return Err(bad("no NumPy 1.0 header"));
    }
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(bytes.get(10..10 + hlen).ok_or_else(|| bad("short"))?)
        .map_err(|_| bad("header not UTF-8"))?;
    let dtype = if header.contains("'<f4'") {
        Dtype::F32
    } else if header.contains("'<f2'") {
        Dtype::F16
    } else {
        return Err(bad("dtype is not <f4 or <f2"));
    };
    if !header.contains("'fortran_order': False") {
        return Err(bad("Fortran order"));
    }
    let shape = header
        .split("'shape': (")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .ok_or_else(|| bad("no shape"))?;
    let dims: Vec<usize> = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad("shape")))
        .collect::<Result<_>>()?;
    let [rows, cols] = dims[..] else {
        return Err(bad("not 2-D"));
    };
    let data = &bytes[10 + hlen..];
    let want = rows
        .checked_mul(cols)
        .and_then(|x| x.checked_mul(dtype.size()))
        .ok_or_else(|| bad("shape too large"))?;
    if data.len() != want {
        return Err(bad(&format!("{} data bytes for {rows}×{cols}", data.len())));
    }
    let v = match dtype {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes(c.try_into().unwrap()).to_f32())
            .collect(),
    };
    Ok((v, rows, cols))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Embeddings {
        let item = |p: &str, sub: &str| Item {
            product_id: p.into(),
            image_id: format!("{p}_0"),
            title: format!("title {p}"),
            category: "C".into(),
            subcategory: sub.into(),
            split: "valid".into(),
        };
        Embeddings {
            model: "train/abc".into(),
            items: vec![item("a", "s1"), item("b", "s2"), item("c", "s1")],
            dim: 2,
            scale: 20.0,
            image: vec![1.0, 0.0, 0.0, 1.0, 0.6, 0.8],
            text: vec![0.8, 0.6, 0.0, 1.0, 1.0, 0.0],
        }
    }

    #[test]
    fn round_trips_in_f32_and_f16() {
        let dir = tempfile::tempdir().unwrap();
        let e = sample();
        e.write(dir.path(), Dtype::F32).unwrap();
        assert_eq!(Embeddings::read(dir.path()).unwrap(), e);
        e.write(dir.path(), Dtype::F16).unwrap();
        let back = Embeddings::read(dir.path()).unwrap();
        for (a, b) in back.image.iter().zip(&e.image) {
            assert!((a - b).abs() < 1e-3);
        }
        // The header is 64-byte aligned, as NumPy writes it.
        let bytes = std::fs::read(dir.path().join(IMAGE)).unwrap();
        let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
    }

    #[test]
    fn a_damaged_npy_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        write_npy(&p, &[1.0, 2.0], 1, 2, Dtype::F32).unwrap();
        let mut b = std::fs::read(&p).unwrap();
        b.pop();
        std::fs::write(&p, &b).unwrap();
        assert!(read_npy(&p).is_err());
        std::fs::write(&p, b"not numpy").unwrap();
        assert!(read_npy(&p).is_err());
    }
}
