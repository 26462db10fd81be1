//! `evaluate`: image→text and text→image retrieval on the valid split, as the guide describes
//! (each query product: its ground truth plus up to 100 other products of its subcategory,
//! ranked by the alignment score), with corrected metrics and the original's figures.
//!
//! Eval-set construction: `queries` valid products (all if fewer), drawn with `seed`; for each,
//! `negatives` other valid products of the same subcategory, never the same product or one with
//! the same title. Where the subcategory has too few, the set is filled from the same category,
//! then from the whole split (`fill = "category_then_split"`, counted in the manifest), so every
//! query keeps 1 + `negatives` candidates; `fill = "none"` keeps the smaller set instead.
//! Records are not masked. Each product is represented by its first image.

use std::fmt::Write as _;

use crate::dag::params::Choice;
use crate::dag::{
    Input, ParamDefault as D, ParamKind as K, RunContext, ShardId, Stage, StageError, StageSpec,
};
use crate::error::IoContext;
use crate::eval::breakdown;
use crate::eval::metrics::{self, Metrics};
use crate::eval::predfile;
use crate::eval::report::{self, Series};
use crate::eval::scoring::{
    ItcEmbeddings, PairScores, ScoreKind, ScoreName, Scored, Texts, check_layout,
};
use crate::eval::sets::{EvalSet, build_sets};
use crate::featstore;
use crate::models::io;
use crate::sources::Product;
use crate::table::{self, col_bool, col_f32, col_f64, col_i64, col_str};

use crate::schema::read_products;

crate::param_choice! {
    /// Where a query's subcategory has too few other products (`fill`).
    pub enum Fill {
        /// Draw the rest from its category, then from the whole split.
        CategoryThenSplit = "category_then_split",
        /// Keep the smaller candidate set.
        NoFill = "none",
    }
}

crate::stage_params! {
    /// The params of `evaluate`.
    pub struct EvaluateParams {
        queries: usize = (
            K::Int,
            D::Int(1000),
            "query products from the valid split (all if fewer)",
        )
        .min(1.0);
        negatives: usize = (K::Int, D::Int(100), "negatives per query (101 candidates)").min(1.0);
        fill: Fill = (
            K::Choice(Fill::CHOICES),
            D::Str("category_then_split"),
            "where a subcategory is too small",
        );
        seed: u64 = (K::Int, D::Int(19), "eval-set seed").min(0.0);
        score: ScoreName = (
            K::Choice(ScoreName::CHOICES),
            D::Str("itm"),
            "rank by the alignment head (the original), the contrastive similarity, or ITC then the alignment head re-ranking the top `rerank_k`",
        );
        rerank_k: usize = (
            K::Int,
            D::Int(16),
            "itc_then_itm: candidates per query the alignment head re-ranks",
        )
        .min(1.0);
        batch_size: usize = (K::Int, D::Int(256), "pairs per scoring batch").min(1.0);
        probe_products: usize = (
            K::Int,
            D::Int(1500),
            "train products the linear probe baseline is fitted on (0 = no probe)",
        )
        .min(0.0);
        probe_ridge: f64 = (
            K::Float,
            D::Float(1.0),
            "the probe's ridge λ, relative to the mean squared norm of its image vectors",
        )
        .min(1e-12);
        compat_batch: usize = (
            K::Int,
            D::Int(64),
            "batch size of the original's prediction files (its grouping bug depends on it)",
        )
        .min(1.0);
        gallery: usize = (
            K::Int,
            D::Int(20000),
            "full-gallery Rank@K (each query against every valid product, scores itc / itc_then_itm's itc) where the valid products number at most this; 0 = off",
        )
        .min(0.0);
    }
}

pub const SPEC: StageSpec = StageSpec {
    name: "evaluate",
    version: 2,
    about: "img2txt / txt2img retrieval: Rank@1/5/10/100, MRR, ACC, AUC (+ the original's figures)",
    inputs: &[
        Input::all("ingest"),
        Input::files("tokenize", &["texts.parquet"]),
        Input::all("features"),
        Input::all("train"),
    ],
    params: EvaluateParams::SPECS,
    outputs: &[
        "metrics.json",
        "pairs.parquet",
        "ranks.parquet",
        "report.md",
        "rank_at_k.png",
        "train_loss.png",
        "predictions_img2txt.txt",
        "predictions_txt2img.txt",
    ],
};

