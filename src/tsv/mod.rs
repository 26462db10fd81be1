//! The original EasyTransfer record format, both ways.
//!
//! One record per line, columns separated by TAB in schema order; a multi-valued field is one
//! column of comma-separated values. The `.list_csv` names the data files, one per line, after
//! an optional first line with the total record count. Schemas (`name:type:len`):
//!
//! - train: `image_feature:float:131072, image_mask:int:64, masked_patch_positions:int:5,
//!   input_ids:int:64, input_mask:int:64, segment_ids:int:64, masked_lm_positions:int:10,
//!   masked_lm_ids:int:10, masked_lm_weights:float:10, nx_sent_labels:int:1`
//! - eval: `image_feature:float:131072, image_mask:int:64, input_ids:int:64, input_mask:int:64,
//!   segment_ids:int:64, nx_sent_labels:int:1, prod_desc:str:1, text_prod_id:str:1,
//!   image_prod_id:str:1, prod_img_id:str:1`
//!
//! Floats are written in the shortest form that reads back to the same f32, so an export
//! followed by an import is exact.

pub mod records;

use std::fmt::Write as _;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// A field of a schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub kind: Kind,
    pub len: usize,
    /// For integer fields: the allowed values, inclusive (checked by [`parse_line`]).
    pub range: Option<(i64, i64)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Int,
    Float,
    Str,
}

pub fn parse_schema(s: &str) -> Result<Vec<Field>> {
    s.split(',')
        .map(|f| {
            let parts: Vec<&str> = f.trim().split(':').collect();
            if parts.len() != 3 {
                return Err(Error::msg(format!(
                    "schema entry `{f}`: expected name:type:len"
                )));
            }
            let kind = match parts[1] {
                "int" => Kind::Int,
                "float" => Kind::Float,
                "str" => Kind::Str,
                other => {
                    return Err(Error::msg(format!(
                        "schema entry `{f}`: unsupported type `{other}`"
                    )));
                }
            };
            let len = parts[2]
                .parse()
                .map_err(|_| Error::msg(format!("schema entry `{f}`: bad length")))?;
            Ok(Field {
                name: parts[0].to_string(),
                kind,
                len,
                range: None,
            })
        })
        .collect()
}

/// Restricts integer field `name` of `schema` to `lo ..= hi`.
pub fn bound(mut schema: Vec<Field>, name: &str, lo: i64, hi: i64) -> Vec<Field> {
    for f in schema.iter_mut().filter(|f| f.name == name) {
        f.range = Some((lo, hi));
    }
    schema
}

/// The train schema with every integer field bounded: masks, segment ids and labels 0/1,
/// positions inside the record, ids non-negative 32-bit.
pub fn train_fields(
    patches: usize,
    dim: usize,
    t: usize,
    m: usize,
    k: usize,
) -> Result<Vec<Field>> {
    let s = parse_schema(&train_schema(patches, dim, t, m, k))?;
    let s = bound(s, "image_mask", 0, 1);
    let s = bound(s, "masked_patch_positions", 0, patches as i64 - 1);
    let s = bound(s, "input_ids", 0, i32::MAX as i64);
    let s = bound(s, "input_mask", 0, 1);
    let s = bound(s, "segment_ids", 0, 1);
    let s = bound(s, "masked_lm_positions", 0, t as i64 - 1);
    let s = bound(s, "masked_lm_ids", 0, i32::MAX as i64);
    Ok(bound(s, "nx_sent_labels", 0, 1))
}

/// The eval schema with every integer field bounded; token ids below `vocab`.
pub fn eval_fields(patches: usize, dim: usize, t: usize, vocab: usize) -> Result<Vec<Field>> {
    let s = parse_schema(&eval_schema(patches, dim, t))?;
    let s = bound(s, "image_mask", 0, 1);
    let s = bound(s, "input_ids", 0, vocab as i64 - 1);
    let s = bound(s, "input_mask", 0, 1);
    let s = bound(s, "segment_ids", 0, 1);
    Ok(bound(s, "nx_sent_labels", 0, 1))
}

pub fn train_schema(patches: usize, dim: usize, t: usize, m: usize, k: usize) -> String {
    format!(
        "image_feature:float:{},image_mask:int:{patches},masked_patch_positions:int:{m},input_ids:int:{t},input_mask:int:{t},segment_ids:int:{t},masked_lm_positions:int:{k},masked_lm_ids:int:{k},masked_lm_weights:float:{k},nx_sent_labels:int:1",
        patches * dim
    )
}

pub fn eval_schema(patches: usize, dim: usize, t: usize) -> String {
    format!(
        "image_feature:float:{},image_mask:int:{patches},input_ids:int:{t},input_mask:int:{t},segment_ids:int:{t},nx_sent_labels:int:1,prod_desc:str:1,text_prod_id:str:1,image_prod_id:str:1,prod_img_id:str:1",
        patches * dim
    )
}

