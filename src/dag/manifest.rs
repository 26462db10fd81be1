//! `manifest.json`: what a store entry is, how it was made and what it holds.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::params::Params;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutputFile {
    /// Path relative to the entry directory.
    pub path: String,
    pub bytes: u64,
    /// blake3 of the file's content.
    pub blake3: String,
    /// Row count, for parquet files.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rows: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub stage: String,
    pub key: String,
    /// The stage's code version (its `StageSpec::version`).
    pub code_version: u32,
    pub params: Params,
    /// Upstream stage name → the key of the entry this one was built from.
    pub upstream: BTreeMap<String, String>,
    /// Upstream stage name → what it contributed to this key: `key:<key>`, or
    /// `files:<file>=<blake3>;…` for a stage that reads only some of its upstream's files.
    #[serde(default)]
    pub deps: BTreeMap<String, String>,
    /// Raw input path (as resolved) → content hash.
    pub inputs: BTreeMap<String, String>,
    pub outputs: Vec<OutputFile>,
    pub started_at: String,
    pub finished_at: String,
    pub seconds: f64,
    /// Counts the stage reported (rejected rows, fallbacks, ...).
    #[serde(default)]
    pub counts: BTreeMap<String, u64>,
    /// Free-form notes the stage reported.
    #[serde(default)]
    pub notes: BTreeMap<String, serde_json::Value>,
    /// The `[runtime]` section in effect (device, threads): recorded, not part of the key.
    #[serde(default)]
    pub runtime: Params,
    pub tool_version: String,
}

impl Manifest {
    pub const FILE: &'static str = "manifest.json";

    pub fn read(dir: &Path) -> std::io::Result<Manifest> {
        let text = std::fs::read_to_string(dir.join(Self::FILE))?;
        serde_json::from_str(&text).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", dir.join(Self::FILE).display()),
            )
        })
    }

    pub fn output(&self, path: &str) -> Option<&OutputFile> {
        self.outputs.iter().find(|o| o.path == path)
    }
}