pub struct Evaluate;

impl Stage for Evaluate {
    fn spec(&self) -> &'static StageSpec {
        &SPEC
    }

    fn run(&self, ctx: &mut RunContext) -> Result<(), StageError> {
        let i = Inputs::read(ctx)?;
        let compute = crate::device::from_runtime(ctx.runtime())?;
        let (pairs, filled) = evaluate_into(
            ctx.out_dir(),
            &i.model_dir,
            &i.products,
            &i.texts,
            &i.store,
            &compute,
            &i.p,
        )?;
        ctx.count("pairs", pairs);
        ctx.count("negatives_from_fallback", filled);
        Ok(())
    }

    fn shardable(&self) -> bool {
        true
    }

    /// Runs the model on the scoring batches whose first key hashes to this shard (the batches
    /// an unsharded run forms: every logit and encoding comes out bit for bit the same) and
    /// writes them as a part; the eval sets are drawn whole by every shard (cheap, seeded).
    fn run_shard(&self, ctx: &mut RunContext, shard: ShardId) -> Result<(), StageError> {
        let i = Inputs::read(ctx)?;
        let compute = crate::device::from_runtime(ctx.runtime())?;
        let (model, cfg) = io::load(&i.model_dir, &compute.device)?;
        check_layout(&cfg, i.texts.t, &i.store)?;
        let es = EvalSets::build(&i.products, &i.store, &i.p)?;
        let scored = Scored::compute(
            &model,
            &compute,
            &i.texts,
            &i.store,
            &es.sets,
            &es.gallery,
            i.p.score_kind(),
            i.p.batch_size,
            Some(shard),
        )?;
        scored.write(ctx.out_dir())?;
        ctx.count("pairs_scored", scored.itm.len() as u64);
        if let Some(e) = &scored.itc {
            ctx.count("itc_encodings", (e.text.len() + e.image.len()) as u64);
        }
        Ok(())
    }

    /// Joins the parts' scores and writes every output from them, as `run` does, without
    /// running the model (the linear probe, which needs no model, is fitted here).
    fn merge(&self, ctx: &mut RunContext, parts: &[std::path::PathBuf]) -> Result<(), StageError> {
        let i = Inputs::read(ctx)?;
        let es = EvalSets::build(&i.products, &i.store, &i.p)?;
        let scored = Scored::join(
            parts
                .iter()
                .map(|d| Scored::read(d))
                .collect::<crate::Result<Vec<_>>>()?,
        )?;
        let set_scores = scored.assemble(&es.sets, i.p.score_kind())?;
        let pairs = write_outputs(
            ctx.out_dir(),
            &i.model_dir,
            &i.products,
            &i.texts,
            &i.store,
            &i.p,
            &es,
            &set_scores,
            scored.itc.as_ref(),
        )?;
        ctx.count("pairs", pairs);
        ctx.count("negatives_from_fallback", es.filled);
        ctx.note("merged_parts", serde_json::json!(parts.len()));
        Ok(())
    }
}

impl EvaluateParams {
    /// How candidates are ranked (`score`, and `rerank_k` where it re-ranks).
    pub fn score_kind(&self) -> ScoreKind {
        ScoreKind::new(self.score, self.rerank_k)
    }
}

/// What the stage reads, whether it runs whole, as a shard or as the merge.
struct Inputs {
    p: EvaluateParams,
    products: Vec<Product>,
    texts: Texts,
    store: featstore::Store,
    model_dir: std::path::PathBuf,
}

impl Inputs {
    fn read(ctx: &RunContext) -> Result<Inputs, StageError> {
        Ok(Inputs {
            p: ctx.typed_params()?,
            products: read_products(&ctx.input("ingest", "products.parquet")?)?,
            texts: Texts::read(&ctx.input("tokenize", "texts.parquet")?)?,
            store: featstore::Store::open(ctx.input_dir("features")?)?,
            model_dir: ctx.input_dir("train")?.to_path_buf(),
        })
    }
}

