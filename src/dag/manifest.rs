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

    /// Reads and checks `dir/manifest.json`. The file is opened only if it is a regular file
    /// (a FIFO or device there is refused without blocking), and every output path must be a
    /// plain relative name inside the entry (see [`check_output_path`]).
    pub fn read(dir: &Path) -> std::io::Result<Manifest> {
        let path = dir.join(Self::FILE);
        let bytes = super::fsafe::read_regular(&path)?;
        let invalid = |msg: String| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {msg}", path.display()),
            )
        };
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        for o in &m.outputs {
            check_output_path(&o.path).map_err(invalid)?;
        }
        Ok(m)
    }

    pub fn output(&self, path: &str) -> Option<&OutputFile> {
        self.outputs.iter().find(|o| o.path == path)
    }

    /// The output paths ending in `suffix` (`.parquet`, `.png`), in manifest order.
    pub fn outputs_ending(&self, suffix: &str) -> Vec<&str> {
        self.outputs
            .iter()
            .map(|o| o.path.as_str())
            .filter(|p| p.ends_with(suffix))
            .collect()
    }
}

/// An output path as a manifest may name it: relative, made of plain names only (no `..`,
/// `.`, root or empty parts), so it always lies inside its entry.
pub fn check_output_path(p: &str) -> Result<(), String> {
    use std::path::Component;
    let path = Path::new(p);
    let plain = !p.is_empty()
        && !p.contains('\0')
        && path.components().all(|c| matches!(c, Component::Normal(_)))
        && !p
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if plain {
        Ok(())
    } else {
        Err(format!(
            "output path {p:?} is not a plain relative name inside the entry (no `..`, no absolute paths)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::check_output_path;

    #[test]
    fn output_paths_stay_inside_the_entry() {
        for ok in ["pairs.parquet", "images/ab12.png", "shards/00000.f16"] {
            assert!(check_output_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../../../../outside/pairs.parquet",
            "images/../../x",
            "./pairs.parquet",
            "a//b",
            "a/",
        ] {
            assert!(check_output_path(bad).is_err(), "{bad:?} accepted");
        }
    }
}
