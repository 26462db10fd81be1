//! The server's routes: the embedded page and the JSON API. Every handler checks what a request
//! names (a stage of the config, an entry key in the store, a file its manifest lists, an id of
//! the catalogue) before reading anything; user errors are 4xx with `{"error": …}`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use polars::prelude::{AnyValue, DataFrame};
use serde_json::{Value, json};

use super::App;
use super::encoder::Query as Encode;
use crate::dag::Manifest;
use crate::dag::store::{Check, EntryState};
use crate::search::{Filter, Side, top_k};

/// Most results a search returns, rows a table page holds, pixels of a thumbnail side.
pub const MAX_K: usize = 1000;
pub const MAX_ROWS: usize = 1000;
const MAX_THUMB: u32 = 1024;
/// Largest uploaded query image.
pub const MAX_UPLOAD: usize = 16 << 20;

const PAGE: &str = include_str!("page.html");

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/api/info", get(info))
        .route("/api/stages", get(stages))
        .route("/api/runs/{stage}", get(runs))
        .route("/api/entries/{stage}/{key}", get(entry))
        .route("/api/table/{stage}/{key}/{file}", get(table))
        .route("/api/image/{image_id}", get(image))
        .route("/api/search", get(search))
        .route("/api/search/image", post(search_image))
        .route("/api/record/{record}", get(record))
        .route("/api/curves/{key}", get(curves))
        .route("/api/evaluation", get(evaluation))
        .route("/api/evaluation/queries", get(eval_queries))
        .route("/api/evaluation/query", get(eval_query))
        .route("/api/evaluation/plot/{name}", get(eval_plot))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route: see /api/info") })
        .layer(DefaultBodyLimit::max(MAX_UPLOAD))
        .with_state(app)
}

/// A request that cannot be answered: its status and a message that says what to change.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    fn bad(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn not_found(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    fn conflict(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::CONFLICT, message)
    }
    fn internal(e: impl std::fmt::Display) -> ApiError {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<crate::table::TableError> for ApiError {
    fn from(e: crate::table::TableError) -> ApiError {
        ApiError::internal(e)
    }
}

impl From<crate::error::Error> for ApiError {
    fn from(e: crate::error::Error) -> ApiError {
        ApiError::internal(e)
    }
}

type ApiResult<T> = Result<T, ApiError>;
type Params = Query<HashMap<String, String>>;

/// Runs blocking work (file reads, the model) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}

/// An integer query parameter within `lo..=hi` (`default` when absent).
fn int(
    q: &HashMap<String, String>,
    name: &str,
    default: usize,
    lo: usize,
    hi: usize,
) -> ApiResult<usize> {
    match q.get(name) {
        None => Ok(default),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|v| (lo..=hi).contains(v))
            .ok_or_else(|| {
                ApiError::bad(format!(
                    "`{name}` must be an integer from {lo} to {hi}, not {s:?}"
                ))
            }),
    }
}

impl App {
    /// A stage of the config, or 404 naming the stages.
    fn stage<'a>(&self, stage: &'a str) -> ApiResult<&'a str> {
        if self.config.stage(stage).is_some() {
            Ok(stage)
        } else {
            Err(ApiError::not_found(format!(
                "no stage `{stage}` in {} (stages: {})",
                self.config.file.display(),
                self.config
                    .stages
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    }

    /// An entry of the store, checked as `status` checks it, with its manifest.
    fn entry(&self, stage: &str, key: &str) -> ApiResult<(PathBuf, Manifest)> {
        self.stage(stage)?;
        if key.is_empty() || key.len() > 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::bad(format!(
                "`{key}` is not an entry key (hex digits)"
            )));
        }
        if !self.store.has(stage, key) {
            return Err(ApiError::not_found(format!(
                "no entry {stage}/{key} in {} (GET /api/runs/{stage} lists them)",
                self.store.root().display()
            )));
        }
        if let EntryState::Damaged(problems) = self.store.verify(stage, key, Check::Quick) {
            return Err(ApiError::conflict(format!(
                "entry {stage}/{key} is damaged: {}",
                problems.join("; ")
            )));
        }
        let dir = self.store.entry_dir(stage, key);
        let m = Manifest::read(&dir).map_err(ApiError::internal)?;
        Ok((dir, m))
    }

    /// The served entry of `stage` (the config's), or 409 saying how to make it.
    fn served(&self, stage: &str) -> ApiResult<(PathBuf, Manifest)> {
        self.stage(stage)?;
        let key = self.key(stage).ok_or_else(|| {
            ApiError::conflict(format!(
                "the config's {stage} entry is not made yet: run `fashionbert run {stage}` and restart the server"
            ))
        })?;
        self.entry(stage, key)
    }

    fn embeddings(&self) -> ApiResult<Arc<crate::schema::embeddings::Embeddings>> {
        self.embeddings
            .clone()
            .ok_or_else(|| ApiError::conflict(self.encode_unavailable.clone().unwrap_or_default()))
    }

    fn title_of_product(&self, product_id: &str) -> Option<&str> {
        self.product_image
            .get(product_id)
            .and_then(|i| self.products.get(i))
            .map(|p| p.title.as_str())
    }
}