/// The eval sets of a run: one per direction, and how many negatives came from a fallback
/// pool and how many queries are short of negatives.
pub struct EvalSets {
    pub sets: Vec<EvalSet>,
    pub filled: u64,
    pub short: u64,
    /// `(image_id, product_id)` of every valid product with features, where a full-gallery
    /// Rank@K is asked (`gallery`) and the score has ITC encodings; empty otherwise.
    pub gallery: Vec<(String, String)>,
}

impl EvalSets {
    /// Draws the eval sets `p` describes from the valid products with features; none is an
    /// error (there would be nothing to measure).
    pub fn build(
        products: &[Product],
        store: &featstore::Store,
        p: &EvaluateParams,
    ) -> crate::Result<EvalSets> {
        let (sets, filled, short) = build_sets(
            products,
            &|id| store.contains(id),
            p.queries,
            p.negatives,
            p.fill == Fill::CategoryThenSplit,
            p.seed,
        );
        if sets.iter().any(|s| s.rows.is_empty()) {
            let valid = products.iter().filter(|q| q.split == "valid").count();
            return Err(crate::Error::msg(format!(
                "evaluate: no query: {valid} product(s) are in the valid split and none of them has features{}; give the catalogue valid rows (ingest.split_column, ingest.valid_fraction or ingest.eval_split)",
                if valid == 0 { " (there are none)" } else { "" }
            )));
        }
        let gallery = if p.score_kind() != ScoreKind::Itm && p.gallery > 0 {
            let pool = breakdown::gallery(products, &|id| store.contains(id));
            if pool.products.len() <= p.gallery {
                pool.products
                    .iter()
                    .map(|q| (q.image_id.clone(), q.product_id.clone()))
                    .collect()
            } else {
                Vec::new()
            }
        } else {
            Vec::new()
        };
        Ok(EvalSets {
            sets,
            filled,
            short,
            gallery,
        })
    }
}

/// Evaluates the model in `model_dir` (a `train` entry) on the valid products of `products`:
/// builds the eval sets, scores them as `p` says, and writes every output of the stage into
/// `out_dir`. Returns the scored pairs and the negatives drawn from a fallback pool. Shared by
/// the stage and `fashionbert evaluate --model … --csv …`.
pub fn evaluate_into(
    out_dir: &std::path::Path,
    model_dir: &std::path::Path,
    products: &[Product],
    texts: &Texts,
    store: &featstore::Store,
    compute: &crate::device::Compute,
    p: &EvaluateParams,
) -> crate::Result<(u64, u64)> {
    let (model, cfg) = io::load(model_dir, &compute.device)?;
    check_layout(&cfg, texts.t, store)?;
    let es = EvalSets::build(products, store, p)?;
    let kind = p.score_kind();
    let scored = Scored::compute(
        &model,
        compute,
        texts,
        store,
        &es.sets,
        &es.gallery,
        kind,
        p.batch_size,
        None,
    )?;
    let set_scores = scored.assemble(&es.sets, kind)?;
    let pairs = write_outputs(
        out_dir,
        model_dir,
        products,
        texts,
        store,
        p,
        &es,
        &set_scores,
        scored.itc.as_ref(),
    )?;
    Ok((pairs, es.filled))
}