/// A parsed value of one field.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Str(String),
}

impl Value {
    pub fn ints(&self) -> &[i64] {
        match self {
            Value::Ints(v) => v,
            _ => &[],
        }
    }
    /// The integers as `i32`, the width records and batches use (the schema bounds them).
    pub fn ints_i32(&self) -> Vec<i32> {
        self.ints().iter().map(|&a| a as i32).collect()
    }
    pub fn floats(&self) -> &[f32] {
        match self {
            Value::Floats(v) => v,
            _ => &[],
        }
    }
    pub fn str(&self) -> &str {
        match self {
            Value::Str(s) => s,
            _ => "",
        }
    }
}

/// Formats values for one column.
pub fn fmt_ints<T: std::fmt::Display>(v: &[T]) -> String {
    let mut s = String::with_capacity(v.len() * 3);
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{x}");
    }
    s
}

pub fn fmt_floats(v: &[f32]) -> String {
    let mut s = String::with_capacity(v.len() * 8);
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        // Display for f32 is the shortest string that parses back to the same value.
        let _ = write!(s, "{x}");
    }
    s
}

/// Parses one line against a schema; errors name the file, line and field.
pub fn parse_line(line: &str, schema: &[Field], file: &Path, lineno: usize) -> Result<Vec<Value>> {
    let cols: Vec<&str> = line.split('\t').collect();
    let err = |field: Option<&str>, m: String| Error::Input {
        path: file.to_path_buf(),
        row: Some(lineno),
        field: field.map(String::from),
        message: m,
    };
    if cols.len() != schema.len() {
        return Err(err(
            None,
            format!(
                "{} tab-separated columns, the schema has {}",
                cols.len(),
                schema.len()
            ),
        ));
    }
    schema
        .iter()
        .zip(cols)
        .map(|(f, c)| match f.kind {
            Kind::Str => Ok(Value::Str(c.to_string())),
            Kind::Int => {
                let v: Vec<i64> = c
                    .split(',')
                    .map(|x| x.trim().parse::<i64>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| err(Some(&f.name), format!("not an integer list: {e}")))?;
                if v.len() != f.len {
                    return Err(err(
                        Some(&f.name),
                        format!("{} values, the schema says {}", v.len(), f.len),
                    ));
                }
                if let Some((lo, hi)) = f.range
                    && let Some((j, x)) =
                        v.iter().enumerate().find(|(_, x)| !(lo..=hi).contains(*x))
                {
                    return Err(err(
                        Some(&f.name),
                        format!("value {x} (position {j}) is outside {lo}..={hi}"),
                    ));
                }
                Ok(Value::Ints(v))
            }
            Kind::Float => {
                let v: Vec<f32> = c
                    .split(',')
                    .map(|x| x.trim().parse::<f32>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| err(Some(&f.name), format!("not a float list: {e}")))?;
                if v.len() != f.len {
                    return Err(err(
                        Some(&f.name),
                        format!("{} values, the schema says {}", v.len(), f.len),
                    ));
                }
                if let Some((j, x)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
                    return Err(err(
                        Some(&f.name),
                        format!("value {x} (position {j}) is not finite"),
                    ));
                }
                Ok(Value::Floats(v))
            }
        })
        .collect()
}

/// The data files a `.list_csv` names (relative paths against its folder), and its count line.
pub fn read_list(path: &Path) -> Result<(Option<u64>, Vec<PathBuf>)> {
    let text = std::fs::read_to_string(path).at(path)?;
    let dir = crate::dag::stage::parent_dir(path);
    let mut count = None;
    let mut files = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        if l.is_empty() {
            continue;
        }
        if l.chars().all(|c| c.is_ascii_digit()) {
            if i == 0 {
                count = l.parse().ok();
            }
            continue;
        }
        files.push(crate::dag::stage::resolve_path(&dir, l));
    }
    if files.is_empty() {
        return Err(Error::input(
            path,
            "names no data file: a .list_csv holds an optional count line, then one data file per line",
        ));
    }
    Ok((count, files))
}

/// Calls `f` on every parsed record of the files, streaming (one line in memory at a time).
pub fn for_each_record(
    files: &[PathBuf],
    schema: &[Field],
    mut f: impl FnMut(&Path, usize, Vec<Value>) -> Result<()>,
) -> Result<u64> {
    let mut n = 0;
    for file in files {
        let rd = std::io::BufReader::new(std::fs::File::open(file).at(file)?);
        for (i, line) in rd.lines().enumerate() {
            let line = line.at(file)?;
            if line.is_empty() {
                continue;
            }
            let vals = parse_line(&line, schema, file, i + 1)?;
            f(file, i + 1, vals)?;
            n += 1;
        }
    }
    Ok(n)
}

