//! A pipeline's latest entries: what the tools that use a finished pipeline (`show`, `rank`,
//! `export-tsv`, …) read, without running anything.

use std::path::{Path, PathBuf};

use super::{DagError, Manifest, PipelineConfig, Registry, Store};

/// The latest entry of each stage of one pipeline's store.
pub struct Latest {
    pub config: PipelineConfig,
    store: Store,
}

impl Latest {
    /// Loads `config_file` (checked against `registry`) and opens its store.
    pub fn open(config_file: &Path, registry: &Registry) -> Result<Latest, DagError> {
        let config = PipelineConfig::load(config_file, registry)?;
        let store =
            Store::open(&config.artifacts).map_err(|e| DagError::io(&config.artifacts, e))?;
        Ok(Latest { config, store })
    }

    /// The folder of `stage`'s latest entry; an error that says how to make one if it has none.
    pub fn dir(&self, stage: &str) -> Result<PathBuf, DagError> {
        let key = self.store.latest(stage).ok_or_else(|| DagError::NotRun {
            stage: stage.to_string(),
            artifacts: self.config.artifacts.clone(),
            config: self.config.file.clone(),
        })?;
        Ok(self.store.entry_dir(stage, &key))
    }

    /// The manifest of `stage`'s latest entry (its params, key and outputs).
    pub fn manifest(&self, stage: &str) -> Result<Manifest, DagError> {
        let d = self.dir(stage)?;
        Manifest::read(&d).map_err(|e| DagError::io(&d, e))
    }

    /// A path param of `stage`'s latest entry, resolved against the pipeline file's folder.
    pub fn path_param(&self, stage: &str, name: &str) -> Result<PathBuf, DagError> {
        let m = self.manifest(stage)?;
        let value = m.params.str(name).map_err(|source| DagError::Param {
            stage: stage.to_string(),
            source,
        })?;
        Ok(super::stage::resolve_path(&self.config.base_dir, value))
    }
}