/// Writes every output of the stage into `out_dir` from the sets' scores: metrics, pair and
/// rank tables, prediction files, plots and the report. Returns the pairs written.
#[allow(clippy::too_many_arguments)]
fn write_outputs(
    out_dir: &std::path::Path,
    model_dir: &std::path::Path,
    products: &[Product],
    texts: &Texts,
    store: &featstore::Store,
    p: &EvaluateParams,
    es: &EvalSets,
    set_scores: &[PairScores],
    itc: Option<&ItcEmbeddings>,
) -> crate::Result<u64> {
    let out = |name: &str| out_dir.join(name);
    let (sets, filled, short) = (&es.sets, es.filled, es.short);
    let kind = p.score_kind();
    let probe_metrics = run_probe(p, products, texts, store, sets)?;

    let compat_batch = p.compat_batch;
    let mut all_metrics = serde_json::Map::new();
    let mut rank_rows: Vec<(String, metrics::QueryRank)> = Vec::new();
    let mut pair_cols: (
        Vec<String>,
        Vec<String>,
        Vec<String>,
        Vec<String>,
        Vec<bool>,
        Vec<f32>,
        Vec<f32>,
    ) = Default::default();
    let mut curves = Vec::new();
    let mut table_md = String::new();
    // The harder views (see `eval::breakdown`), and each rank row's subcategory and whether all
    // its candidates share it.
    let (mut same, mut by_sub, mut gallery) = (Vec::new(), Vec::new(), Vec::new());
    let mut rank_info: Vec<(String, bool)> = Vec::new();
    // The gallery's pool, where a gallery was asked and encoded.
    let gallery_of = itc
        .filter(|_| !es.gallery.is_empty())
        .map(|emb| (emb, breakdown::gallery(products, &|id| store.contains(id))));
    for (set, scores) in sets.iter().zip(set_scores) {
        let scored = set.scored(|img, txt| scores[&(img.to_string(), txt.to_string())]);
        let m = metrics::compute(&scored, compat_batch);
        let ranks = metrics::rank_queries(&scored);
        let info = breakdown::query_info(set, products)?;
        same.push((set.direction, breakdown::same_subcategory(&ranks, &info)));
        by_sub.push((set.direction, breakdown::by_subcategory(&ranks, &info)));
        if let Some((emb, pool)) = &gallery_of {
            let queries: Vec<&str> = ranks.iter().map(|r| r.query.as_str()).collect();
            let g = breakdown::gallery_ranks(set.direction, &queries, pool, emb)?;
            gallery.push((set.direction, breakdown::Summary::of(&g)));
        }
        curves.push((set.direction, ranks.clone()));
        for r in ranks {
            let i = &info[&r.query];
            rank_info.push((i.subcategory.clone(), i.same_subcategory));
            rank_rows.push((set.direction.to_string(), r));
        }
        for ((q, img, txt, label), s) in set.rows.iter().zip(&scored) {
            pair_cols.0.push(set.direction.to_string());
            pair_cols.1.push(q.clone());
            pair_cols.2.push(img.clone());
            pair_cols.3.push(txt.clone());
            pair_cols.4.push(*label);
            pair_cols.5.push(s.logits[0]);
            pair_cols.6.push(s.logits[1]);
        }
        let file = out(&format!("predictions_{}.txt", set.direction));
        predfile::write(&file, set, scores, compat_batch)?;
        let _ = writeln!(table_md, "{}", report::metrics_row(set.direction, &m));
        all_metrics.insert(set.direction.to_string(), serde_json::to_value(&m).unwrap());
    }
    all_metrics.insert(
        "eval_set".into(),
        serde_json::json!({
            "queries_requested": p.queries,
            "negatives": p.negatives,
            "fill": p.fill.as_str(),
            "negatives_from_fallback": filled,
            "queries_short_of_negatives": short,
            "score": kind.describe(),
            "ties": "expected rank under uniform random tie-breaking",
        }),
    );
    all_metrics.insert("same_subcategory".into(), by_direction(&same));
    if !gallery.is_empty() {
        let mut g = by_direction(&gallery);
        g["products"] = serde_json::json!(es.gallery.len());
        all_metrics.insert("gallery".into(), g);
    }
    all_metrics.insert("by_subcategory".into(), by_direction(&by_sub));
    let views_md = breakdown::markdown(&same, &gallery, es.gallery.len(), &by_sub);
    let mut probe_md = String::new();
    if let Some((pm, n)) = &probe_metrics {
        let mut o = serde_json::Map::new();
        for (dir, m) in pm {
            let _ = writeln!(
                probe_md,
                "{}",
                report::metrics_row(&format!("{dir} (probe)"), m)
            );
            o.insert(dir.to_string(), serde_json::to_value(m).unwrap());
        }
        o.insert("fit_products".into(), serde_json::json!(n));
        o.insert("ridge".into(), serde_json::json!(p.probe_ridge));
        all_metrics.insert("probe".into(), serde_json::Value::Object(o));
    }
    std::fs::write(
        out("metrics.json"),
        serde_json::to_string_pretty(&all_metrics).unwrap(),
    )
    .at(&out("metrics.json"))?;

    let n = pair_cols.0.len();
    let mut df = table::frame(vec![
        col_str("direction", &pair_cols.0),
        col_str("query", &pair_cols.1),
        col_str("image_id", &pair_cols.2),
        col_str("text_product_id", &pair_cols.3),
        col_bool("label", &pair_cols.4),
        col_f32("logit0", &pair_cols.5),
        col_f32("logit1", &pair_cols.6),
    ])?;
    table::write_parquet(&mut df, &out("pairs.parquet"))?;
    let mut df = table::frame(vec![
        col_str(
            "direction",
            &rank_rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ),
        col_str(
            "query",
            &rank_rows
                .iter()
                .map(|r| r.1.query.as_str())
                .collect::<Vec<_>>(),
        ),
        col_i64(
            "candidates",
            &rank_rows
                .iter()
                .map(|r| r.1.candidates as i64)
                .collect::<Vec<_>>(),
        ),
        col_i64(
            "higher",
            &rank_rows
                .iter()
                .map(|r| r.1.higher as i64)
                .collect::<Vec<_>>(),
        ),
        col_i64(
            "ties",
            &rank_rows
                .iter()
                .map(|r| r.1.ties as i64)
                .collect::<Vec<_>>(),
        ),
        col_f64(
            "rank",
            &rank_rows.iter().map(|r| r.1.rank).collect::<Vec<_>>(),
        ),
        col_f64(
            "reciprocal_rank",
            &rank_rows.iter().map(|r| r.1.rr).collect::<Vec<_>>(),
        ),
        col_str(
            "subcategory",
            &rank_info.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ),
        col_bool(
            "same_subcategory",
            &rank_info.iter().map(|r| r.1).collect::<Vec<_>>(),
        ),
    ])?;
    table::write_parquet(&mut df, &out("ranks.parquet"))?;

    // Plots and report.
    let kmax = curves
        .iter()
        .flat_map(|(_, r)| r.iter().map(|q| q.candidates))
        .max()
        .unwrap_or(101);
    let mut series: Vec<Series> = curves
        .iter()
        .zip([report::BLUE_, report::ORANGE])
        .map(|((dir, ranks), color)| Series {
            name: dir,
            points: (1..=kmax)
                .map(|k| {
                    let v = ranks
                        .iter()
                        .map(|r| metrics::hit_at(k, r.higher, r.ties))
                        .sum::<f64>()
                        / ranks.len().max(1) as f64;
                    (k as f64, v)
                })
                .collect(),
            color,
        })
        .collect();
    // The probe's Rank@K at the K it reports, beside the model's curves.
    if let Some((pm, _)) = &probe_metrics {
        for ((dir, m), color) in pm.iter().zip([report::LIGHT_BLUE, report::LIGHT_ORANGE]) {
            let at = |k: usize| k.min(kmax) as f64;
            series.push(Series {
                name: if *dir == "img2txt" {
                    "img2txt (probe)"
                } else {
                    "txt2img (probe)"
                },
                points: vec![
                    (at(1), m.scores.rank1),
                    (at(5), m.scores.rank5),
                    (at(10), m.scores.rank10),
                    (at(100), m.scores.rank100),
                ],
                color,
            });
        }
    }
    series.push(Series {
        name: "chance",
        points: (1..=kmax)
            .map(|k| (k as f64, k as f64 / kmax as f64))
            .collect(),
        color: report::GREY,
    });
    report::line_chart(
        &out("rank_at_k.png"),
        "Rank@K on the valid split (corrected)",
        "K",
        "Rank@K",
        &series,
        Some((0.0, 1.0)),
    )?;

    let log = table::read_parquet(&model_dir.join("train_log.parquet"))?;
    let steps = table::i64s(&log, "step")?;
    let w = (steps.len() / 50).max(1);
    let loss_series: Vec<Series> = [
        ("loss_mlm", report::BLUE_),
        ("loss_tia", report::ORANGE),
        ("loss_mpm", report::GREEN_),
        ("loss_itc", report::PURPLE),
    ]
    .into_iter()
    // A loss the recipe does not train (all zeros; e.g. the joint pass's with `joint = false`)
    // is left out.
    .filter(|(c, _)| table::f32s(&log, c).is_ok_and(|v| v.iter().any(|&x| x != 0.0)))
    .map(|(c, color)| -> crate::Result<Series> {
        let v = table::f32s(&log, c)?;
        let pts: Vec<(f64, f64)> = steps
            .iter()
            .zip(&v)
            .map(|(&s, &y)| (s as f64, y as f64))
            .collect();
        // Each loss relative to its first value, so the three fit one chart.
        let first = report::smooth(&pts, w)
            .first()
            .map(|p| p.1)
            .unwrap_or(1.0)
            .max(1e-12);
        Ok(Series {
            name: c,
            points: report::smooth(&pts, w)
                .into_iter()
                .map(|(x, y)| (x, y / first))
                .collect(),
            color,
        })
    })
    .collect::<crate::Result<_>>()?;
    report::line_chart(
        &out("train_loss.png"),
        &format!("training losses (moving average of {w} steps, relative to the start)"),
        "step",
        "loss / initial loss",
        &loss_series,
        None,
    )?;
    let summary: serde_json::Value = std::fs::read_to_string(model_dir.join("summary.json"))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    let report = report::render(
        &all_metrics,
        &table_md,
        &probe_md,
        &views_md,
        &summary,
        filled,
        short,
    );
    std::fs::write(out("report.md"), report).at(&out("report.md"))?;
    crate::progress::println(format!(
        "retrieval on the valid split:\n| direction | Rank@1 | Rank@5 | Rank@10 | Rank@100 | MRR | ACC | AUC | queries × candidates |\n{}{}{}",
        table_md,
        probe_md.trim_end(),
        report::versus_probe(&all_metrics)
            .map(|l| format!("\n{}", l.replace("**", "")))
            .unwrap_or_default()
    ));
    Ok(n as u64)
}

