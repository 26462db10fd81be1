//! What a stage is to the runner: a declared spec (upstream stages, params, outputs, code
//! version) and a `run` that writes its outputs into a directory the runner gives it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::manifest::Manifest;
use super::params::{ParamSpec, Params};

/// The error type stages return. The runner is generic: it only needs to print it.
pub type StageError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything a stage declares about itself, in one place.
#[derive(Debug, Clone, Copy)]
pub struct StageSpec {
    /// The stage's name, as used in `pipeline.toml` and the artefact store.
    pub name: &'static str,
    /// Bump when the stage's code changes what it writes: part of the cache key.
    pub version: u32,
    /// One line for `fashionbert dag` and `--help`.
    pub about: &'static str,
    /// Upstream stages whose outputs this stage reads. The config's `deps` must list them.
    pub inputs: &'static [Input],
    /// The parameters it accepts.
    pub params: &'static [ParamSpec],
    /// The files it writes (a trailing `/` names a directory). Checked after each run.
    pub outputs: &'static [&'static str],
}

/// An upstream stage a stage reads: all of its entry (its key goes into this stage's key), or
/// only some files (their content hashes go into the key, so an upstream re-run that leaves
/// them unchanged does not invalidate this stage — as DVC's file dependencies).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Input {
    pub stage: &'static str,
    /// Empty: the whole entry.
    pub files: &'static [&'static str],
}

impl Input {
    pub const fn all(stage: &'static str) -> Input {
        Input { stage, files: &[] }
    }

    pub const fn files(stage: &'static str, files: &'static [&'static str]) -> Input {
        Input { stage, files }
    }
}

/// A raw input read from outside the store: its content hash is part of the cache key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum RawInput {
    File(PathBuf),
    /// Every file under the directory, recursively.
    Dir(PathBuf),
}

impl RawInput {
    pub fn path(&self) -> &Path {
        match self {
            RawInput::File(p) | RawInput::Dir(p) => p,
        }
    }
}

/// A stage implementation.
pub trait Stage: Send + Sync {
    fn spec(&self) -> &'static StageSpec;

    /// The raw files this configuration reads (paths already resolved against `base`, the
    /// directory of the config file). The default is none.
    fn raw_inputs(&self, _params: &Params, _base: &Path) -> Result<Vec<RawInput>, StageError> {
        Ok(Vec::new())
    }

    /// Does the work: reads upstream outputs and raw inputs, writes into `ctx.out_dir()`.
    fn run(&self, ctx: &mut RunContext) -> Result<(), StageError>;
}

/// What a stage sees while it runs.
pub struct RunContext {
    pub(crate) stage: String,
    pub(crate) key: String,
    pub(crate) params: Params,
    pub(crate) runtime: Params,
    pub(crate) base_dir: PathBuf,
    pub(crate) out_dir: PathBuf,
    pub(crate) work_dir: PathBuf,
    pub(crate) upstream: BTreeMap<String, (PathBuf, Manifest)>,
    pub(crate) counts: BTreeMap<String, u64>,
    pub(crate) notes: BTreeMap<String, serde_json::Value>,
    pub(crate) resume: bool,
}

