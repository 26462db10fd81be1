//! Verbs that use a pipeline's latest artefacts: `show` a record, `rank` with the trained model,
//! move records to and from the original's TSV format, and score original-format eval files.
//! The work lives in the library ([`crate::show`], [`crate::eval::rank`], [`crate::tsv::records`],
//! [`crate::eval::original`]); these functions open the pipeline and print.

use std::path::{Path, PathBuf};

use super::EntryArgs;
use crate::dag::Latest;
use crate::error::Result;
use crate::eval::rank::{Query, Scorer};
use crate::progress::println;

fn latest(entries: &EntryArgs) -> Result<Latest> {
    Ok(Latest::open_with(
        &entries.config,
        &crate::stages::registry(),
        entries.resolve(),
    )?)
}

/// Draws a record: its image with the patch grid and masked patches blacked out, its text with
/// masked tokens marked, and its label.
pub fn show(entries: &EntryArgs, record: &str, out: &Path) -> Result<()> {
    crate::show::draw(&latest(entries)?, record, out)?;
    println(format!("wrote {}", out.display()));
    Ok(())
}

/// Ranks texts for one image, or images for one text, with the pipeline's trained model.
pub fn rank(
    entries: &EntryArgs,
    images: &[PathBuf],
    texts: &[String],
    texts_file: Option<&Path>,
    top: usize,
) -> Result<()> {
    let query = Query::new(images, texts, texts_file)?;
    let scorer = Scorer::from_pipeline(&latest(entries)?)?;
    let ranked = query.rank(&scorer)?;
    let (head, names): (String, Vec<String>) = match &query {
        Query::Image { image, texts } => (
            format!("texts ranked for {}", image.display()),
            texts.clone(),
        ),
        Query::Text { text, images } => (
            format!("images ranked for {text:?}"),
            images.iter().map(|p| p.display().to_string()).collect(),
        ),
    };
    std::println!("{head} (score = log-odds of matched):");
    for (r, &(i, score)) in ranked.iter().take(top).enumerate() {
        std::println!("{:>3}. {:>8.3}  {}", r + 1, score, names[i]);
    }
    Ok(())
}

/// Writes a split's records in the original training format, or an eval set
/// (`eval-img2txt`, `eval-txt2img`, from the latest `evaluate`) in the original eval format,
/// with a `.list_csv`.
pub fn export_tsv(
    entries: &EntryArgs,
    split: &str,
    out: &Path,
    per_file: usize,
) -> Result<PathBuf> {
    let e = crate::tsv::records::export(&latest(entries)?, split, out, per_file)?;
    println(format!(
        "wrote {} records → {} (schema in {})\n{}",
        e.records,
        e.list.display(),
        e.schema_file.display(),
        e.schema
    ));
    Ok(e.list)
}

/// Reads original-format training files into `out/records.parquet` and a feature store in
/// `out/features/`.
pub fn import_tsv(
    list: &Path,
    out: &Path,
    patches: usize,
    dim: usize,
    t: usize,
    m: usize,
    k: usize,
) -> Result<()> {
    let i = crate::tsv::records::import(list, out, patches, dim, t, m, k)?;
    println(format!(
        "imported {} records, {} distinct images → {}",
        i.records.len(),
        i.images,
        out.display()
    ));
    Ok(())
}

/// Scores eval files in the original format with a trained model; writes the prediction file
/// the original would have written, and the metrics (corrected and compatible).
pub fn eval_tsv(
    model_dir: &Path,
    inputs: &[PathBuf],
    direction: &str,
    out: &Path,
    batch: usize,
    device_kind: &str,
) -> Result<()> {
    let v =
        crate::eval::original::score_files(model_dir, inputs, direction, out, batch, device_kind)?;
    println(serde_json::to_string_pretty(&v).expect("JSON of numbers"));
    Ok(())
}