/// `{direction: value}` as a JSON object.
fn by_direction<T: serde::Serialize>(v: &[(&str, T)]) -> serde_json::Value {
    serde_json::Value::Object(
        v.iter()
            .map(|(d, x)| {
                (
                    d.to_string(),
                    serde_json::to_value(x).expect("JSON of numbers"),
                )
            })
            .collect(),
    )
}

/// The linear probe's metrics on the same eval sets, and the products it was fitted on.
#[allow(clippy::type_complexity)]
fn run_probe(
    p: &EvaluateParams,
    products: &[Product],
    texts: &Texts,
    store: &featstore::Store,
    sets: &[EvalSet],
) -> crate::Result<Option<(Vec<(&'static str, Metrics)>, usize)>> {
    let n = p.probe_products;
    if n == 0 {
        return Ok(None);
    }
    let compat_batch = p.compat_batch;
    let cfg = crate::eval::probe::ProbeConfig {
        fit_products: n,
        ridge: p.probe_ridge,
        seed: p.seed,
    };
    let t0 = std::time::Instant::now();
    let probe = match crate::eval::probe::Probe::fit(products, texts, store, cfg) {
        Ok(pr) => pr,
        Err(e) => {
            tracing::warn!("evaluate: no probe baseline: {e}");
            return Ok(None);
        }
    };
    let wanted: Vec<(String, String)> = sets
        .iter()
        .flat_map(|s| s.rows.iter().map(|r| (r.1.clone(), r.2.clone())))
        .collect();
    let scores = probe.score_pairs(texts, store, &wanted)?;
    let out = sets
        .iter()
        .map(|set| {
            let scored = set.scored(|img, txt| [0.0, scores[&(img.to_string(), txt.to_string())]]);
            (set.direction, metrics::compute(&scored, compat_batch))
        })
        .collect();
    tracing::info!(
        "evaluate: probe baseline fitted on {} products and scored in {:.1}s",
        probe.fit_products(),
        t0.elapsed().as_secs_f64()
    );
    Ok(Some((out, probe.fit_products())))
}
