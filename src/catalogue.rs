//! `fashionbert evaluate --model DIR --csv FILE`: a trained model on another catalogue.
//!
//! The catalogue goes through the same stages as in a pipeline — `ingest` (same rules and
//! rejects), `pairs`, `negatives`, `tokenize`, `patches`, `features` — run by the DAG runner in a
//! store under `--out/.store`, with the params recorded in the model's `recipe.json` (text
//! mode, tokenizer, patch grid, feature extractor and its weights), so the model sees inputs
//! made exactly as its training inputs were. Then the `evaluate` stage's own code builds the
//! 1 + `negatives` same-subcategory eval sets in both directions and writes `metrics.json`,
//! `ranks.parquet`, `report.md` (and the rest of the stage's outputs) into `--out`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::dag::{DagError, ParamValue, Params, PipelineConfig, RunOptions, Runner, StageParams};
use crate::error::{Error, IoContext, Result};

/// What to evaluate, and how.
#[derive(Debug, Clone)]
pub struct CatalogueArgs {
    /// A trained model folder (a `train` entry: model.safetensors, config.json, recipe.json).
    pub model: PathBuf,
    pub csv: PathBuf,
    /// The folder the CSV's image column is relative to (default: the CSV's folder).
    pub images: Option<PathBuf>,
    /// Rows of this split are the eval pool (`all` = every row).
    pub split: String,
    /// The CSV's split column (empty: none, only with `split = all`).
    pub split_column: String,
    /// An optional same-title groups CSV (as `ingest.groups_csv`).
    pub groups: Option<PathBuf>,
    /// `evaluate` params given on the command line (queries, negatives, score, …).
    pub eval_params: Vec<(String, ParamValue)>,
    pub device: String,
    /// CPU threads (0 = all cores), as `[runtime] threads`.
    pub threads: usize,
    pub out: PathBuf,
}

/// The score `fashionbert evaluate --model DIR` ranks by when not told, and why: the score
/// of the newest `evaluate` entry built on this model in its own store (`DIR` is a `train`
/// entry, `<store>/train/<key>`), else `itc` for a model with a contrastive head (its
/// `config.json` has `itc_dim > 0`), else `itm`.
pub fn default_score(model: &Path) -> (String, String) {
    let own = (|| {
        let m = crate::dag::Manifest::read(model).ok()?;
        let evals = model.parent()?.parent()?.join("evaluate");
        let mut found: Vec<(String, String, String)> = Vec::new();
        for e in std::fs::read_dir(&evals).ok()?.flatten() {
            let Ok(em) = crate::dag::Manifest::read(&e.path()) else {
                continue;
            };
            if em.upstream.get("train") == Some(&m.key) {
                if let Ok(s) = em.params.str("score") {
                    found.push((em.finished_at.clone(), s.to_string(), em.key.clone()));
                }
            }
        }
        found.into_iter().max()
    })();
    if let Some((_, score, key)) = own {
        return (
            score,
            format!(
                "the score this model's pipeline evaluated it with, evaluate/{}",
                &key[..key.len().min(12)]
            ),
        );
    }
    let itc_dim = crate::models::io::read_config(model)
        .map(|c| c.itc_dim)
        .unwrap_or(0);
    if itc_dim > 0 {
        ("itc".into(), "the model has a contrastive head".into())
    } else {
        ("itm".into(), "the model has no contrastive head".into())
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).at(p)
}

