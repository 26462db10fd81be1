//! Parquet tables: thin helpers over polars for writing and reading the pipeline's artefacts.
//!
//! Every artefact table is written with the same options (zstd, statistics, single-threaded
//! encoding) so equal data gives byte-identical files.

use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::*;

/// A table could not be written or read, or lacks an expected column.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{}: {source}", path.display())]
    Polars { path: PathBuf, source: PolarsError },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("column `{column}`: {problem}")]
    Column { column: String, problem: String },
}

fn polars_err(path: &Path) -> impl FnOnce(PolarsError) -> TableError + '_ {
    move |source| TableError::Polars {
        path: path.to_path_buf(),
        source,
    }
}

fn col_err(column: &str, e: impl std::fmt::Display) -> TableError {
    TableError::Column {
        column: column.to_string(),
        problem: e.to_string(),
    }
}

/// Writes `df` to `path` as parquet.
pub fn write_parquet(df: &mut DataFrame, path: &Path) -> Result<(), TableError> {
    let file = File::create(path).map_err(|source| TableError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    ParquetWriter::new(file)
        .with_compression(ParquetCompression::Zstd(None))
        .with_statistics(StatisticsOptions::default())
        .set_parallel(false)
        .finish(df)
        .map_err(polars_err(path))?;
    Ok(())
}

pub fn read_parquet(path: &Path) -> Result<DataFrame, TableError> {
    let file = File::open(path).map_err(|source| TableError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    ParquetReader::new(file).finish().map_err(polars_err(path))
}

/// The row count from a parquet file's footer, without reading the data.
pub fn parquet_rows(path: &Path) -> Result<u64, TableError> {
    let file = File::open(path).map_err(|source| TableError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let n = ParquetReader::new(file)
        .num_rows()
        .map_err(polars_err(path))?;
    Ok(n as u64)
}

// ---- building columns -------------------------------------------------------------------

pub fn col_str<S: AsRef<str>>(name: &str, values: &[S]) -> Column {
    let v: Vec<&str> = values.iter().map(|s| s.as_ref()).collect();
    Column::new(name.into(), v)
}

pub fn col_opt_str(name: &str, values: &[Option<String>]) -> Column {
    let v: Vec<Option<&str>> = values.iter().map(|s| s.as_deref()).collect();
    Column::new(name.into(), v)
}

pub fn col_i64(name: &str, values: &[i64]) -> Column {
    Column::new(name.into(), values)
}

pub fn col_i32(name: &str, values: &[i32]) -> Column {
    Column::new(name.into(), values)
}

pub fn col_u32(name: &str, values: &[u32]) -> Column {
    Column::new(name.into(), values)
}

pub fn col_f32(name: &str, values: &[f32]) -> Column {
    Column::new(name.into(), values)
}

pub fn col_f64(name: &str, values: &[f64]) -> Column {
    Column::new(name.into(), values)
}

pub fn col_bool(name: &str, values: &[bool]) -> Column {
    Column::new(name.into(), values)
}

/// A list column with `flat.len() / width` rows of `width` values each.
pub fn col_i32_lists(name: &str, flat: &[i32], width: usize) -> Column {
    assert!(width > 0 && flat.len() % width == 0, "{name}: ragged rows");
    let rows = flat.len() / width;
    let mut b = ListPrimitiveChunkedBuilder::<Int32Type>::new(
        name.into(),
        rows,
        flat.len(),
        DataType::Int32,
    );
    for r in flat.chunks(width) {
        b.append_slice(r);
    }
    b.finish().into_series().into_column()
}

pub fn col_f32_lists(name: &str, flat: &[f32], width: usize) -> Column {
    assert!(width > 0 && flat.len() % width == 0, "{name}: ragged rows");
    let rows = flat.len() / width;
    let mut b = ListPrimitiveChunkedBuilder::<Float32Type>::new(
        name.into(),
        rows,
        flat.len(),
        DataType::Float32,
    );
    for r in flat.chunks(width) {
        b.append_slice(r);
    }
    b.finish().into_series().into_column()
}

pub fn frame(columns: Vec<Column>) -> Result<DataFrame, TableError> {
    DataFrame::new(columns).map_err(|e| col_err("(frame)", e))
}

// ---- reading columns --------------------------------------------------------------------

fn column<'a>(df: &'a DataFrame, name: &str) -> Result<&'a Column, TableError> {
    df.column(name).map_err(|_| TableError::Column {
        column: name.to_string(),
        problem: format!(
            "missing (the table has: {})",
            df.get_column_names()
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

pub fn strings(df: &DataFrame, name: &str) -> Result<Vec<String>, TableError> {
    let c = column(df, name)?;
    let ca = c.str().map_err(|e| col_err(name, e))?;
    ca.into_iter()
        .enumerate()
        .map(|(i, v)| {
            v.map(|s| s.to_string())
                .ok_or_else(|| col_err(name, format!("null at row {i}")))
        })
        .collect()
}

pub fn opt_strings(df: &DataFrame, name: &str) -> Result<Vec<Option<String>>, TableError> {
    let c = column(df, name)?;
    let ca = c.str().map_err(|e| col_err(name, e))?;
    Ok(ca.into_iter().map(|v| v.map(|s| s.to_string())).collect())
}

macro_rules! numeric_reader {
    ($fn:ident, $method:ident, $t:ty) => {
        pub fn $fn(df: &DataFrame, name: &str) -> Result<Vec<$t>, TableError> {
            let c = column(df, name)?;
            let ca = c.$method().map_err(|e| col_err(name, e))?;
            ca.into_iter()
                .enumerate()
                .map(|(i, v)| v.ok_or_else(|| col_err(name, format!("null at row {i}"))))
                .collect()
        }
    };
}

numeric_reader!(i64s, i64, i64);
numeric_reader!(i32s, i32, i32);
numeric_reader!(u32s, u32, u32);
numeric_reader!(f32s, f32, f32);
numeric_reader!(f64s, f64, f64);
numeric_reader!(bools, bool, bool);

macro_rules! list_reader {
    ($fn:ident, $method:ident, $t:ty) => {
        /// A list column whose rows all have `width` values, flattened row-major.
        pub fn $fn(df: &DataFrame, name: &str, width: usize) -> Result<Vec<$t>, TableError> {
            let c = column(df, name)?;
            let ca = c.list().map_err(|e| col_err(name, e))?;
            let mut out = Vec::with_capacity(ca.len() * width);
            for (i, row) in ca.into_iter().enumerate() {
                let row = row.ok_or_else(|| col_err(name, format!("null at row {i}")))?;
                let vals = row.$method().map_err(|e| col_err(name, e))?;
                if vals.len() != width {
                    return Err(col_err(
                        name,
                        format!("row {i} has {} values, expected {width}", vals.len()),
                    ));
                }
                for v in vals.into_iter() {
                    out.push(v.ok_or_else(|| col_err(name, format!("null inside row {i}")))?);
                }
            }
            Ok(out)
        }
    };
}

/// The width of a fixed-width list column (from its first row; 0 for an empty table).
pub fn list_width(df: &DataFrame, name: &str) -> Result<usize, TableError> {
    let c = column(df, name)?;
    let l = c.list().map_err(|e| col_err(name, e))?;
    Ok(l.into_iter().next().flatten().map(|s| s.len()).unwrap_or(0))
}

list_reader!(i32_lists, i32, i32);
list_reader!(f32_lists, f32, f32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_exact_and_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let make = || {
            frame(vec![
                col_str("id", &["a", "b"]),
                col_i64("n", &[1, 2]),
                col_f32("x", &[0.5, -1.0]),
                col_i32_lists("ids", &[1, 2, 3, 4, 5, 6], 3),
            ])
            .unwrap()
        };
        let (p1, p2) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
        write_parquet(&mut make(), &p1).unwrap();
        write_parquet(&mut make(), &p2).unwrap();
        assert_eq!(std::fs::read(&p1).unwrap(), std::fs::read(&p2).unwrap());
        let df = read_parquet(&p1).unwrap();
        assert_eq!(parquet_rows(&p1).unwrap(), 2);
        assert_eq!(strings(&df, "id").unwrap(), ["a", "b"]);
        assert_eq!(i64s(&df, "n").unwrap(), [1, 2]);
        assert_eq!(i32_lists(&df, "ids", 3).unwrap(), [1, 2, 3, 4, 5, 6]);
        assert!(i32_lists(&df, "ids", 2).is_err());
        let e = strings(&df, "nope").unwrap_err().to_string();
        assert!(e.contains("missing") && e.contains("id, n, x, ids"), "{e}");
    }
}
