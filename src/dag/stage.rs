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

    /// Whether the work splits into shards (`fashionbert run STAGE --shard I/N`): such a stage
    /// implements [`Stage::run_shard`] and [`Stage::merge`], and `merge` over every shard's
    /// part must write exactly what `run` writes.
    fn shardable(&self) -> bool {
        false
    }

    /// Does shard `shard` of the work, writing a part into `ctx.out_dir()` (files of the
    /// stage's choosing; only its own `merge` reads them). It must not depend on which other
    /// shards exist or run: a part is a pure function of the inputs, params and `shard`.
    fn run_shard(&self, _ctx: &mut RunContext, shard: ShardId) -> Result<(), StageError> {
        Err(format!(
            "stage `{}` cannot run as shard {shard}: it does not split into shards",
            self.spec().name
        )
        .into())
    }

    /// Writes the stage's outputs into `ctx.out_dir()` from the parts of shards 0..N (in
    /// shard order, each a directory `run_shard` wrote), without redoing their work.
    fn merge(&self, _ctx: &mut RunContext, _parts: &[PathBuf]) -> Result<(), StageError> {
        Err(format!(
            "stage `{}` does not split into shards, so it has no parts to merge",
            self.spec().name
        )
        .into())
    }
}

/// Shard `index` of `count` (0-based: `0/4` … `3/4`), as `--shard I/N` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId {
    pub index: usize,
    pub count: usize,
}

impl ShardId {
    /// The most shards a run splits into: enough for any job array, small enough that a
    /// typo (`--shard 3/40000`) is caught.
    pub const MAX_COUNT: usize = 65_536;

    pub fn new(index: usize, count: usize) -> Result<ShardId, String> {
        if count == 0 || count > Self::MAX_COUNT {
            return Err(format!(
                "shard count {count} is out of range: give 1 to {} shards",
                Self::MAX_COUNT
            ));
        }
        if index >= count {
            return Err(format!(
                "shard {index}/{count} does not exist: shards are numbered 0 to {} (0-based, as \
                 SLURM_ARRAY_TASK_ID with --array=0-{} and JOB_COMPLETION_INDEX are)",
                count - 1,
                count - 1
            ));
        }
        Ok(ShardId { index, count })
    }

    /// Which of `count` shards a work unit belongs to, by a stable hash of its key (blake3,
    /// so the same on every machine and in every version).
    pub fn of_key(key: &str, count: usize) -> usize {
        let h = blake3::hash(key.as_bytes());
        let mut b = [0u8; 8];
        b.copy_from_slice(&h.as_bytes()[..8]);
        (u64::from_le_bytes(b) % count as u64) as usize
    }

    /// Whether a work unit with this key is this shard's.
    pub fn owns(&self, key: &str) -> bool {
        Self::of_key(key, self.count) == self.index
    }
}

impl std::str::FromStr for ShardId {
    type Err = String;

    /// `I/N`, e.g. `0/4`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a shard: write I/N, e.g. 0/4 for the first of 4 shards");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let i: usize = i.trim().parse().map_err(|_| bad())?;
        let n: usize = n.trim().parse().map_err(|_| bad())?;
        ShardId::new(i, n)
    }
}

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
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

    /// The params as the stage's typed struct (declared with `stage_params!`).
    pub fn typed_params<T: super::params::StageParams>(&self) -> Result<T, StageError> {
        Ok(T::from_params(&self.params)?)
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
    fn shard_ids_parse_and_split_keys_stably() {
        let s: ShardId = "2/4".parse().unwrap();
        assert_eq!(s, ShardId { index: 2, count: 4 });
        assert_eq!(s.to_string(), "2/4");
        for bad in [
            "4/4", "0/0", "a/4", "1-4", "", "/4", "1/", "-1/4", "1/70000",
        ] {
            assert!(bad.parse::<ShardId>().is_err(), "{bad}");
        }
        let e = "4/4".parse::<ShardId>().unwrap_err();
        assert!(e.contains("numbered 0 to 3"), "{e}");
        // Spread evenly over the shards.
        let counts = (0..4000).fold([0usize; 4], |mut c, i| {
            c[ShardId::of_key(&format!("img-{i:06}"), 4)] += 1;
            c
        });
        assert!(counts.iter().all(|&c| c > 900 && c < 1100), "{counts:?}");
        let one = ShardId::new(0, 1).unwrap();
        assert!(one.owns("anything"));
    }

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
