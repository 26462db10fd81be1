//! `ingest`: products from a source (synthetic, CSV, Fashion-Gen HDF5) into one table, one row
//! per image. Rows that cannot be used are rejected with a reason, counted and kept in
//! `rejects.parquet`; nothing is dropped silently.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::dag::params::{Choice, required};
use crate::dag::{
    ParamDefault as D, ParamKind as K, Params, RawInput, RunContext, ShardId, Stage, StageError,
    StageParams, StageSpec,
};
use crate::error::{Error, IoContext, Result};
use crate::images::{ImageLoader, ImageRef, ImageRoot};
use crate::progress::Progress;
use crate::schema::{ImageRow, write_images, write_products, write_rejects};
use crate::sources::{
    self, Product, Reject, TextMode, csv as csvsrc, fashiongen, normalize_split, normalize_text,
    product_text, synthetic, title_key,
};
use crate::table::{self, col_opt_str, col_str};

crate::param_choice! {
    /// Where `ingest` reads products from.
    pub enum Source {
        /// The built-in generator.
        Synthetic = "synthetic",
        /// A CSV with an image folder.
        Csv = "csv",
        /// Fashion-Gen's HDF5 release.
        Fashiongen = "fashiongen",
    }
}

crate::stage_params! {
    /// The params of `ingest`.
    pub struct IngestParams {
        source: Source = (
            K::Choice(Source::CHOICES),
            D::Str("synthetic"),
            "where products come from",
        );
        text: TextMode = (
            K::Choice(TextMode::CHOICES),
            D::Str("title_description"),
            "the text a product contributes (title first keeps what matters inside 64 tokens)",
        );
        limit: usize = (
            K::Int,
            D::Int(0),
            "keep only the first N accepted products (0 = all)",
        )
        .min(0.0);
        check_images: bool = (
            K::Bool,
            D::Bool(true),
            "decode every image and reject those that fail (missing or unreadable files are rejected either way)",
        );
        products: usize = (K::Int, D::Int(2000), "synthetic: number of products").min(1.0);
        seed: u64 = (
            K::Int,
            D::Int(1),
            "synthetic: generator seed; also the split seed for CSVs without a split column",
        )
        .min(0.0);
        image_size: usize = (
            K::Int,
            D::Int(256),
            "synthetic: image side in pixels",
        )
        .range(8.0, 4096.0);
        valid_fraction: f64 = (
            K::Float,
            D::Float(0.15),
            "share of products in the valid split, where the source has no split",
        )
        .range(0.0, 0.95);
        csv: Option<String> = (K::Path, D::None, "csv: the products CSV");
        image_root: Option<String> = (
            K::Path,
            D::None,
            "csv: folder the image column is relative to (default: the CSV's folder)",
        );
        id_column: String = (K::Str, D::Str("product_id"), "csv: the product id column");
        image_column: String = (K::Str, D::Str("image"), "csv: the image path column");
        title_column: String = (K::Str, D::Str("title"), "csv: the title column");
        description_column: String = (
            K::Str,
            D::Str("description"),
            "csv: the description column",
        );
        category_column: String = (K::Str, D::Str("category"), "csv: the category column");
        subcategory_column: String = (
            K::Str,
            D::Str("subcategory"),
            "csv: the subcategory column",
        );
        split_column: String = (
            K::Str,
            D::Str("split"),
            "csv: the split column (empty: none; splits drawn by seed)",
        );
        eval_split: Option<String> = (
            K::Str,
            D::None,
            "csv: evaluate another catalogue: rows whose split is this name (any name; `all` = every row) form the `valid` split that `evaluate` ranks; rows of other splits are skipped and counted",
        );
        groups_csv: Option<String> = (
            K::Path,
            D::None,
            "csv: optional CSV with same-title groups, joined on the id column",
        );
        groups_column: String = (
            K::Str,
            D::Str("same_title_group"),
            "csv: the group column of groups_csv",
        );
        train_h5: Option<String> = (K::Path, D::None, "fashiongen: fashiongen_256_256_train.h5");
        valid_h5: Option<String> = (
            K::Path,
            D::None,
            "fashiongen: fashiongen_256_256_validation.h5",
        );
    }
}

pub const SPEC: StageSpec = StageSpec {
    name: "ingest",
    version: 2,
    about: "read products from the source: one row per image, rejects with reasons",
    inputs: &[],
    params: IngestParams::SPECS,
    outputs: &["products.parquet", "images.parquet", "rejects.parquet"],
};