/// A streaming writer of data files (`part-NNNNN.tsv`, `per_file` records each) and their
/// `.list_csv`.
pub struct Writer {
    dir: PathBuf,
    prefix: String,
    per_file: usize,
    files: Vec<PathBuf>,
    current: Option<BufWriter<std::fs::File>>,
    in_file: usize,
    total: u64,
}

impl Writer {
    pub fn create(dir: &Path, prefix: &str, per_file: usize) -> Result<Writer> {
        crate::error::create_out_dir(dir)?;
        Ok(Writer {
            dir: dir.to_path_buf(),
            prefix: prefix.to_string(),
            per_file: per_file.max(1),
            files: vec![],
            current: None,
            in_file: 0,
            total: 0,
        })
    }

    pub fn write_record(&mut self, cols: &[String]) -> Result<()> {
        if self.current.is_none() || self.in_file == self.per_file {
            if let Some(mut w) = self.current.take() {
                w.flush().at(&self.dir)?;
            }
            let p = self
                .dir
                .join(format!("{}-{:05}.tsv", self.prefix, self.files.len()));
            self.current = Some(BufWriter::with_capacity(
                1 << 20,
                std::fs::File::create(&p).at(&p)?,
            ));
            self.files.push(p);
            self.in_file = 0;
        }
        let w = self.current.as_mut().unwrap();
        w.write_all(cols.join("\t").as_bytes()).at(&self.dir)?;
        w.write_all(b"\n").at(&self.dir)?;
        self.in_file += 1;
        self.total += 1;
        Ok(())
    }

    /// Closes the data files and writes `<prefix>.list_csv` (count line, then file names).
    pub fn finish(mut self) -> Result<PathBuf> {
        if let Some(mut w) = self.current.take() {
            w.flush().at(&self.dir)?;
        }
        let list = self.dir.join(format!("{}.list_csv", self.prefix));
        let mut s = format!("{}\n", self.total);
        for f in &self.files {
            let _ = writeln!(s, "{}", f.file_name().unwrap().to_string_lossy());
        }
        std::fs::write(&list, s).at(&list)?;
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_round_trip_exactly() {
        let v: Vec<f32> = vec![0.0, 1.5, -3.25e-8, 0.1, f32::MAX, 123456.79, 1.0 / 3.0];
        let s = fmt_floats(&v);
        let back: Vec<f32> = s.split(',').map(|x| x.parse().unwrap()).collect();
        assert_eq!(v, back);
    }

    #[test]
    fn bounded_fields_reject_values_outside_their_range() {
        let schema = bound(parse_schema("ids:int:2,x:float:1").unwrap(), "ids", 0, 9);
        assert!(parse_line("0,9\t1", &schema, Path::new("f.tsv"), 1).is_ok());
        for (line, want) in [
            ("0,10\t1", "value 10 (position 1) is outside 0..=9"),
            ("-5,1\t1", "value -5 (position 0) is outside 0..=9"),
            ("1,1\tNaN", "value NaN (position 0) is not finite"),
        ] {
            let e = parse_line(line, &schema, Path::new("f.tsv"), 2)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want) && e.contains("f.tsv"), "{e}");
        }
        // Beyond i32 (used to wrap silently when imported).
        let t = train_fields(4, 1, 4, 1, 1).unwrap();
        let line = "0,0,0,0\t1,1,1,1\t2\t1,99999999999,3,4\t1,1,1,1\t0,0,0,0\t1\t5\t1\t1";
        let e = parse_line(line, &t, Path::new("f.tsv"), 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("input_ids") && e.contains("99999999999"), "{e}");
        let line = "0,0,0,0\t1,1,1,1\t500\t1,2,3,4\t1,1,1,1\t0,0,0,0\t1\t5\t1\t1";
        let e = parse_line(line, &t, Path::new("f.tsv"), 1)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("masked_patch_positions") && e.contains("outside 0..=3"),
            "{e}"
        );
    }

    #[test]
    fn parse_errors_name_line_and_field() {
        let schema = parse_schema("a:int:2,b:float:1,c:str:1").unwrap();
        let ok = parse_line("1,2\t0.5\thello", &schema, Path::new("f.tsv"), 3).unwrap();
        assert_eq!(ok[0].ints(), &[1, 2]);
        let e = parse_line("1\t0.5\thello", &schema, Path::new("f.tsv"), 3)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("f.tsv, row 3, field `a`") && e.contains("1 values"),
            "{e}"
        );
        let e = parse_line("1,2\tx\thello", &schema, Path::new("f.tsv"), 4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("field `b`"), "{e}");
        let e = parse_line("1,2\t0.5", &schema, Path::new("f.tsv"), 5)
            .unwrap_err()
            .to_string();
        assert!(e.contains("2 tab-separated columns"), "{e}");
    }
}
