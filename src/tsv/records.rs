//! Records ↔ the original's TSV files: a split's training records or an evaluation set written
//! in EasyTransfer's format (with a `.list_csv` and a `.schema`), and original training files
//! read back into records and a feature store.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::dag::Latest;
use crate::error::{Error, IoContext, Result};
use crate::featstore;
use crate::table;
use crate::training::data::Records;
use crate::tsv::{self, Writer};

/// What [`export`] wrote.
pub struct Exported {
    pub records: usize,
    /// The `.list_csv` naming the written files.
    pub list: PathBuf,
    pub schema_file: PathBuf,
    pub schema: String,
}

/// Writes a split's records in the original training format, or an eval set
/// (`eval-img2txt`, `eval-txt2img`, from the latest `evaluate`) in the original eval format,
/// with a `.list_csv`.
pub fn export(l: &Latest, split: &str, out: &Path, per_file: usize) -> Result<Exported> {
    if let Some(direction) = split.strip_prefix("eval-") {
        return export_eval(l, direction, out, per_file);
    }
    let store = featstore::Store::open(&l.dir("features")?)?;
    let recs = Records::read_inferring_widths(&l.dir("records")?.join(format!("{split}.parquet")))?;
    let mut writer = Writer::create(out, split, per_file)?;
    write_records(&recs, &store, &mut writer)?;
    let list = writer.finish()?;
    let schema = tsv::train_schema(store.meta.patches, store.meta.dim, recs.t, recs.m, recs.k);
    let schema_file = out.join(format!("{split}.schema"));
    std::fs::write(&schema_file, &schema).at(&schema_file)?;
    Ok(Exported {
        records: recs.len(),
        list,
        schema_file,
        schema,
    })
}

fn export_eval(l: &Latest, direction: &str, out: &Path, per_file: usize) -> Result<Exported> {
    let store = featstore::Store::open(&l.dir("features")?)?;
    let texts = crate::eval::scoring::Texts::read(&l.dir("tokenize")?.join("texts.parquet"))?;
    let products = crate::schema::read_products(&l.dir("ingest")?.join("products.parquet"))?;
    let desc: HashMap<&str, &str> = products
        .iter()
        .map(|p| (p.product_id.as_str(), p.text.as_str()))
        .collect();
    let pairs = table::read_parquet(&l.dir("evaluate")?.join("pairs.parquet"))?;
    let dirs = table::strings(&pairs, "direction")?;
    let imgs = table::strings(&pairs, "image_id")?;
    let txts = table::strings(&pairs, "text_product_id")?;
    let labels = table::bools(&pairs, "label")?;
    let (p, t) = (store.meta.patches, texts.t);
    let ones = vec![1; p];
    let zeros = vec![0; t];
    let mut writer = Writer::create(out, &format!("eval-{direction}"), per_file)?;
    let mut feats = Vec::new();
    let mut n = 0;
    for i in (0..dirs.len()).filter(|&i| dirs[i] == direction) {
        feats.clear();
        store.read_into(&imgs[i], &mut feats)?;
        let (ids, mask) = texts
            .get(&txts[i])
            .ok_or_else(|| Error::msg(format!("no tokens for text {}", txts[i])))?;
        writer.write_record(&[
            tsv::fmt_floats(&feats),
            tsv::fmt_ints(&ones),
            tsv::fmt_ints(ids),
            tsv::fmt_ints(mask),
            tsv::fmt_ints(&zeros),
            (labels[i] as i32).to_string(),
            desc.get(txts[i].as_str())
                .copied()
                .unwrap_or("")
                .replace(['\t', '\n'], " "),
            txts[i].clone(),
            imgs[i].clone(),
            imgs[i].clone(),
        ])?;
        n += 1;
    }
    let list = writer.finish()?;
    let schema = tsv::eval_schema(p, store.meta.dim, t);
    let schema_file = out.join(format!("eval-{direction}.schema"));
    std::fs::write(&schema_file, &schema).at(&schema_file)?;
    Ok(Exported {
        records: n,
        list,
        schema_file,
        schema,
    })
}