pub struct Ingest;

impl Stage for Ingest {
    fn spec(&self) -> &'static StageSpec {
        &SPEC
    }

    fn raw_inputs(&self, p: &Params, base: &Path) -> Result<Vec<RawInput>, StageError> {
        let p = IngestParams::from_params(p)?;
        let r = |s: &str| crate::dag::stage::resolve_path(base, s);
        Ok(match p.source {
            Source::Csv => {
                let csv = r(required(&p.csv, "csv")?);
                let mut v = vec![
                    RawInput::File(csv.clone()),
                    RawInput::Dir(image_root(&p, base)?),
                ];
                if let Some(g) = p.groups_csv.as_deref() {
                    v.push(RawInput::File(r(g)));
                }
                v
            }
            Source::Fashiongen => {
                let mut v = vec![RawInput::File(r(required(&p.train_h5, "train_h5")?))];
                if let Some(h) = p.valid_h5.as_deref() {
                    v.push(RawInput::File(r(h)));
                }
                v
            }
            Source::Synthetic => vec![],
        })
    }

    fn run(&self, ctx: &mut RunContext) -> Result<(), StageError> {
        let p: IngestParams = ctx.typed_params()?;
        let listing = list(ctx, &p)?;
        let all = distinct_images(&listing.products, None);
        let checks = check_images(ctx, &listing, decodes(&p), &all)?;
        finish(ctx, listing, &checks)
    }

    fn shardable(&self) -> bool {
        true
    }

    /// Renders (synthetic) and checks the images whose id hashes to this shard, into a part
    /// of `checks.parquet` (and, for synthetic products, their `images/`). Reading the source
    /// is cheap and every shard does it; the per-image work is what splits.
    fn run_shard(&self, ctx: &mut RunContext, shard: ShardId) -> Result<(), StageError> {
        let p: IngestParams = ctx.typed_params()?;
        let listing = list(ctx, &p)?;
        let mine = distinct_images(&listing.products, Some(shard));
        tracing::info!(
            "ingest: shard {shard} checks {} of {} images",
            mine.len(),
            distinct_images(&listing.products, None).len()
        );
        let checks = check_images(ctx, &listing, decodes(&p), &mine)?;
        let ordered: Vec<(&str, &Check)> = mine
            .iter()
            .map(|pr| (pr.image_id.as_str(), &checks[&pr.image_id]))
            .collect();
        write_checks(&ctx.out(CHECKS), &ordered)?;
        ctx.count("images", mine.len() as u64);
        ctx.count(
            "rejected",
            ordered.iter().filter(|(_, c)| c.is_err()).count() as u64,
        );
        Ok(())
    }

    /// Reads the source again (cheap, deterministic) and takes each image's check from the part
    /// of the shard its id hashes to; synthetic images are linked in from the parts. Writes
    /// byte for byte what `run` writes.
    fn merge(&self, ctx: &mut RunContext, parts: &[PathBuf]) -> Result<(), StageError> {
        let p: IngestParams = ctx.typed_params()?;
        let listing = list(ctx, &p)?;
        let leftovers = || {
            parts
                .first()
                .and_then(|d| d.parent())
                .map(|d| d.display().to_string())
                .unwrap_or_default()
        };
        let mut checks: HashMap<String, Check> = HashMap::new();
        for (i, dir) in parts.iter().enumerate() {
            for (id, check) in read_checks(&dir.join(CHECKS))? {
                if ShardId::of_key(&id, parts.len()) != i {
                    return Err(format!(
                        "part {} holds image `{id}`, which belongs to another shard: the parts were made from another split; remove {} and run again",
                        dir.display(),
                        leftovers()
                    )
                    .into());
                }
                checks.insert(id, check);
            }
        }
        if listing.synthetic.is_some() {
            let dir = ctx.out("images");
            std::fs::create_dir_all(&dir).at(&dir)?;
        }
        for pr in distinct_images(&listing.products, None) {
            let shard = ShardId::of_key(&pr.image_id, parts.len());
            if !checks.contains_key(&pr.image_id) {
                return Err(format!(
                    "image `{}` is missing from its part {}: the parts were made from another ingest; remove {} and run again",
                    pr.image_id,
                    parts[shard].display(),
                    leftovers()
                )
                .into());
            }
            if listing.synthetic.is_some() {
                let rel = synthetic_image(&pr.image_id);
                let from = parts[shard].join(&rel);
                if from.is_file() {
                    link_or_copy(&from, &ctx.out(&rel))?;
                }
            }
        }
        ctx.note("merged_parts", serde_json::json!(parts.len()));
        finish(ctx, listing, &checks)
    }
}