fn toml_value(v: &serde_json::Value) -> Result<String> {
    Ok(match v {
        serde_json::Value::String(s) => serde_json::to_string(s).unwrap(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => {
            let s = n.to_string();
            // TOML needs a dot or exponent to read a float back as one.
            if n.is_f64() && !s.contains(['.', 'e', 'E']) {
                format!("{s}.0")
            } else {
                s
            }
        }
        serde_json::Value::Array(a) => {
            let items: Vec<String> = a.iter().map(toml_value).collect::<Result<_>>()?;
            format!("[{}]", items.join(", "))
        }
        other => return Err(Error::msg(format!("recipe: unexpected value {other}"))),
    })
}

fn params_toml(stage: &str, params: &serde_json::Value) -> Result<String> {
    let mut s = format!("\n[stages.{stage}.params]\n");
    if let Some(map) = params.as_object() {
        for (k, v) in map {
            s.push_str(&format!("{k} = {}\n", toml_value(v)?));
        }
    }
    Ok(s)
}

/// The pipeline that prepares the catalogue as the model's recipe says.
fn pipeline_toml(a: &CatalogueArgs, recipe: &serde_json::Value) -> Result<String> {
    let csv = absolute(&a.csv)?;
    let images = match &a.images {
        Some(i) => absolute(i)?,
        None => crate::dag::stage::parent_dir(&csv),
    };
    let mut ingest = serde_json::json!({
        "source": "csv",
        "csv": csv.to_string_lossy(),
        "image_root": images.to_string_lossy(),
        "text": recipe["ingest"]["text"].as_str().unwrap_or("title_description"),
        "split_column": a.split_column,
        "eval_split": a.split,
    });
    if let Some(g) = &a.groups {
        ingest["groups_csv"] = serde_json::json!(absolute(g)?.to_string_lossy());
    }
    let mut s = format!(
        "# Generated by `fashionbert evaluate --model {:?} --csv {:?}`: the catalogue prepared as the model's recipe.json says.\n\
         [runtime]\nartifacts = \".store\"\ndevice = {}\nthreads = {}\n\n[stages.ingest]",
        // Quoted and escaped: a newline in a path stays inside the comment.
        a.model,
        a.csv,
        serde_json::to_string(&a.device).unwrap(),
        a.threads
    );
    s.push_str(&params_toml("ingest", &ingest)?);
    s.push_str("\n[stages.pairs]\ndeps = [\"ingest\"]\n");
    s.push_str("\n[stages.negatives]\ndeps = [\"ingest\", \"pairs\"]\n");
    s.push_str("\n[stages.tokenize]\ndeps = [\"ingest\", \"pairs\", \"negatives\"]");
    s.push_str(&params_toml("tokenize", &recipe["tokenize"])?);
    s.push_str("\n[stages.patches]\ndeps = [\"pairs\", \"negatives\"]");
    s.push_str(&params_toml("patches", &recipe["patches"])?);
    s.push_str("\n[stages.features]\ndeps = [\"ingest\", \"patches\"]");
    s.push_str(&params_toml("features", &recipe["features"])?);
    Ok(s)
}

/// The CSV has the split column `--split-column` names and rows of `--split`: an error in
/// this command's own flags otherwise (before any stage runs).
fn check_split(a: &CatalogueArgs) -> Result<()> {
    if a.split == "all" && a.split_column.is_empty() {
        return Ok(());
    }
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(&a.csv)
        .map_err(|e| Error::input(&a.csv, format!("cannot open the products CSV: {e}")))?;
    let headers = rdr
        .headers()
        .map_err(|e| Error::input(&a.csv, format!("cannot read the CSV header: {e}")))?
        .clone();
    let Some(col) = headers.iter().position(|h| h.trim() == a.split_column) else {
        return Err(Error::input(
            &a.csv,
            format!(
                "no column `{}` for the split (the header has: {}): name it with --split-column, or evaluate every row with --split all --split-column ''",
                a.split_column,
                headers.iter().collect::<Vec<_>>().join(", ")
            ),
        ));
    };
    if a.split == "all" {
        return Ok(());
    }
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for rec in rdr.records().flatten() {
        if let Some(v) = rec.get(col) {
            *seen.entry(v.trim().to_string()).or_default() += 1;
        }
    }
    if !seen.contains_key(&a.split) {
        return Err(Error::input(
            &a.csv,
            format!(
                "no row has {} = `{}` ({}): choose a split with --split, or --split all",
                a.split_column,
                a.split,
                if seen.is_empty() {
                    "the CSV has no data rows".to_string()
                } else {
                    format!(
                        "its values: {}",
                        seen.iter()
                            .map(|(k, n)| format!("`{k}` ({n} rows)"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ),
        ));
    }
    Ok(())
}

/// The `evaluate` params given as flags, checked against the stage's specs and ranges before
/// anything runs (`--queries 0` is refused as `--set evaluate.queries=0` is).
fn check_eval_params(a: &CatalogueArgs) -> Result<()> {
    let spec = &crate::stages::evaluate::SPEC;
    let given: BTreeMap<String, ParamValue> = a.eval_params.iter().cloned().collect();
    for (k, v) in &given {
        let Some(ps) = spec.params.iter().find(|p| p.name == k) else {
            return Err(Error::msg(format!("evaluate has no param `{k}`")));
        };
        // The flags share the `evaluate` stage's ranges (`--queries 0` is refused as
        // `--set evaluate.queries=0` is).
        let raw = match v {
            ParamValue::Int(i) => crate::dag::params::RawValue::Int(*i),
            ParamValue::Float(f) => crate::dag::params::RawValue::Float(*f),
            ParamValue::Bool(b) => crate::dag::params::RawValue::Bool(*b),
            ParamValue::Str(t) => crate::dag::params::RawValue::Str(t.clone()),
            ParamValue::StrList(l) => crate::dag::params::RawValue::List(
                l.iter()
                    .map(|t| crate::dag::params::RawValue::Str(t.clone()))
                    .collect(),
            ),
        };
        crate::dag::params::check_value(ps, &raw).map_err(|e| {
            Error::msg(format!(
                "--{}: {e} (as the evaluate stage's `{k}`)",
                k.replace('_', "-")
            ))
        })?;
    }
    Ok(())
}

/// A catalogue prepared as a model's recipe says: its products, tokenised texts and features.
pub struct Prepared {
    pub products: Vec<crate::sources::Product>,
    pub texts: crate::eval::scoring::Texts,
    pub feats: crate::featstore::Store,
    pub compute: crate::device::Compute,
}

/// Runs ingest, tokenize and features over `--csv` (and its images) as the model's
/// `recipe.json` says, in `--out/.store`.
pub fn prepare(a: &CatalogueArgs) -> Result<Prepared> {
    let recipe_path = a.model.join("recipe.json");
    if !recipe_path.exists() {
        // A stage folder (`artifacts/train`) rather than one of its entries: name them.
        let mut entries: Vec<String> = std::fs::read_dir(&a.model)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.path().join("recipe.json").is_file())
                    .map(|e| a.model.join(e.file_name()).display().to_string())
                    .collect()
            })
            .unwrap_or_default();
        entries.sort();
        if !entries.is_empty() {
            return Err(Error::input(
                &a.model,
                format!(
                    "a stage folder, not a model: give --model one of its entries: {}",
                    entries.join(", ")
                ),
            ));
        }
    }
    check_split(a)?;
    let recipe: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&recipe_path).map_err(|e| {
            Error::input(
                &recipe_path,
                format!(
                    "{e}: the model folder must be a `train` entry with recipe.json (models trained before it was written: re-run `train`)"
                ),
            )
        })?,
    )
    .map_err(|e| Error::input(&recipe_path, e.to_string()))?;
    crate::error::create_out_dir(&a.out)?;
    let cfg_file = a.out.join(".pipeline.toml");
    std::fs::write(&cfg_file, pipeline_toml(a, &recipe)?).at(&cfg_file)?;

    let registry = crate::stages::registry();
    let config = PipelineConfig::load(&cfg_file, &registry).map_err(DagError::from)?;
    let runner = Runner::new(&registry, &config)?;
    runner.run(
        &["tokenize".to_string(), "features".to_string()],
        &RunOptions::default(),
    )?;
    let store = runner.store();
    let latest = |stage: &str| -> Result<PathBuf> {
        store
            .latest(stage)
            .map(|k| store.entry_dir(stage, &k))
            .ok_or_else(|| Error::msg(format!("no `{stage}` entry after the run")))
    };
    let products = crate::schema::read_products(&latest("ingest")?.join("products.parquet"))?;
    let texts = crate::eval::scoring::Texts::read(&latest("tokenize")?.join("texts.parquet"))?;
    let feats = crate::featstore::Store::open(&latest("features")?)?;
    let compute = crate::device::select(&a.device, a.threads)?;

    Ok(Prepared {
        products,
        texts,
        feats,
        compute,
    })
}

