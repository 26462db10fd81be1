//! Prediction files in the original's format, so results can be checked with its script and
//! its files scored with ours: one line per predict batch, five fields separated by `\x01`,
//! each the Python `str()` of a list: text_prod_ids, image_prod_ids, prod_img_ids (lists of
//! bytes, `[b'1', b'2']`), labels (`[1, 0]`) and the flattened logits (`[l0, l1, l0, l1]`).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

use super::metrics::PredRow;
use super::sets::EvalSet;

fn bytes_list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<String> = items.map(|s| format!("b'{s}'")).collect();
    format!("[{}]", v.join(", "))
}

/// Writes one line: a predict batch's text product ids, image product ids, image ids, labels and
/// flattened logits (`l0, l1` per row).
pub fn write_line<'a>(
    w: &mut impl Write,
    rows: impl Iterator<Item = (&'a str, &'a str, &'a str)> + Clone,
    labels: impl Iterator<Item = i64>,
    logits: &[f32],
) -> std::io::Result<()> {
    let labels: Vec<String> = labels.map(|l| l.to_string()).collect();
    let logits: Vec<String> = logits.iter().map(|l| l.to_string()).collect();
    writeln!(
        w,
        "{}\x01{}\x01{}\x01[{}]\x01[{}]",
        bytes_list(rows.clone().map(|r| r.0)),
        bytes_list(rows.clone().map(|r| r.1)),
        bytes_list(rows.map(|r| r.2)),
        labels.join(", "),
        logits.join(", ")
    )
}

/// Writes an eval set's scored rows in batches of `batch` lines.
pub fn write(
    path: &Path,
    set: &EvalSet,
    scores: &HashMap<(String, String), [f32; 2]>,
    batch: usize,
) -> Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).at(path)?);
    for chunk in set.rows.chunks(batch.max(1)) {
        let logits: Vec<f32> = chunk
            .iter()
            .flat_map(|r| scores[&(r.1.clone(), r.2.clone())])
            .collect();
        write_line(
            &mut f,
            chunk
                .iter()
                .map(|r| (r.2.as_str(), r.1.as_str(), r.1.as_str())),
            chunk.iter().map(|r| r.3 as i64),
            &logits,
        )
        .at(path)?;
    }
    f.flush().at(path)?;
    Ok(())
}

/// Reads a prediction file as the original script does (ids split naively, so all but the
/// first of each line keep a leading space). `direction` picks the query id column.
pub fn read(path: &Path, direction: &str) -> Result<Vec<Vec<PredRow>>> {
    let text = std::fs::read_to_string(path).at(path)?;
    let strip = |s: &str| s.replace(['[', ']'], "");
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |m: String| Error::Input {
            path: path.to_path_buf(),
            row: Some(n + 1),
            field: None,
            message: m,
        };
        let items: Vec<&str> = line.split('\u{1}').collect();
        if items.len() != 5 {
            return Err(bad(format!(
                "{} fields, expected 5 separated by \\x01",
                items.len()
            )));
        }
        let text_ids: Vec<String> = strip(items[0]).split(',').map(String::from).collect();
        let image_ids: Vec<String> = strip(items[1]).split(',').map(String::from).collect();
        let labels: Vec<i64> = strip(items[3])
            .split(',')
            .map(|x| x.trim().parse::<i64>())
            .collect::<Result<_, _>>()
            .map_err(|e| bad(format!("labels: {e}")))?;
        let logits: Vec<f32> = strip(items[4])
            .split(',')
            .map(|x| x.trim().parse::<f32>())
            .collect::<Result<_, _>>()
            .map_err(|e| bad(format!("logits: {e}")))?;
        if text_ids.len() != image_ids.len()
            || labels.len() != text_ids.len()
            || logits.len() != 2 * labels.len()
        {
            return Err(bad(format!(
                "inconsistent lengths: {} text ids, {} image ids, {} labels, {} logits",
                text_ids.len(),
                image_ids.len(),
                labels.len(),
                logits.len()
            )));
        }
        let q = if direction == "txt2img" {
            &text_ids
        } else {
            &image_ids
        };
        lines.push(
            (0..labels.len())
                .map(|i| PredRow {
                    query: q[i].clone(),
                    label: labels[i],
                    logits: [logits[2 * i], logits[2 * i + 1]],
                })
                .collect(),
        );
    }
    Ok(lines)
}