async fn info(State(app): State<Arc<App>>) -> Json<Value> {
    Json(json!({
        "config": app.config.file,
        "artifacts": app.config.artifacts,
        "entries": app.keys,
        "model": app.key("train").map(|k| format!("train/{k}")),
        "embeddings": app.key("embed").map(|k| format!("embed/{k}")),
        "catalogue": app.embeddings.as_ref().map(|e| e.len()),
        "products": app.products.len(),
        "search_by_text": app.encode_unavailable.is_none(),
        "search_unavailable": app.encode_unavailable,
        "index": app.indexes.iter().map(|i| json!({"side": i.side.as_str(), "build_seconds": i.build_seconds})).collect::<Vec<_>>(),
        "limits": { "k": MAX_K, "rows": MAX_ROWS, "upload_bytes": MAX_UPLOAD },
    }))
}

/// The config's plan as `status` computes it now (a run that adds entries shows here), each
/// stage with its upstream stages and the entry this server serves.
async fn stages(State(app): State<Arc<App>>) -> ApiResult<Json<Value>> {
    blocking(move || {
        let registry = crate::stages::registry();
        let runner = crate::dag::Runner::new(&registry, &app.config).map_err(ApiError::internal)?;
        let plan = runner.current_plan().map_err(ApiError::internal)?;
        let rows: Vec<Value> = plan
            .iter()
            .map(|item| {
                let deps = app.config.stage(&item.stage).map(|s| s.deps.clone()).unwrap_or_default();
                json!({
                    "stage": item.stage,
                    "state": match item.state { crate::dag::State::Cached => "cached", crate::dag::State::WillRun => "will run" },
                    "key": item.key,
                    "why": item.why.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
                    "deps": deps,
                    "served": app.key(&item.stage),
                    "latest": app.store.latest(&item.stage),
                })
            })
            .collect();
        Ok(Json(json!({ "stages": rows })))
    })
    .await
}

async fn runs(State(app): State<Arc<App>>, Path(stage): Path<String>) -> ApiResult<Json<Value>> {
    blocking(move || {
        app.stage(&stage)?;
        let rows = crate::cli::runs::rows(&app.store, &stage).map_err(ApiError::internal)?;
        Ok(Json(
            json!({ "stage": stage, "served": app.key(&stage), "runs": rows }),
        ))
    })
    .await
}