/// Runs the evaluation; returns the metrics written to `out/metrics.json`.
pub fn evaluate_catalogue(a: &CatalogueArgs) -> Result<serde_json::Value> {
    check_eval_params(a)?;
    let Prepared {
        products,
        texts,
        feats,
        compute,
    } = prepare(a)?;
    let given: BTreeMap<String, ParamValue> = a.eval_params.iter().cloned().collect();
    let spec = &crate::stages::evaluate::SPEC;
    let p = crate::stages::evaluate::EvaluateParams::from_params(&Params::with_defaults(
        spec.params,
        given,
    ))?;
    crate::stages::evaluate::evaluate_into(
        &a.out, &a.model, &products, &texts, &feats, &compute, &p,
    )?;
    let m = a.out.join("metrics.json");
    serde_json::from_str(&std::fs::read_to_string(&m).at(&m)?)
        .map_err(|e| Error::input(&m, e.to_string()))
}

/// `fashionbert embed --model … --csv …`: the ITC embeddings of a catalogue the pipeline never
/// saw (prepared as the model's recipe says), written to `--out` as the `embed` stage writes
/// them (items.parquet, image.npy, text.npy, meta.json).
pub fn embed_catalogue(
    a: &CatalogueArgs,
    dtype: crate::schema::embeddings::Dtype,
    batch_size: usize,
) -> Result<crate::schema::embeddings::Embeddings> {
    let p = prepare(a)?;
    // Ingest kept only the rows of `--split` (every row with `all`).
    let keep = |_: &crate::sources::Product| true;
    let (model, _) = crate::models::io::load(&a.model, &p.compute.device)?;
    let e = crate::stages::embed::embed_products(
        &p.products,
        &p.texts,
        &p.feats,
        &model,
        &p.compute.device,
        &keep,
        batch_size,
        a.model.display().to_string(),
    )?;
    e.write(&a.out, dtype)?;
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 31: a newline (or quote) in a `--csv` path stays inside the generated config's
    /// comment and string, which reads back with the path as given.
    #[test]
    fn odd_paths_keep_the_generated_config_valid() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("a\nb \"c\"/products.csv");
        let a = CatalogueArgs {
            model: dir.path().join("model\n[runtime]"),
            csv: csv.clone(),
            images: None,
            split: "valid".into(),
            split_column: "split".into(),
            groups: None,
            eval_params: Vec::new(),
            device: "flex".into(),
            threads: 1,
            out: dir.path().join("out"),
        };
        let text = pipeline_toml(&a, &serde_json::json!({"ingest": {}})).unwrap();
        let v: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(
            v["stages"]["ingest"]["params"]["csv"].as_str().unwrap(),
            csv.to_str().unwrap()
        );
        assert_eq!(v["runtime"]["artifacts"].as_str(), Some(".store"));
    }
}
