//! The official Fashion-Gen HDF5 release (`fashiongen_256_256_{train,validation}.h5`):
//! `input_image` (N,256,256,3 u8) and per-row fixed-length byte strings `input_productID`,
//! `input_name`, `input_description`, `input_category`, `input_subcategory`, `input_pose`
//! (shape (N,) or (N,1); `input_productID` may also be an integer). Each row is one image;
//! several poses of one product share its id. Images are read from the file on demand.

#[cfg(not(feature = "hdf5"))]
use std::path::Path;

use image::RgbImage;

use crate::error::{Error, Result};
use crate::images::decode::ImageError;

/// One row (image) of a Fashion-Gen file.
#[derive(Debug, Clone, PartialEq)]
pub struct H5Row {
    pub row: usize,
    pub product_id: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub subcategory: String,
    pub pose: String,
}

pub const IMAGES: &str = "input_image";

#[cfg(feature = "hdf5")]
mod imp {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use std::sync::{LazyLock, Mutex};

    use hdf5::types::{FixedAscii, FixedUnicode, TypeDescriptor};
    use hdf5::{Dataset, File};
    use ndarray::s;

    use super::*;

    /// Longest string kept per field; longer ones are cut (Fashion-Gen's are far shorter).
    const MAX: usize = 8192;
    const CHUNK: usize = 4096;

    fn h5err(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
        Error::input(path, format!("{what}: {e}"))
    }

    fn decode(bytes: &[u8]) -> String {
        let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        let b = &bytes[..end];
        match std::str::from_utf8(b) {
            Ok(s) => s.trim().to_string(),
            // Not UTF-8: read as Latin-1 rather than lose the row.
            Err(_) => b
                .iter()
                .map(|&c| c as char)
                .collect::<String>()
                .trim()
                .to_string(),
        }
    }

    fn rows_of(ds: &Dataset, path: &Path, name: &str) -> Result<usize> {
        let shape = ds.shape();
        match shape.as_slice() {
            [n] | [n, 1] => Ok(*n),
            other => Err(Error::input(
                path,
                format!("dataset `{name}` has shape {other:?}, expected (N,) or (N,1)"),
            )),
        }
    }

