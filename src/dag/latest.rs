//! A pipeline's entries as the tools that use a finished pipeline (`show`, `rank`,
//! `export-tsv`, `inspect`, …) read them, without running anything.
//!
//! By default each stage resolves through the config's plan: the entry `status` calls cached
//! for this config, not whatever ran last (`latest` moves with every `--set` experiment).
//! [`Resolve::Latest`] takes each stage's `latest` link instead. Either way the entry is
//! checked as `status` checks it before anything reads it, and its key is said once.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::store::{Check, EntryState};
use super::{DagError, Manifest, PipelineConfig, PlanItem, Registry, Runner, State, Store};

/// Which entry of a stage the tools read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resolve {
    /// The entry the config (with its `--set`s) resolves to, as `status` computes it.
    #[default]
    Config,
    /// The stage's `latest` link: whatever ran last.
    Latest,
}

/// The entries of one pipeline's store that the tools read.
pub struct Latest {
    pub config: PipelineConfig,
    store: Store,
    resolve: Resolve,
    /// The config's plan by stage (with [`Resolve::Config`]).
    plan: BTreeMap<String, PlanItem>,
    /// Each stage's key once resolved and checked (and said): later calls reuse it.
    resolved: RefCell<BTreeMap<String, String>>,
}

impl Latest {
    /// Loads `config_file` (checked against `registry`) and opens its store; each stage
    /// resolves to the config's entry.
    pub fn open(config_file: &Path, registry: &Registry) -> Result<Latest, DagError> {
        Self::open_with(config_file, registry, Resolve::Config)
    }

    pub fn open_with(
        config_file: &Path,
        registry: &Registry,
        resolve: Resolve,
    ) -> Result<Latest, DagError> {
        let config = PipelineConfig::load(config_file, registry)?;
        let plan = match resolve {
            Resolve::Config => Runner::new(registry, &config)?
                .current_plan()?
                .into_iter()
                .map(|item| (item.stage.clone(), item))
                .collect(),
            Resolve::Latest => BTreeMap::new(),
        };
        let store =
            Store::open(&config.artifacts).map_err(|e| DagError::io(&config.artifacts, e))?;
        Ok(Latest {
            config,
            store,
            resolve,
            plan,
            resolved: RefCell::default(),
        })
    }

    /// A fixed snapshot: each stage resolves to the key given (checked once by whoever
    /// resolved them, e.g. a server at its start); a stage not given is "not run".
    pub fn pinned(
        config: PipelineConfig,
        keys: BTreeMap<String, String>,
    ) -> Result<Latest, DagError> {
        let store =
            Store::open(&config.artifacts).map_err(|e| DagError::io(&config.artifacts, e))?;
        Ok(Latest {
            config,
            store,
            resolve: Resolve::Config,
            plan: BTreeMap::new(),
            resolved: RefCell::new(keys),
        })
    }

    /// The key of `stage`'s entry: the config's (cached) one, or `latest`'s, checked. An
    /// error says how to make one, or what is damaged.
    pub fn key(&self, stage: &str) -> Result<String, DagError> {
        if let Some(key) = self.resolved.borrow().get(stage) {
            return Ok(key.clone());
        }
        let key = match self.resolve {
            Resolve::Config => {
                let item = self.plan.get(stage).ok_or_else(|| DagError::NotRun {
                    stage: stage.to_string(),
                    artifacts: self.config.artifacts.clone(),
                    config: self.config.file.clone(),
                })?;
                if item.state != State::Cached {
                    return Err(DagError::NotCached {
                        stage: stage.to_string(),
                        why: item
                            .why
                            .iter()
                            .map(|w| w.to_string())
                            .collect::<Vec<_>>()
                            .join("; "),
                        config: self.config.file.clone(),
                        latest: self.store.latest(stage),
                    });
                }
                item.key.clone().expect("a cached stage has a key")
            }
            Resolve::Latest => {
                let key = self.store.latest(stage).ok_or_else(|| DagError::NotRun {
                    stage: stage.to_string(),
                    artifacts: self.config.artifacts.clone(),
                    config: self.config.file.clone(),
                })?;
                if let EntryState::Damaged(problems) = self.store.verify(stage, &key, Check::Quick)
                {
                    return Err(DagError::LatestDamaged {
                        stage: stage.to_string(),
                        key,
                        problems,
                    });
                }
                key
            }
        };
        crate::progress::println(format!(
            "using {stage}/{} ({})",
            super::plan::short(&key),
            match self.resolve {
                Resolve::Config => format!("the entry {} resolves to", self.config.file.display()),
                Resolve::Latest => "the stage's latest run".to_string(),
            }
        ));
        self.resolved
            .borrow_mut()
            .insert(stage.to_string(), key.clone());
        Ok(key)
    }

    /// The folder of `stage`'s entry (see [`Latest::key`]).
    pub fn dir(&self, stage: &str) -> Result<PathBuf, DagError> {
        Ok(self.store.entry_dir(stage, &self.key(stage)?))
    }

    /// The manifest of `stage`'s entry (its params, key and outputs).
    pub fn manifest(&self, stage: &str) -> Result<Manifest, DagError> {
        let d = self.dir(stage)?;
        Manifest::read(&d).map_err(|e| DagError::io(&d, e))
    }

    /// A path param of `stage`'s entry, resolved against the pipeline file's folder.
    pub fn path_param(&self, stage: &str, name: &str) -> Result<PathBuf, DagError> {
        let m = self.manifest(stage)?;
        let value = m.params.str(name).map_err(|source| DagError::Param {
            stage: stage.to_string(),
            source,
        })?;
        Ok(super::stage::resolve_path(&self.config.base_dir, value))
    }
}
