//! `fashionbert serve`: one HTTP server over a pipeline's store — a JSON API for search and for
//! the store (stages, entries, params, tables, records, training curves, the evaluation) and a
//! web page embedded in the binary that uses it.
//!
//! What it serves is fixed at start: each stage resolves once to the entry the config resolves
//! to (as `status` computes it) and the server says which. Entries are immutable once
//! committed (the store writes a temporary folder and renames it), so a pipeline run that adds
//! entries while the server runs changes nothing it reads; `/api/stages` recomputes the plan on
//! each request, so the page shows such a run's new state.
//!
//! Safety: binds 127.0.0.1 unless told otherwise; never writes to the store; no request names a
//! file path (stage names, entry keys, ids and the file names an entry's manifest lists, all
//! checked against the store); sizes and `k` bounded; bad input is a 4xx JSON error.

mod api;
mod encoder;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use polars::prelude::DataFrame;

use crate::dag::store::{Check, EntryState};
use crate::dag::{DagError, PipelineConfig, Runner, State, Store};
use crate::error::{Error, Result};
use crate::schema::embeddings::Embeddings;
use crate::sources::Product;

/// How `fashionbert serve` runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub config: PathBuf,
    pub addr: SocketAddr,
    /// Worker threads of the HTTP runtime (the model's encoder has its own thread).
    pub threads: usize,
    /// Catalogues of at least this many products are searched through an HNSW index (built
    /// at start, both sides); smaller ones exactly.
    pub index_above: usize,
}

/// What the server reads: the config's entries, resolved once at start.
pub struct App {
    pub config: PipelineConfig,
    store: Store,
    /// Stage → the key of the entry served (the cached stages of the config's plan).
    keys: BTreeMap<String, String>,
    /// The `embed` entry's embeddings, when the config has a cached one.
    embeddings: Option<Arc<Embeddings>>,
    /// Why text and image queries are unavailable (no embeddings, or made by another model).
    encode_unavailable: Option<String>,
    /// image id → product; product id → its first image id.
    products: HashMap<String, Product>,
    product_image: HashMap<String, String>,
    /// The ingest entry (images stored in the entry resolve against it).
    ingest_dir: Option<PathBuf>,
    encoder: encoder::Encoder,
    /// The approximate indexes (images, texts) of a large catalogue.
    indexes: Vec<crate::search::index::Index>,
    /// The last tables read (path → frame), so paging through one reads it once.
    tables: Mutex<Vec<(PathBuf, Arc<DataFrame>)>>,
}

impl App {
    /// Loads the config, resolves each stage to its cached entry and reads the catalogue.
    pub fn open(config_file: &Path, index_above: usize) -> Result<App> {
        let registry = crate::stages::registry();
        let config = PipelineConfig::load(config_file, &registry).map_err(DagError::from)?;
        let plan = Runner::new(&registry, &config)?.current_plan()?;
        let store =
            Store::open(&config.artifacts).map_err(|e| DagError::io(&config.artifacts, e))?;
        let mut keys = BTreeMap::new();
        for item in plan {
            if item.state == State::Cached
                && let Some(key) = item.key
            {
                if let EntryState::Damaged(problems) = store.verify(&item.stage, &key, Check::Quick)
                {
                    return Err(DagError::LatestDamaged {
                        stage: item.stage,
                        key,
                        problems,
                    }
                    .into());
                }
                keys.insert(item.stage, key);
            }
        }
        let (mut products, mut product_image) = (HashMap::new(), HashMap::new());
        let ingest_dir = keys.get("ingest").map(|k| store.entry_dir("ingest", k));
        if let Some(d) = &ingest_dir {
            for p in crate::schema::read_products(&d.join("products.parquet"))? {
                product_image
                    .entry(p.product_id.clone())
                    .or_insert_with(|| p.image_id.clone());
                products.insert(p.image_id.clone(), p);
            }
        }
        let (embeddings, encode_unavailable) = match keys.get("embed") {
            None => (
                None,
                Some(if config.stage("embed").is_none() {
                    "the config has no `embed` stage: add `[stages.embed]` and run `fashionbert run embed`".to_string()
                } else {
                    "the config's `embed` entry is not made yet: run `fashionbert run embed`"
                        .to_string()
                }),
            ),
            Some(k) => {
                let e = Embeddings::read(&store.entry_dir("embed", k))?;
                let why = match keys.get("train") {
                    Some(t) if e.model == format!("train/{t}") => None,
                    _ => Some(format!(
                        "the embeddings were made by {}, not the config's model: run `fashionbert run embed`",
                        e.model
                    )),
                };
                (Some(Arc::new(e)), why)
            }
        };
        let encoder = encoder::Encoder::new(config.clone(), keys.clone());
        let mut indexes = Vec::new();
        if let Some(e) = embeddings.as_ref().filter(|e| e.len() >= index_above) {
            use crate::search::{
                Side,
                index::{Index, IndexParams},
            };
            for side in [Side::Images, Side::Texts] {
                let ix = Index::build(e, side, IndexParams::default());
                tracing::info!(
                    "HNSW index over {} {}: {:.1} s",
                    e.len(),
                    side.as_str(),
                    ix.build_seconds
                );
                indexes.push(ix);
            }
        }
        Ok(App {
            config,
            store,
            keys,
            embeddings,
            encode_unavailable,
            products,
            product_image,
            ingest_dir,
            encoder,
            indexes,
            tables: Mutex::new(Vec::new()),
        })
    }

    /// The key served for `stage`, if the config's entry exists.
    pub fn key(&self, stage: &str) -> Option<&str> {
        self.keys.get(stage).map(String::as_str)
    }

    /// The approximate index of `side`, when the catalogue has one.
    pub fn index(&self, side: crate::search::Side) -> Option<&crate::search::index::Index> {
        self.indexes.iter().find(|i| i.side == side)
    }

    /// A parquet table, read once while it is among the last few asked for.
    fn table(&self, path: &Path) -> Result<Arc<DataFrame>> {
        let mut cache = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, df)) = cache.iter().find(|(p, _)| p == path) {
            return Ok(df.clone());
        }
        let df = Arc::new(crate::table::read_parquet(path)?);
        cache.insert(0, (path.to_path_buf(), df.clone()));
        cache.truncate(4);
        Ok(df)
    }
}

/// Starts the server and serves until the process ends.
pub fn serve(opts: &ServeOptions) -> Result<()> {
    let app = Arc::new(App::open(&opts.config, opts.index_above)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.threads.max(1))
        .enable_io()
        .build()
        .map_err(|e| Error::msg(format!("starting the HTTP runtime: {e}")))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(opts.addr).await.map_err(|e| {
            Error::msg(format!(
                "cannot listen on {}: {e} (choose another with --port, or --port 0 for any free one)",
                opts.addr
            ))
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::msg(format!("listening socket: {e}")))?;
        for (stage, key) in &app.keys {
            crate::progress::println(format!(
                "serving {stage}/{}",
                &key[..key.len().min(12)]
            ));
        }
        if let Some(why) = &app.encode_unavailable {
            crate::progress::println(format!("text and image search unavailable: {why}"));
        }
        // The one line a script waits for (tests read the port from it).
        println!("listening on http://{addr}/");
        axum::serve(listener, api::router(app))
            .await
            .map_err(|e| Error::msg(format!("server: {e}")))
    })
}