    /// Reads a string (or integer) column of N rows.
    fn read_strings(
        file: &File,
        path: &Path,
        name: &str,
        optional: bool,
    ) -> Result<Option<Vec<String>>> {
        let ds = match file.dataset(name) {
            Ok(d) => d,
            Err(_) if optional => return Ok(None),
            Err(_) => {
                return Err(Error::input(
                    path,
                    format!(
                        "dataset `{name}` is missing: not a Fashion-Gen file in the official layout"
                    ),
                ));
            }
        };
        let n = rows_of(&ds, path, name)?;
        let two_d = ds.ndim() == 2;
        let td = ds
            .dtype()
            .and_then(|t| t.to_descriptor())
            .map_err(|e| h5err(path, name, e))?;
        let mut out = Vec::with_capacity(n);
        let mut start = 0;
        while start < n {
            let end = (start + CHUNK).min(n);
            macro_rules! read_as {
                ($t:ty, $f:expr) => {{
                    let v: Vec<$t> = if two_d {
                        ds.read_slice_2d::<$t, _>(s![start..end, ..])
                            .map_err(|e| h5err(path, name, e))?
                            .into_iter()
                            .collect()
                    } else {
                        ds.read_slice_1d::<$t, _>(s![start..end])
                            .map_err(|e| h5err(path, name, e))?
                            .into_iter()
                            .collect()
                    };
                    out.extend(v.iter().map($f));
                }};
            }
            match td {
                TypeDescriptor::FixedAscii(_) => {
                    read_as!(FixedAscii<MAX>, |s: &FixedAscii<MAX>| decode(s.as_bytes()))
                }
                TypeDescriptor::FixedUnicode(_) => {
                    read_as!(FixedUnicode<MAX>, |s: &FixedUnicode<MAX>| decode(
                        s.as_bytes()
                    ))
                }
                TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) => {
                    read_as!(i64, |v: &i64| v.to_string())
                }
                TypeDescriptor::Float(_) => read_as!(f64, |v: &f64| format!("{v}")),
                ref other => {
                    return Err(Error::input(
                        path,
                        format!(
                            "dataset `{name}` has type {other:?}; expected fixed-length strings"
                        ),
                    ));
                }
            }
            start = end;
        }
        Ok(Some(out))
    }

    pub fn read_rows(path: &Path) -> Result<Vec<H5Row>> {
        let file = File::open(path).map_err(|e| h5err(path, "cannot open HDF5 file", e))?;
        let images = file.dataset(IMAGES).map_err(|_| {
            Error::input(
                path,
                "dataset `input_image` is missing: not a Fashion-Gen file",
            )
        })?;
        let shape = images.shape();
        if shape.len() != 4 || shape[3] != 3 {
            return Err(Error::input(
                path,
                format!("`input_image` has shape {shape:?}, expected (N, H, W, 3)"),
            ));
        }
        let n = shape[0];
        let col = |name: &str, optional: bool| -> Result<Vec<String>> {
            let v = read_strings(&file, path, name, optional)?
                .unwrap_or_else(|| vec![String::new(); n]);
            if v.len() != n {
                return Err(Error::input(
                    path,
                    format!(
                        "dataset `{name}` has {} rows but `input_image` has {n}",
                        v.len()
                    ),
                ));
            }
            Ok(v)
        };
        let ids = col("input_productID", false)?;
        let names = col("input_name", true)?;
        let descs = col("input_description", false)?;
        let cats = col("input_category", false)?;
        let subs = col("input_subcategory", false)?;
        let poses = col("input_pose", true)?;
        Ok((0..n)
            .map(|i| H5Row {
                row: i,
                product_id: ids[i].clone(),
                name: names[i].clone(),
                description: descs[i].clone(),
                category: cats[i].clone(),
                subcategory: subs[i].clone(),
                pose: poses[i].clone(),
            })
            .collect())
    }

    static OPEN: LazyLock<Mutex<HashMap<PathBuf, Dataset>>> = LazyLock::new(Default::default);

    pub fn read_image(path: &Path, row: usize) -> std::result::Result<RgbImage, ImageError> {
        let err = |msg: String| ImageError::Source {
            what: format!("{}#{row}", path.display()),
            msg,
        };
        let ds = {
            let mut open = OPEN.lock().unwrap();
            if !open.contains_key(path) {
                let f = File::open(path).map_err(|e| err(e.to_string()))?;
                let ds = f.dataset(IMAGES).map_err(|e| err(e.to_string()))?;
                open.insert(path.to_path_buf(), ds);
            }
            open[path].clone()
        };
        let shape = ds.shape();
        if row >= shape[0] {
            return Err(err(format!(
                "row {row} is past the end ({} rows)",
                shape[0]
            )));
        }
        let arr = ds
            .read_slice::<u8, _, ndarray::Ix3>(s![row, .., .., ..])
            .map_err(|e| err(e.to_string()))?;
        let (h, w) = (shape[1] as u32, shape[2] as u32);
        let data: Vec<u8> = arr.iter().copied().collect();
        RgbImage::from_raw(w, h, data).ok_or_else(|| err("wrong pixel count".into()))
    }
}

#[cfg(feature = "hdf5")]
pub use imp::{read_image, read_rows};

#[cfg(not(feature = "hdf5"))]
pub fn read_rows(path: &Path) -> Result<Vec<H5Row>> {
    Err(Error::input(
        path,
        "this build has no HDF5 support: rebuild with the `hdf5` feature (needs libhdf5-dev)",
    ))
}

#[cfg(not(feature = "hdf5"))]
pub fn read_image(path: &Path, row: usize) -> std::result::Result<RgbImage, ImageError> {
    Err(ImageError::Source {
        what: format!("{}#{row}", path.display()),
        msg: "this build has no HDF5 support".into(),
    })
}