async fn entry(
    State(app): State<Arc<App>>,
    Path((stage, key)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    blocking(move || {
        let (_, m) = app.entry(&stage, &key)?;
        Ok(Json(json!({
            "stage": stage,
            "key": key,
            "served": app.key(&stage) == Some(key.as_str()),
            "manifest": m,
        })))
    })
    .await
}

/// One cell as JSON: numbers as numbers, lists cut to their first items (as `inspect` does).
fn cell(v: &AnyValue) -> Value {
    match v {
        AnyValue::Null => Value::Null,
        AnyValue::Boolean(b) => json!(b),
        AnyValue::Int8(x) => json!(x),
        AnyValue::Int16(x) => json!(x),
        AnyValue::Int32(x) => json!(x),
        AnyValue::Int64(x) => json!(x),
        AnyValue::UInt8(x) => json!(x),
        AnyValue::UInt16(x) => json!(x),
        AnyValue::UInt32(x) => json!(x),
        AnyValue::UInt64(x) => json!(x),
        AnyValue::Float32(x) if x.is_finite() => json!(x),
        AnyValue::Float64(x) if x.is_finite() => json!(x),
        AnyValue::String(s) => json!(s),
        AnyValue::StringOwned(s) => json!(s.as_str()),
        AnyValue::List(s) | AnyValue::Array(s, _) => {
            let items: Vec<String> = s
                .iter()
                .take(16)
                .map(|x| match cell(&x) {
                    Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect();
            json!(format!(
                "[{}: {}{}]",
                s.len(),
                items.join(", "),
                if s.len() > 16 { ", …" } else { "" }
            ))
        }
        other => json!(other.to_string()),
    }
}

fn rows(df: &DataFrame, offset: usize, limit: usize) -> Vec<Vec<Value>> {
    let page = df.slice(offset as i64, limit);
    (0..page.height())
        .map(|i| {
            page.get_columns()
                .iter()
                .map(|c| c.get(i).map(|v| cell(&v)).unwrap_or(Value::Null))
                .collect()
        })
        .collect()
}

/// A page of a parquet file an entry's manifest lists: `offset`, `limit` (≤ 1000) and
/// `columns` (comma-separated; all when absent).
async fn table(
    State(app): State<Arc<App>>,
    Path((stage, key, file)): Path<(String, String, String)>,
    Query(q): Params,
) -> ApiResult<Json<Value>> {
    blocking(move || {
        let (dir, m) = app.entry(&stage, &key)?;
        let parquet = m.outputs_ending(".parquet");
        if !file.ends_with(".parquet") || !parquet.contains(&file.as_str()) {
            return Err(ApiError::not_found(format!(
                "entry {stage}/{key} has no table `{file}` (its tables: {})",
                parquet.join(", ")
            )));
        }
        let df = app.table(&dir.join(&file))?;
        let total = df.height();
        let offset = int(&q, "offset", 0, 0, total)?;
        let limit = int(&q, "limit", 50, 1, MAX_ROWS)?;
        let all: Vec<String> = df
            .get_column_names()
            .iter()
            .map(|c| c.to_string())
            .collect();
        let df = match q.get("columns").filter(|c| !c.is_empty()) {
            None => (*df).clone(),
            Some(cols) => {
                let want: Vec<&str> = cols.split(',').map(str::trim).collect();
                if let Some(bad) = want.iter().find(|c| !all.iter().any(|a| a == *c)) {
                    return Err(ApiError::bad(format!(
                        "no column `{bad}` in {file} (columns: {})",
                        all.join(", ")
                    )));
                }
                df.select(want.iter().copied())
                    .map_err(ApiError::internal)?
            }
        };
        let dtypes: Vec<String> = df.dtypes().iter().map(|d| d.to_string()).collect();
        Ok(Json(json!({
            "stage": stage, "key": key, "file": file,
            "total": total, "offset": offset,
            "all_columns": all,
            "columns": df.get_column_names().iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "dtypes": dtypes,
            "rows": rows(&df, offset, limit),
        })))
    })
    .await
}

/// A catalogue image by its image id, as a JPEG no larger than `size` pixels a side.
async fn image(
    State(app): State<Arc<App>>,
    Path(image_id): Path<String>,
    Query(q): Params,
) -> ApiResult<Response> {
    blocking(move || {
        let size = int(&q, "size", 256, 16, MAX_THUMB as usize)? as u32;
        let p = app.products.get(&image_id).ok_or_else(|| {
            ApiError::not_found(format!("no image `{image_id}` in the served catalogue"))
        })?;
        let ingest = app
            .ingest_dir
            .as_ref()
            .ok_or_else(|| ApiError::conflict("no ingest entry"))?;
        let img = crate::images::ImageLoader::new(&app.config.base_dir, ingest)
            .load(&crate::images::ImageRef::parse(&p.image))
            .map_err(|e| ApiError::conflict(format!("image `{image_id}` cannot be read: {e}")))?;
        let img = if img.width() > size || img.height() > size {
            image::DynamicImage::ImageRgb8(img)
                .thumbnail(size, size)
                .to_rgb8()
        } else {
            img
        };
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut out, image::ImageFormat::Jpeg)
            .map_err(ApiError::internal)?;
        Ok((
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "max-age=3600"),
            ],
            out.into_inner(),
        )
            .into_response())
    })
    .await
}

