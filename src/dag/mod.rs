//! A small, generic DAG runner with content-hash caching, in the spirit of DVC.
//!
//! It knows nothing about FashionBERT: an application registers [`Stage`]s (each declaring
//! its upstream stages, params and outputs in a [`StageSpec`]), a `pipeline.toml` wires them
//! ([`PipelineConfig`]), and the [`Runner`] brings stages up to date in the artefact
//! [`Store`], skipping every stage whose key is already there.
//!
//! A stage's key digests its name, code version, canonical params, upstream keys and the
//! content hashes of the raw files it reads.

pub mod config;
pub mod execute;
pub mod fsafe;
pub mod graph;
pub mod hash;
pub mod latest;
pub mod lock;
pub mod manifest;
pub mod params;
pub mod parts;
pub mod plan;
pub mod runner;
pub mod stage;
pub mod store;

use std::path::{Path, PathBuf};

pub use config::{ConfigError, PipelineConfig, Registry, StageConfig};
pub use execute::Outcome;
pub use latest::{Latest, Resolve};
pub use manifest::Manifest;
pub use params::{ParamDefault, ParamKind, ParamSpec, ParamValue, Params, StageParams};
pub use plan::{PlanItem, State, Why};
pub use runner::{RunOptions, Runner, ShardOutcome};
pub use stage::{Input, RawInput, RunContext, ShardId, Stage, StageError, StageSpec};
pub use store::Store;

/// Errors of the runner. Each says which stage or file, and what to do where it can.
#[derive(Debug, thiserror::Error)]
pub enum DagError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the artefact store is locked: {} is held by {holder}; wait for that run or stop it (or drop --no-wait to wait)", path.display())]
    Locked { path: PathBuf, holder: String },
    #[error("stage `{stage}` failed: {source}")]
    Stage { stage: String, source: StageError },
    #[error("stage `{stage}`: cannot read its input {}: {source}", path.display())]
    Input {
        stage: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "stage `{stage}` finished without writing its declared output `{path}` (a bug in the stage)"
    )]
    MissingOutput { stage: String, path: String },
    #[error(
        "stage `{stage}`: its cached entry {} is damaged: {}; run without --no-rebuild to rebuild it (`fashionbert verify` checks every entry)",
        dir.display(),
        problems.join("; ")
    )]
    Damaged {
        stage: String,
        dir: PathBuf,
        problems: Vec<String>,
    },
    #[error(
        "stage `{stage}` does not split into shards{}",
        if shardable.is_empty() { String::new() } else { format!(" (in this pipeline these do: {})", shardable.join(", ")) }
    )]
    NotShardable {
        stage: String,
        shardable: Vec<String>,
    },
    #[error(
        "stage `{stage}`: {} to merge; run the missing shards (`fashionbert run {stage} --shard I/N`), or a plain `fashionbert run` to compute them here",
        if *count == 0 { "no shard has run".to_string() } else {
            format!("{done}/{count} shards done, missing {}", missing.iter().map(|i| format!("{i}/{count}")).collect::<Vec<_>>().join(", "))
        }
    )]
    ShardsIncomplete {
        stage: String,
        done: usize,
        count: usize,
        missing: Vec<usize>,
    },
    #[error(
        "stage `{stage}` has no outputs in {}: run `fashionbert run {stage} --config {}` first",
        artifacts.display(),
        config.display()
    )]
    NotRun {
        stage: String,
        artifacts: PathBuf,
        config: PathBuf,
    },
    #[error(
        "stage `{stage}`'s entry for {} is not built ({why}): `fashionbert run {stage} --config {}` builds it{}",
        config.display(),
        config.display(),
        match latest {
            Some(k) => format!("; `--latest` reads the stage's latest run instead ({stage}/{})", plan::short(k)),
            None => String::new(),
        }
    )]
    NotCached {
        stage: String,
        why: String,
        config: PathBuf,
        latest: Option<String>,
    },
    #[error(
        "stage `{stage}`'s latest entry {} is damaged: {}; `fashionbert run {stage}` rebuilds the config's entry",
        plan::short(key),
        problems.join("; ")
    )]
    LatestDamaged {
        stage: String,
        key: String,
        problems: Vec<String>,
    },
    #[error("stage `{stage}`'s recorded params: {source}")]
    Param {
        stage: String,
        source: params::ParamError,
    },
    #[error(
        "no stage `{name}` in this pipeline{} (stages: {})",
        config::suggest(name, known.iter().map(|s| s.as_str())),
        known.join(", ")
    )]
    UnknownTarget { name: String, known: Vec<String> },
}

impl DagError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        DagError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Row count of a parquet file from its footer, if it is one.
pub fn table_rows(path: &Path) -> Option<u64> {
    crate::table::parquet_rows(path).ok()
}
