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

/// What `search` looks for: one of a text, an image file, a product of the catalogue.
pub struct SearchQuery {
    pub text: Option<String>,
    pub image: Option<PathBuf>,
    pub product: Option<String>,
}

/// Searches the catalogue's embeddings (the `embed` entry the config resolves to) and prints
/// the best `k`, as a table or JSON.
pub fn search(
    entries: &EntryArgs,
    q: SearchQuery,
    side: Option<crate::search::Side>,
    k: usize,
    filter: &crate::search::Filter,
    json: bool,
) -> Result<()> {
    use crate::error::Error;
    use crate::schema::embeddings::Embeddings;
    use crate::search::{Side, top_k};
    let l = latest(entries)?;
    if l.config.stage("embed").is_none() {
        return Err(Error::msg(
            "the config has no `embed` stage: add `[stages.embed]` (pipeline.toml has one) and run `fashionbert run embed`",
        ));
    }
    let dir = l.dir("embed")?;
    let e = Embeddings::read(&dir)?;
    let model = &e.model;
    // Queries the model encodes must be encoded by the model that made the embeddings.
    let scorer = || -> Result<Scorer> {
        let key = format!("train/{}", l.key("train")?);
        if &key != model {
            return Err(Error::msg(format!(
                "the embeddings were made by {model}, the config's model is {key}: run `fashionbert run embed`"
            )));
        }
        Scorer::from_pipeline(&l)
    };
    let (query, default, exclude, what) = match (&q.text, &q.image, &q.product) {
        (Some(t), None, None) => (
            scorer()?.itc_text(t)?,
            Side::Images,
            None,
            format!("text {t:?}"),
        ),
        (None, Some(p), None) => {
            let img = crate::images::decode_file(p)?;
            (
                scorer()?.itc_image(&img)?,
                Side::Texts,
                None,
                format!("image {}", p.display()),
            )
        }
        (None, None, Some(id)) => {
            let row = e.row_of(id).ok_or_else(|| {
                    Error::msg(format!(
                        "product `{id}` is not in the embeddings ({} products; embed.split may leave it out)",
                        e.len()
                    ))
                })?;
            (
                e.image_row(row).to_vec(),
                Side::Images,
                Some(row),
                format!("product {id}"),
            )
        }
        _ => {
            return Err(Error::msg(
                "give one query: --text TEXT, --image FILE or --product ID",
            ));
        }
    };
    let side = side.unwrap_or(default);
    // A product's own image is left out of similar images, not of its texts.
    let exclude = exclude.filter(|_| side == Side::Images);
    let t0 = std::time::Instant::now();
    let hits = top_k(&e, &query, side, filter, k, exclude);
    let took = t0.elapsed().as_secs_f64();
    let entry = format!(
        "embed/{}",
        dir.file_name().unwrap_or_default().to_string_lossy()
    );
    if json {
        let out = serde_json::json!({
            "query": what,
            "ranked": side.as_str(),
            "entry": entry,
            "model": model,
            "catalogue": e.len(),
            "seconds": took,
            "hits": hits,
        });
        std::println!("{}", serde_json::to_string_pretty(&out).expect("JSON"));
        return Ok(());
    }
    std::println!(
        "{} ranked for {what} (using {entry}, {model}; {} products, {:.1} ms; score = cosine × inverse temperature):",
        side.as_str(),
        e.len(),
        took * 1e3
    );
    std::println!("rank    score  product          subcategory      title");
    for h in &hits {
        std::println!(
            "{:>4} {:>8.3}  {:<16} {:<16} {}",
            h.rank,
            h.score,
            h.product_id,
            h.subcategory,
            h.title
        );
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