fn filter_of(q: &HashMap<String, String>) -> Filter {
    let get = |n: &str| q.get(n).filter(|s| !s.is_empty()).cloned();
    Filter {
        category: get("category"),
        subcategory: get("subcategory"),
        split: get("split"),
    }
}

fn side_of(q: &HashMap<String, String>, default: Side) -> ApiResult<Side> {
    match q.get("in").map(String::as_str) {
        None | Some("") => Ok(default),
        Some("images") => Ok(Side::Images),
        Some("texts") => Ok(Side::Texts),
        Some(other) => Err(ApiError::bad(format!(
            "`in` is `images` or `texts`, not {other:?}"
        ))),
    }
}

/// Ranks the catalogue for an encoded query and answers as `fashionbert search --json` does.
fn answer(
    app: &App,
    e: &crate::schema::embeddings::Embeddings,
    query: &[f32],
    what: String,
    side: Side,
    exclude: Option<usize>,
    q: &HashMap<String, String>,
) -> ApiResult<Json<Value>> {
    let k = int(q, "k", 10, 1, MAX_K)?;
    let t0 = std::time::Instant::now();
    let exclude = exclude.filter(|_| side == Side::Images);
    let (hits, method) = match app.index(side) {
        Some(ix) => (ix.search(e, query, &filter_of(q), k, exclude), "hnsw"),
        None => (top_k(e, query, side, &filter_of(q), k, exclude), "exact"),
    };
    Ok(Json(json!({
        "method": method,
        "query": what,
        "ranked": side.as_str(),
        "entry": app.key("embed").map(|k| format!("embed/{k}")),
        "model": e.model,
        "catalogue": e.len(),
        "seconds": t0.elapsed().as_secs_f64(),
        "hits": hits,
    })))
}

/// `?text=…` (images by default) or `?product=…` (similar images, itself left out); `in`,
/// `k`, `category`, `subcategory`, `split`.
async fn search(State(app): State<Arc<App>>, Query(q): Params) -> ApiResult<Json<Value>> {
    blocking(move || {
        let e = app.embeddings()?;
        match (q.get("text"), q.get("product")) {
            (Some(t), None) => {
                if t.trim().is_empty() || t.len() > 10_000 {
                    return Err(ApiError::bad("`text` must be 1 to 10,000 bytes"));
                }
                if let Some(why) = &app.encode_unavailable {
                    return Err(ApiError::conflict(why.clone()));
                }
                let v = app
                    .encoder
                    .encode(Encode::Text(t.clone()))
                    .map_err(ApiError::internal)?;
                answer(
                    &app,
                    &e,
                    &v,
                    format!("text {t:?}"),
                    side_of(&q, Side::Images)?,
                    None,
                    &q,
                )
            }
            (None, Some(id)) => {
                let row = e.row_of(id).ok_or_else(|| {
                    ApiError::not_found(format!(
                        "product `{id}` is not in the embeddings ({} products)",
                        e.len()
                    ))
                })?;
                let v = e.image_row(row).to_vec();
                answer(
                    &app,
                    &e,
                    &v,
                    format!("product {id}"),
                    side_of(&q, Side::Images)?,
                    Some(row),
                    &q,
                )
            }
            _ => Err(ApiError::bad(
                "give one query: `text` or `product` (or POST an image to /api/search/image)",
            )),
        }
    })
    .await
}

/// The request body is an image (JPEG or PNG, at most 16 MiB); texts by default.
async fn search_image(
    State(app): State<Arc<App>>,
    Query(q): Params,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    blocking(move || {
        let e = app.embeddings()?;
        if let Some(why) = &app.encode_unavailable {
            return Err(ApiError::conflict(why.clone()));
        }
        if body.is_empty() {
            return Err(ApiError::bad(
                "the request body must be an image (JPEG or PNG)",
            ));
        }
        let img = crate::images::decode_bytes(&body)
            .map_err(|m| ApiError::bad(format!("the uploaded image cannot be decoded: {m}")))?;
        let v = app
            .encoder
            .encode(Encode::Image(img))
            .map_err(ApiError::internal)?;
        answer(
            &app,
            &e,
            &v,
            format!("an uploaded image ({} bytes)", body.len()),
            side_of(&q, Side::Texts)?,
            None,
            &q,
        )
    })
    .await
}