/// Writes `recs` (features from `store`) as original-format training lines.
pub fn write_records(recs: &Records, store: &featstore::Store, writer: &mut Writer) -> Result<()> {
    let (t, k, m, p) = (recs.t, recs.k, recs.m, store.meta.patches);
    let ones = vec![1; p];
    let mut feats = Vec::with_capacity(p * store.meta.dim);
    for i in 0..recs.len() {
        feats.clear();
        store.read_into(&recs.image_id[i], &mut feats)?;
        writer.write_record(&[
            tsv::fmt_floats(&feats),
            tsv::fmt_ints(&ones),
            tsv::fmt_ints(&recs.masked_patch_positions[i * m..(i + 1) * m]),
            tsv::fmt_ints(&recs.input_ids[i * t..(i + 1) * t]),
            tsv::fmt_ints(&recs.input_mask[i * t..(i + 1) * t]),
            tsv::fmt_ints(&recs.segment_ids[i * t..(i + 1) * t]),
            tsv::fmt_ints(&recs.masked_lm_positions[i * k..(i + 1) * k]),
            tsv::fmt_ints(&recs.masked_lm_ids[i * k..(i + 1) * k]),
            tsv::fmt_floats(&recs.masked_lm_weights[i * k..(i + 1) * k]),
            recs.label[i].to_string(),
        ])?;
    }
    Ok(())
}

/// What [`import`] read.
pub struct Imported {
    pub records: Records,
    /// Distinct images (by a hash of their features).
    pub images: usize,
}

/// Reads original-format training files into `out/records.parquet` and a feature store in
/// `out/features/` (images identified by a hash of their features, so a shared image is stored
/// once).
pub fn import(
    list: &Path,
    out: &Path,
    patches: usize,
    dim: usize,
    t: usize,
    m: usize,
    k: usize,
) -> Result<Imported> {
    let (count, files) = tsv::read_list(list)?;
    let schema = tsv::train_fields(patches, dim, t, m, k)?;
    let mut writer = featstore::Writer::create(
        &out.join("features"),
        featstore::FeatDType::F32,
        patches,
        dim,
        1024,
        serde_json::json!({"imported_from": list.display().to_string()}),
    )?;
    let mut seen: HashSet<String> = HashSet::new();
    let mut recs = Records {
        t,
        k,
        m,
        ..Default::default()
    };
    let n = tsv::for_each_record(&files, &schema, |file, line, v| {
        let feats = v[0].floats();
        let id = format!(
            "h:{}",
            &blake3::hash(bytemuck::cast_slice(feats)).to_hex()[..20]
        );
        if seen.insert(id.clone()) {
            writer.push(&id, feats)?;
        }
        recs.record_id.push(format!(
            "{}:{line}",
            file.file_name().unwrap().to_string_lossy()
        ));
        recs.image_id.push(id);
        recs.text_product_id.push(String::new());
        recs.image_product_id.push(String::new());
        recs.subcategory.push(String::new());
        recs.masked_patch_positions.extend(v[2].ints_i32());
        recs.input_ids.extend(v[3].ints_i32());
        recs.input_mask.extend(v[4].ints_i32());
        recs.segment_ids.extend(v[5].ints_i32());
        recs.masked_lm_positions.extend(v[6].ints_i32());
        recs.masked_lm_ids.extend(v[7].ints_i32());
        recs.masked_lm_weights.extend_from_slice(v[8].floats());
        let label = v[9].ints()[0] as i32;
        recs.label.push(label);
        recs.round.push(if label == 1 { -1 } else { 0 });
        Ok(())
    })?;
    if n == 0 {
        return Err(Error::input(
            list,
            "its data files hold no record: nothing to import",
        ));
    }
    if let Some(c) = count {
        if c != n {
            tracing::warn!(
                "{}: the count line says {c} records, the files hold {n}",
                list.display()
            );
        }
    }
    writer.finish(&vec![0.0; dim])?;
    recs.write(&out.join("records.parquet"))?;
    Ok(Imported {
        records: recs,
        images: seen.len(),
    })
}