/// What `ingest` knows before it reads an image: the products in source order (after
/// `limit`), the rows already rejected, and for synthetic products what draws each image.
struct Listing {
    products: Vec<Product>,
    rejects: Vec<Reject>,
    /// Synthetic: the generator's config and each product's drawing, by image id.
    synthetic: Option<(
        synthetic::SynthConfig,
        HashMap<String, synthetic::SynthProduct>,
    )>,
}

/// Reads the source: products and the rows rejected before any image is read.
fn list(ctx: &mut RunContext, p: &IngestParams) -> Result<Listing> {
    let (mut products, rejects, synth) = match p.source {
        Source::Synthetic => {
            let (products, synth) = synthetic_products(p);
            (products, vec![], Some(synth))
        }
        Source::Csv => {
            let (products, rejects, skipped) = csv_products(ctx, p)?;
            if skipped > 0 {
                tracing::info!(
                    "ingest: {skipped} row(s) of other splits skipped (eval_split = {})",
                    p.eval_split.as_deref().unwrap_or("")
                );
            }
            ctx.count("other_split_skipped", skipped);
            (products, rejects, None)
        }
        Source::Fashiongen => {
            let (products, rejects) = fashiongen_products(ctx, p)?;
            (products, rejects, None)
        }
    };
    let limit = p.limit;
    if limit > 0 && products.len() > limit {
        products.truncate(limit);
    }
    let synthetic = synth.map(|(cfg, items)| {
        let by_id = items
            .into_iter()
            .map(|sp| (sp.product_id.clone(), sp))
            .collect();
        (cfg, by_id)
    });
    Ok(Listing {
        products,
        rejects,
        synthetic,
    })
}

/// Whether images are decoded to reject broken ones (our own synthetic ones are not).
fn decodes(p: &IngestParams) -> bool {
    p.check_images && p.source != Source::Synthetic
}

/// One image's check: its content hash, or why it is rejected.
type Check = std::result::Result<String, String>;

/// The part file a shard of `ingest` writes: each of its images' check.
const CHECKS: &str = "checks.parquet";

/// The products of `products` with distinct image ids (the first of each), in product order;
/// only those whose image id hashes to `shard` when one is given.
fn distinct_images(products: &[Product], shard: Option<ShardId>) -> Vec<&Product> {
    let mut seen = HashSet::new();
    products
        .iter()
        .filter(|pr| shard.is_none_or(|s| s.owns(&pr.image_id)))
        .filter(|pr| seen.insert(pr.image_id.as_str()))
        .collect()
}

/// Where a synthetic product's image goes, relative to the entry.
fn synthetic_image(id: &str) -> String {
    format!("images/{id}.png")
}

/// Reads each image of `todo` once (rendering it first, for synthetic products): its content
/// hash (features follow the hash) and, when `decode`, whether it decodes.
fn check_images(
    ctx: &RunContext,
    listing: &Listing,
    decode: bool,
    todo: &[&Product],
) -> Result<HashMap<String, Check>> {
    if listing.synthetic.is_some() {
        let dir = ctx.out("images");
        std::fs::create_dir_all(&dir).at(&dir)?;
    }
    let loader = ImageLoader::new(&ctx.base_dir, ctx.out_dir());
    let bar = Progress::new(todo.len() as u64, "images");
    let checks = todo
        .par_iter()
        .map(|pr| -> Result<(String, Check)> {
            if let Some((cfg, items)) = &listing.synthetic {
                let sp = &items[&pr.image_id];
                let path = ctx.out(&synthetic_image(&pr.image_id));
                synthetic::render(cfg, sp)
                    .save(&path)
                    .map_err(Error::render(&path))?;
            }
            let check = loader
                .fingerprint(&ImageRef::parse(&pr.image), decode)
                .map_err(|e| e.reject_reason());
            bar.inc(1);
            Ok((pr.image_id.clone(), check))
        })
        .collect::<Result<HashMap<_, _>>>()?;
    bar.finish();
    Ok(checks)
}