/// A record drawn as `fashionbert show` draws it (PNG).
async fn record(State(app): State<Arc<App>>, Path(record): Path<String>) -> ApiResult<Response> {
    blocking(move || {
        if record.len() > 512 {
            return Err(ApiError::bad(
                "record ids are short (p:<image id> or n:<image id>)",
            ));
        }
        let l = crate::dag::Latest::pinned(app.config.clone(), app.keys.clone())
            .map_err(ApiError::internal)?;
        let tmp = tempfile::Builder::new()
            .suffix(".png")
            .tempfile()
            .map_err(ApiError::internal)?;
        crate::show::draw(&l, &record, tmp.path()).map_err(|e| {
            let m = e.to_string();
            if m.starts_with("no record") {
                ApiError::not_found(m)
            } else if m.contains("not made yet")
                || m.contains("never run")
                || m.contains("not cached")
            {
                ApiError::conflict(m)
            } else {
                ApiError::internal(m)
            }
        })?;
        let png = std::fs::read(tmp.path()).map_err(ApiError::internal)?;
        Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
    })
    .await
}

/// Every numeric column of a parquet table as arrays (NaN as null).
fn numeric_columns(df: &DataFrame) -> serde_json::Map<String, Value> {
    use polars::prelude::DataType;
    let mut out = serde_json::Map::new();
    for c in df.get_columns() {
        if !c.dtype().is_primitive_numeric() {
            continue;
        }
        if let Ok(f) = c.cast(&DataType::Float64)
            && let Ok(ca) = f.f64()
        {
            let v: Vec<Value> = ca
                .into_iter()
                .map(|x| {
                    x.filter(|x| x.is_finite())
                        .map_or(Value::Null, |x| json!(x))
                })
                .collect();
            out.insert(c.name().to_string(), Value::Array(v));
        }
    }
    out
}

/// A `train` entry's curves: `train_log.parquet` and `valid_log.parquet`, column by column.
async fn curves(State(app): State<Arc<App>>, Path(key): Path<String>) -> ApiResult<Json<Value>> {
    blocking(move || {
        let (dir, m) = app.entry("train", &key)?;
        let mut out = serde_json::Map::new();
        for (name, file) in [
            ("train", "train_log.parquet"),
            ("valid", "valid_log.parquet"),
        ] {
            if m.output(file).is_some() {
                let df = app.table(&dir.join(file))?;
                out.insert(name.into(), Value::Object(numeric_columns(&df)));
            }
        }
        Ok(Json(
            json!({ "key": key, "served": app.key("train") == Some(key.as_str()), "curves": out }),
        ))
    })
    .await
}

