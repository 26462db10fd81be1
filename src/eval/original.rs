//! Scoring eval files in the original's TSV format with a trained model (`fashionbert
//! eval-tsv`): writes the prediction file the original's predict mode would have written and the
//! metrics, corrected and EasyTransfer-compatible.

use std::path::{Path, PathBuf};

use super::metrics::{self, PredRow, Scored};
use super::predfile;
use crate::error::{Error, IoContext, Result};
use crate::training::data::HostBatch;
use crate::tsv;

/// Checks `--type` against the files: an eval set ranks each query (the text for txt2img,
/// the image for img2txt) against many candidates, so its query column (`text_prod_id` or
/// `image_prod_id`) has fewer distinct values than its candidate column. Reads only those
/// two columns.
fn check_eval_direction(files: &[PathBuf], direction: &str) -> Result<()> {
    use std::collections::HashSet;
    use std::io::BufRead;
    let (mut texts, mut images) = (HashSet::new(), HashSet::new());
    for file in files {
        let f = std::fs::File::open(file).at(file)?;
        for line in std::io::BufReader::new(f).lines() {
            let line = line.at(file)?;
            let cols: Vec<&str> = line.rsplitn(4, '\t').collect();
            // rsplitn: prod_img_id, image_prod_id, text_prod_id, rest.
            if cols.len() == 4 {
                images.insert(cols[1].to_string());
                texts.insert(cols[2].to_string());
            }
        }
    }
    let (queries, candidates, other) = if direction == "txt2img" {
        (texts.len(), images.len(), "img2txt")
    } else {
        (images.len(), texts.len(), "txt2img")
    };
    if queries > candidates {
        return Err(Error::msg(format!(
            "--type {direction} ranks each query against its candidates, but these files hold {queries} distinct {} and only {candidates} distinct {}: they look like an eval set of type {other}; pass --type {other}",
            if direction == "txt2img" {
                "texts (text_prod_id)"
            } else {
                "images (image_prod_id)"
            },
            if direction == "txt2img" {
                "images (image_prod_id)"
            } else {
                "texts (text_prod_id)"
            },
        )));
    }
    Ok(())
}

/// Scores eval files in the original format with a trained model; writes the prediction file
/// the original would have written, and the metrics (corrected and compatible).
pub fn score_files(
    model_dir: &Path,
    inputs: &[PathBuf],
    direction: &str,
    out: &Path,
    batch: usize,
    device_kind: &str,
) -> Result<serde_json::Value> {
    let compute = crate::device::select(device_kind, 0)?;
    // A model folder, or EasyTransfer's checkpoint itself (the original's predict mode).
    let (model, cfg) = crate::weights::tfload::load_model(model_dir, &compute.device)?;
    let (p, f, t) = (cfg.num_patches, cfg.patch_feature_size, cfg.text_len);
    let schema = tsv::eval_fields(p, f, t, cfg.bert.vocab_size)?;
    let mut files = Vec::new();
    for i in inputs {
        if i.extension().is_some_and(|e| e == "list_csv") {
            files.extend(tsv::read_list(i)?.1);
        } else {
            files.push(i.clone());
        }
    }
    check_eval_direction(&files, direction)?;
    crate::error::create_out_dir(out)?;
    let pred_path = out.join(format!("eval_{direction}_results.txt"));
    let mut pred = std::io::BufWriter::new(std::fs::File::create(&pred_path).at(&pred_path)?);
    let mut scored: Vec<Scored> = Vec::new();
    let mut pending: Vec<Vec<tsv::Value>> = Vec::new();
    let mut flush = |pending: &mut Vec<Vec<tsv::Value>>, scored: &mut Vec<Scored>| -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let mut hb = HostBatch::new(t, p, f, 1, 1);
        for v in pending.iter() {
            hb.push_with_features(
                &v[2].ints_i32(),
                &v[3].ints_i32(),
                &v[4].ints_i32(),
                v[0].floats(),
                None,
                None,
                v[5].ints()[0] as i32,
            );
        }
        let logits = super::scoring::align_logits(&model, &hb, &compute.device)?;
        predfile::write_line(
            &mut pred,
            pending.iter().map(|r| (r[7].str(), r[8].str(), r[9].str())),
            pending.iter().map(|r| r[5].ints()[0]),
            logits.as_flattened(),
        )
        .at(&pred_path)?;
        for (i, r) in pending.iter().enumerate() {
            let (q, c) = if direction == "txt2img" {
                (r[7].str(), r[8].str())
            } else {
                (r[8].str(), r[7].str())
            };
            scored.push(Scored {
                query: q.to_string(),
                candidate: c.to_string(),
                label: r[5].ints()[0] != 0,
                logits: logits[i],
            });
        }
        pending.clear();
        Ok(())
    };
    tsv::for_each_record(&files, &schema, |_, _, v| {
        pending.push(v);
        if pending.len() == batch.max(1) {
            flush(&mut pending, &mut scored)?;
        }
        Ok(())
    })?;
    flush(&mut pending, &mut scored)?;
    drop(flush);
    drop(pred);
    if scored.is_empty() {
        return Err(Error::msg(format!(
            "eval-tsv: the input ({}) holds no record, so there is nothing to score: give it the original's eval files (or their .list_csv)",
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let lines: Vec<Vec<PredRow>> = predfile::read(&pred_path, direction)?;
    let mut m = metrics::compute(&scored, batch);
    m.easytransfer_compatible = metrics::compat_from_lines(&lines, batch);
    let v = serde_json::json!({ direction: m });
    let path = out.join("metrics.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&v).expect("JSON of numbers"),
    )
    .at(&path)?;
    Ok(v)
}