/// Writes the entry from the listing and every image's check: products whose image failed are
/// rejected with the reason, the rest kept with their images.
fn finish(
    ctx: &mut RunContext,
    listing: Listing,
    checks: &HashMap<String, Check>,
) -> Result<(), StageError> {
    let Listing {
        mut products,
        mut rejects,
        ..
    } = listing;
    let mut seen = HashSet::new();
    let mut images = Vec::new();
    let mut bad_ids = HashSet::new();
    for pr in &products {
        let check = checks
            .get(&pr.image_id)
            .ok_or_else(|| format!("no check of image `{}`", pr.image_id))?;
        match check {
            Ok(blake3) => {
                if seen.insert(pr.image_id.as_str()) {
                    images.push(ImageRow {
                        image_id: pr.image_id.clone(),
                        image: pr.image.clone(),
                        blake3: blake3.clone(),
                    });
                }
            }
            Err(reason) => {
                bad_ids.insert(pr.image_id.clone());
                rejects.push(Reject {
                    line: -1,
                    product_id: pr.product_id.clone(),
                    image: pr.image.clone(),
                    reason: reason.clone(),
                });
            }
        }
    }
    products.retain(|pr| !bad_ids.contains(&pr.image_id));
    if products.is_empty() {
        if rejects.is_empty() {
            return Err(
                "no products: the source holds no data rows (a CSV with only its header?)".into(),
            );
        }
        let first: Vec<String> = rejects
            .iter()
            .take(5)
            .map(|r| {
                let at = if r.line >= 0 {
                    format!("line {}", r.line)
                } else {
                    format!("product {}", r.product_id)
                };
                format!("{at}: {}", r.reason.trim_end())
            })
            .collect();
        return Err(format!(
            "no usable products: all {} rows were rejected; first reasons: {}",
            rejects.len(),
            first.join("; ")
        )
        .into());
    }
    write_products(&products, &ctx.out("products.parquet"))?;
    write_images(&images, &ctx.out("images.parquet"))?;
    write_rejects(&rejects, &ctx.out("rejects.parquet"))?;

    let mut by_reason: std::collections::BTreeMap<&str, u64> = Default::default();
    for r in &rejects {
        *by_reason.entry(reason_kind(&r.reason)).or_default() += 1;
    }
    let train = products.iter().filter(|p| p.split == "train").count() as u64;
    ctx.count("products", products.len() as u64);
    ctx.count("train", train);
    ctx.count("valid", products.len() as u64 - train);
    ctx.count("rejected", rejects.len() as u64);
    for (k, v) in &by_reason {
        tracing::warn!("ingest rejected {v} row(s): {k} (details in rejects.parquet)");
    }
    ctx.note(
        "rejected_by_reason",
        serde_json::to_value(&by_reason).unwrap(),
    );
    Ok(())
}

fn write_checks(path: &Path, checks: &[(&str, &Check)]) -> Result<()> {
    let ids: Vec<&str> = checks.iter().map(|c| c.0).collect();
    let hash: Vec<Option<String>> = checks.iter().map(|c| c.1.clone().ok()).collect();
    let why: Vec<Option<String>> = checks.iter().map(|c| c.1.clone().err()).collect();
    let mut df = table::frame(vec![
        col_str("image_id", &ids),
        col_opt_str("blake3", &hash),
        col_opt_str("reason", &why),
    ])?;
    table::write_parquet(&mut df, path)?;
    Ok(())
}

fn read_checks(path: &Path) -> Result<Vec<(String, Check)>> {
    let df = table::read_parquet(path)?;
    let ids = table::strings(&df, "image_id")?;
    let hash = table::opt_strings(&df, "blake3")?;
    let why = table::opt_strings(&df, "reason")?;
    ids.into_iter()
        .zip(hash.into_iter().zip(why))
        .enumerate()
        .map(|(row, (id, hw))| match hw {
            (Some(h), None) => Ok((id, Ok(h))),
            (None, Some(r)) => Ok((id, Err(r))),
            _ => Err(Error::input(
                path,
                format!("row {row} (image `{id}`): exactly one of blake3 and reason must be set"),
            )),
        })
        .collect()
}

/// A hard link where the file system allows one (parts and entry share the store), else a copy.
fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).at(to)?;
    }
    Ok(())
}