/// The served evaluation: metrics, plots, directions and query counts.
async fn evaluation(State(app): State<Arc<App>>) -> ApiResult<Json<Value>> {
    blocking(move || {
        let (dir, m) = app.served("evaluate")?;
        let metrics: Value = crate::dag::fsafe::read_regular(&dir.join("metrics.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        let plots = m.outputs_ending(".png");
        Ok(Json(json!({
            "entry": format!("evaluate/{}", m.key),
            "model": m.upstream.get("train").map(|k| format!("train/{k}")),
            "metrics": metrics,
            "plots": plots,
            "report": m.output("report.md").is_some(),
        })))
    })
    .await
}

fn direction(q: &HashMap<String, String>) -> ApiResult<String> {
    match q.get("direction").map(String::as_str) {
        None | Some("img2txt") => Ok("img2txt".into()),
        Some("txt2img") => Ok("txt2img".into()),
        Some(o) => Err(ApiError::bad(format!(
            "`direction` is img2txt or txt2img, not {o:?}"
        ))),
    }
}

/// The rows of an evaluation table (`ranks` or `pairs`) of one direction, and of one query when
/// given, in file order: compared in place, so only the rows kept are copied out.
fn rows_of(df: &DataFrame, direction: &str, query: Option<&str>) -> ApiResult<DataFrame> {
    let col = |c: &str| {
        df.column(c)
            .and_then(|c| c.str().cloned())
            .map_err(ApiError::internal)
    };
    let dirs = col("direction")?;
    let keep: Vec<polars::prelude::IdxSize> = match query {
        None => dirs
            .into_iter()
            .enumerate()
            .filter(|(_, d)| *d == Some(direction))
            .map(|(i, _)| i as polars::prelude::IdxSize)
            .collect(),
        Some(q) => dirs
            .into_iter()
            .zip(col("query")?.into_iter())
            .enumerate()
            .filter(|(_, (d, x))| *d == Some(direction) && *x == Some(q))
            .map(|(i, _)| i as polars::prelude::IdxSize)
            .collect(),
    };
    df.take(&polars::prelude::IdxCa::from_vec("i".into(), keep))
        .map_err(ApiError::internal)
}

/// The evaluation's queries of one direction with the rank of their true match, paged.
async fn eval_queries(State(app): State<Arc<App>>, Query(q): Params) -> ApiResult<Json<Value>> {
    blocking(move || {
        let (dir, _) = app.served("evaluate")?;
        let d = direction(&q)?;
        let mine = rows_of(&*app.table(&dir.join("ranks.parquet"))?, &d, None)?;
        let total = mine.height();
        let offset = int(&q, "offset", 0, 0, total)?;
        let limit = int(&q, "limit", 50, 1, MAX_ROWS)?;
        let page = mine.slice(offset as i64, limit);
        Ok(Json(json!({
            "direction": d, "total": total, "offset": offset,
            "columns": page.get_column_names().iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "rows": rows(&page, 0, limit),
        })))
    })
    .await
}

/// One query's candidates, best first, the true match marked (`label`).
async fn eval_query(State(app): State<Arc<App>>, Query(q): Params) -> ApiResult<Json<Value>> {
    blocking(move || {
        let (dir, _) = app.served("evaluate")?;
        let d = direction(&q)?;
        let query = q.get("query").ok_or_else(|| {
            ApiError::bad("give `query` (a query id from /api/evaluation/queries)")
        })?;
        let df = rows_of(&*app.table(&dir.join("pairs.parquet"))?, &d, Some(query))?;
        let (images, texts) = (
            crate::table::strings(&df, "image_id")?,
            crate::table::strings(&df, "text_product_id")?,
        );
        let labels: Vec<bool> = df
            .column("label")
            .and_then(|c| {
                c.bool()
                    .map(|b| b.into_iter().map(|x| x.unwrap_or(false)).collect())
            })
            .map_err(ApiError::internal)?;
        let f32s = |c: &str| -> ApiResult<Vec<f32>> {
            df.column(c)
                .and_then(|c| {
                    c.f32()
                        .map(|b| b.into_iter().map(|x| x.unwrap_or(f32::NAN)).collect())
                })
                .map_err(ApiError::internal)
        };
        let (l0, l1) = (f32s("logit0")?, f32s("logit1")?);
        let mut cands: Vec<(f32, usize)> = (0..df.height()).map(|i| (l1[i] - l0[i], i)).collect();
        if cands.is_empty() {
            return Err(ApiError::not_found(format!(
                "no {d} query `{query}` in the evaluation"
            )));
        }
        cands.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let list: Vec<Value> = cands
            .iter()
            .enumerate()
            .map(|(r, &(score, i))| {
                json!({
                    "rank": r + 1,
                    "score": score,
                    "image_id": images[i],
                    "product_id": texts[i],
                    "title": app.title_of_product(&texts[i]),
                    "match": labels[i],
                })
            })
            .collect();
        let first = cands[0].1;
        let truth = cands.iter().find(|c| labels[c.1]).map_or(first, |c| c.1);
        Ok(Json(json!({
            "direction": d,
            "query": query,
            "query_image": images[first],
            "query_title": app.title_of_product(&texts[truth]),
            "candidates": list,
        })))
    })
    .await
}

async fn eval_plot(State(app): State<Arc<App>>, Path(name): Path<String>) -> ApiResult<Response> {
    blocking(move || {
        let (dir, m) = app.served("evaluate")?;
        if !name.ends_with(".png") || m.output(&name).is_none() {
            return Err(ApiError::not_found(format!(
                "the evaluation has no plot `{name}`"
            )));
        }
        let png = crate::dag::fsafe::read_regular(&dir.join(&name)).map_err(ApiError::internal)?;
        Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
    })
    .await
}