impl RunContext {
    /// Builds a context by hand: for running a stage outside the runner (tests, tools).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        stage: &str,
        key: &str,
        params: Params,
        runtime: Params,
        base_dir: PathBuf,
        out_dir: PathBuf,
        work_dir: PathBuf,
        upstream: BTreeMap<String, (PathBuf, Manifest)>,
        resume: bool,
    ) -> Self {
        Self {
            stage: stage.into(),
            key: key.into(),
            params,
            runtime,
            base_dir,
            out_dir,
            work_dir,
            upstream,
            counts: BTreeMap::new(),
            notes: BTreeMap::new(),
            resume,
        }
    }

    pub fn stage(&self) -> &str {
        &self.stage
    }

    /// This run's cache key.
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The `[runtime]` section (device, threads, ...): not part of any cache key.
    pub fn runtime(&self) -> &Params {
        &self.runtime
    }

    /// Resolves a path from the config against the config file's directory.
    pub fn resolve(&self, p: &str) -> PathBuf {
        resolve_path(&self.base_dir, p)
    }

    /// The directory to write outputs into. It becomes the store entry only if `run` succeeds.
    pub fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    pub fn out(&self, name: &str) -> PathBuf {
        self.out_dir.join(name)
    }

    /// A directory that survives an interrupted run of this key (checkpoints). Removed after
    /// the stage succeeds.
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// Whether the user asked to resume an interrupted run from `work_dir`.
    pub fn resume(&self) -> bool {
        self.resume
    }

    /// The output directory of an upstream stage.
    pub fn input_dir(&self, stage: &str) -> Result<&Path, StageError> {
        self.upstream
            .get(stage)
            .map(|(p, _)| p.as_path())
            .ok_or_else(|| format!("stage `{}` read the outputs of `{stage}`, which is not among its inputs (a bug: add it to the stage's spec)", self.stage).into())
    }

    pub fn input(&self, stage: &str, file: &str) -> Result<PathBuf, StageError> {
        Ok(self.input_dir(stage)?.join(file))
    }

    /// The manifest of an upstream stage.
    pub fn input_manifest(&self, stage: &str) -> Result<&Manifest, StageError> {
        self.upstream
            .get(stage)
            .map(|(_, m)| m)
            .ok_or_else(|| format!("stage `{}` has no input `{stage}`", self.stage).into())
    }

    /// Records a count for the manifest (for example `rejected`), and prints nothing.
    pub fn count(&mut self, name: &str, n: u64) {
        *self.counts.entry(name.to_string()).or_default() += n;
    }

    /// Records a free-form note (JSON) for the manifest: summaries, measured speeds.
    pub fn note(&mut self, name: &str, value: serde_json::Value) {
        self.notes.insert(name.to_string(), value);
    }
}

/// `p` as given if absolute, else relative to `base`; `dir/..` pairs are folded away so paths
/// print as a user would write them (`pipelines/../artifacts` → `artifacts`).
pub fn resolve_path(base: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            std::path::Component::ParentDir
                if matches!(
                    out.components().next_back(),
                    Some(std::path::Component::Normal(_))
                ) =>
            {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

/// The directory a file is in: "." for a bare file name (whose `parent()` is the empty path,
/// which names no directory).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `path` relative to `base` (both resolved through the file system where they exist), for
/// storing paths that do not depend on the directory a command was started from.
pub fn relative_to(base: &Path, path: &Path) -> PathBuf {
    let (Ok(b), Ok(p)) = (std::fs::canonicalize(base), std::fs::canonicalize(path)) else {
        return path
            .strip_prefix(base)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| path.to_path_buf());
    };
    let bc: Vec<_> = b.components().collect();
    let pc: Vec<_> = p.components().collect();
    let common = bc.iter().zip(&pc).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..bc.len() {
        out.push("..");
    }
    for c in &pc[common..] {
        out.push(c.as_os_str());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_and_relativise() {
        assert_eq!(
            resolve_path(Path::new("pipelines"), "../artifacts"),
            PathBuf::from("artifacts")
        );
        assert_eq!(
            resolve_path(Path::new("pipelines"), "../../shared/x.csv"),
            PathBuf::from("../shared/x.csv")
        );
        assert_eq!(
            resolve_path(Path::new("."), "weights/v.txt"),
            PathBuf::from("weights/v.txt")
        );
        assert_eq!(
            resolve_path(Path::new("a"), "/abs/p"),
            PathBuf::from("/abs/p")
        );
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("repo/pipelines")).unwrap();
        std::fs::create_dir_all(d.path().join("shared")).unwrap();
        std::fs::write(d.path().join("shared/x.csv"), "").unwrap();
        let rel = relative_to(
            &d.path().join("repo/pipelines"),
            &d.path().join("repo/pipelines/../../shared/x.csv"),
        );
        assert_eq!(rel, PathBuf::from("../../shared/x.csv"));
        assert_eq!(parent_dir(Path::new("products.csv")), PathBuf::from("."));
        assert_eq!(
            parent_dir(Path::new("data/products.csv")),
            PathBuf::from("data")
        );
    }
}