fn reason_kind(reason: &str) -> &str {
    reason.split(':').next().unwrap_or(reason)
}

fn image_root(p: &IngestParams, base: &Path) -> Result<PathBuf, crate::dag::params::ParamError> {
    Ok(match p.image_root.as_deref() {
        Some(r) => crate::dag::stage::resolve_path(base, r),
        None => crate::dag::stage::parent_dir(&crate::dag::stage::resolve_path(
            base,
            required(&p.csv, "csv")?,
        )),
    })
}

/// The generator's products (their images are drawn by [`check_images`]) and what draws them.
fn synthetic_products(
    p: &IngestParams,
) -> (
    Vec<Product>,
    (synthetic::SynthConfig, Vec<synthetic::SynthProduct>),
) {
    let cfg = synthetic::SynthConfig {
        products: p.products,
        seed: p.seed,
        image_size: p.image_size as u32,
        valid_fraction: p.valid_fraction,
    };
    let items = synthetic::products(&cfg);
    let mode = p.text;
    let out = items
        .iter()
        .map(|sp| Product {
            image_id: sp.product_id.clone(),
            product_id: sp.product_id.clone(),
            image: ImageRef::Entry(synthetic_image(&sp.product_id)).to_string(),
            title: sp.title.clone(),
            text: product_text(mode, &sp.title, &sp.description),
            category: sp.category.clone(),
            subcategory: sp.subcategory.clone(),
            split: sp.split.clone(),
            title_key: title_key(&sp.title),
        })
        .collect();
    (out, (cfg, items))
}

/// The artefact store this run writes into, from the layout of its work directory
/// (`<store>/.work/<stage>/<key>`); `None` when the stage runs outside a store.
fn store_root(ctx: &RunContext) -> Option<PathBuf> {
    let dot_work = ctx.work_dir().parent()?.parent()?;
    if dot_work.file_name()? == ".work" {
        dot_work.parent().map(Path::to_path_buf)
    } else {
        None
    }
}

/// Products, rejects, and rows skipped because `eval_split` selects another split.
fn csv_products(ctx: &RunContext, p: &IngestParams) -> Result<(Vec<Product>, Vec<Reject>, u64)> {
    let csv_path = ctx.resolve(required(&p.csv, "csv")?);
    let cols = csvsrc::Columns {
        id: p.id_column.as_str().into(),
        image: p.image_column.as_str().into(),
        title: p.title_column.as_str().into(),
        description: p.description_column.as_str().into(),
        category: p.category_column.as_str().into(),
        subcategory: p.subcategory_column.as_str().into(),
        split: p.split_column.as_str().into(),
    };
    let (rows, bad) = csvsrc::read(&csv_path, &cols)?;
    let groups = match p.groups_csv.as_deref() {
        Some(g) => csvsrc::read_groups(&ctx.resolve(g), &cols.id, p.groups_column.as_str())?,
        None => HashMap::new(),
    };
    let root = image_root(p, &ctx.base_dir)?;
    // Image cells are confined to the image folder; the artefact store is excluded because the
    // cache key's hash of the folder skips it.
    let mut images = ImageRoot::new(&root)
        .map_err(|e| Error::input(&root, format!("the image folder (image_root): {e}")))?;
    if let Some(store) = store_root(ctx) {
        images = images.excluding(&store);
    }
    // Image paths are stored relative to the config directory, so artefacts do not depend on
    // where the checkout lives.
    let root_rel = crate::dag::stage::relative_to(&ctx.base_dir, &root);
    let mode = p.text;
    let seed = p.seed;
    let vf = p.valid_fraction;
    let eval_split = p.eval_split.as_deref();
    if let Some(name) = eval_split {
        if name != "all" && cols.split.is_empty() {
            return Err(Error::msg(format!(
                "eval_split = {name:?} needs a split column; set split_column, or use eval_split = \"all\""
            )));
        }
    }
    let mut skipped = 0u64;

    let mut rejects: Vec<Reject> = bad
        .into_iter()
        .map(|b| Reject {
            line: b.line as i64,
            product_id: String::new(),
            image: String::new(),
            reason: b.reason,
        })
        .collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut products = Vec::with_capacity(rows.len());
    for r in rows {
        let reject = |reason: String| Reject {
            line: r.line as i64,
            product_id: r.product_id.clone(),
            image: r.image.clone(),
            reason,
        };
        let text = product_text(mode, &r.title, &r.description);
        let split = match eval_split {
            Some("all") => Some("valid"),
            Some(name) => {
                if r.split.trim().eq_ignore_ascii_case(name.trim()) {
                    Some("valid")
                } else {
                    skipped += 1;
                    continue;
                }
            }
            None if cols.split.is_empty() => Some(sources::hashed_split(seed, &r.product_id, vf)),
            None => normalize_split(&r.split),
        };
        let problem = if r.product_id.is_empty() {
            Some("missing product_id".to_string())
        } else if let Some(first) = seen.get(&r.product_id) {
            Some(format!("duplicate product_id: first seen at line {first}"))
        } else if r.image.is_empty() {
            Some("missing image: empty image cell".to_string())
        } else if text.is_empty() {
            Some(format!(
                "empty text: no {}",
                mode.as_str().replace('_', " or ")
            ))
        } else if r.category.is_empty() {
            Some("missing category".to_string())
        } else if r.subcategory.is_empty() {
            Some("missing subcategory".to_string())
        } else if split.is_none() {
            Some(format!(
                "unknown split: {:?} (expected train or valid)",
                r.split
            ))
        } else {
            None
        };
        if let Some(reason) = problem {
            rejects.push(reject(reason));
            continue;
        }
        seen.insert(r.product_id.clone(), r.line);
        let image = match csvsrc::image_path(&images, &root_rel, &r.image) {
            Ok(image) => image,
            Err(e) => {
                rejects.push(reject(e.reject_reason()));
                continue;
            }
        };
        let key = match groups.get(&r.product_id) {
            Some(g) => format!("g:{g}"),
            None => title_key(&r.title),
        };
        products.push(Product {
            image_id: r.product_id.clone(),
            product_id: r.product_id,
            image: ImageRef::File(image).to_string(),
            title: normalize_text(&r.title),
            text,
            category: r.category,
            subcategory: r.subcategory,
            split: split.unwrap().to_string(),
            title_key: key,
        });
    }
    Ok((products, rejects, skipped))
}

fn fashiongen_products(ctx: &RunContext, p: &IngestParams) -> Result<(Vec<Product>, Vec<Reject>)> {
    let mut files = vec![("train", required(&p.train_h5, "train_h5")?.to_string())];
    if let Some(v) = p.valid_h5.as_deref() {
        files.push(("valid", v.to_string()));
    }
    let mode = p.text;
    let mut products = Vec::new();
    let mut rejects = Vec::new();
    let mut seen_images = HashSet::new();
    for (split, file) in files {
        let path = ctx.resolve(&file);
        let rows = fashiongen::read_rows(&path)?;
        tracing::info!("{}: {} images", path.display(), rows.len());
        let rel = crate::dag::stage::relative_to(&ctx.base_dir, &path);
        for r in rows {
            let image = ImageRef::Hdf5 {
                file: rel.clone(),
                row: r.row,
            }
            .to_string();
            let text = product_text(mode, &r.name, &r.description);
            let problem = if r.product_id.is_empty() {
                Some("missing product_id")
            } else if text.is_empty() {
                Some("empty text")
            } else if r.category.is_empty() {
                Some("missing category")
            } else if r.subcategory.is_empty() {
                Some("missing subcategory")
            } else {
                None
            };
            if let Some(reason) = problem {
                rejects.push(Reject {
                    line: r.row as i64,
                    product_id: r.product_id.clone(),
                    image,
                    reason: reason.to_string(),
                });
                continue;
            }
            // One row per image: several poses of a product share its id and text.
            let mut image_id = if r.pose.is_empty() {
                format!("{}_{}", r.product_id, r.row)
            } else {
                format!("{}_{}", r.product_id, r.pose)
            };
            if !seen_images.insert(format!("{split}/{image_id}")) {
                image_id = format!("{}_{}_{}", r.product_id, r.pose, r.row);
            }
            products.push(Product {
                image_id: format!("{split}:{image_id}"),
                product_id: r.product_id.clone(),
                image,
                title: normalize_text(&r.name),
                text,
                category: r.category,
                subcategory: r.subcategory,
                split: split.to_string(),
                title_key: if r.name.is_empty() {
                    format!("p:{}", r.product_id)
                } else {
                    title_key(&r.name)
                },
            });
        }
    }
    Ok((products, rejects))
}
