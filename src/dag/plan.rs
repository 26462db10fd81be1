//! Planning (`status`): which stages of a pipeline are cached in the store and which will run,
//! and why.
//!
//! It holds the plan's types ([`Why`], [`State`], [`PlanItem`]), the cache key of a stage
//! ([`stage_key`]), and `Pipeline`: a pipeline bound to its registered stages and its store,
//! which plans one stage (`plan_stage`) and walks the wanted stages in topological order
//! (`walk`), the one loop that both `status` and `run` go through. Execution adds its own
//! methods to `Pipeline` in `execute.rs`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::DagError;
use super::config::{PipelineConfig, Registry};
use super::graph;
use super::hash::{HashCache, digest};
use super::params::{ParamKind, ParamSpec, ParamValue, Params};
use super::parts::Parts;
use super::stage::{Input, RawInput, relative_to, resolve_path};
use super::store::{Check, EntryState, Store};

/// Why a stage will run.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Why {
    NeverRun,
    Forced,
    CodeChanged {
        from: u32,
        to: u32,
    },
    ParamsChanged {
        changes: Vec<String>,
    },
    UpstreamChanged {
        stages: Vec<String>,
    },
    InputChanged {
        paths: Vec<String>,
    },
    /// The entry for this key exists but does not match its manifest.
    Damaged {
        problems: Vec<String>,
    },
    /// Shards of this key have run (`run STAGE --shard I/N`): the run computes the missing
    /// ones and merges.
    Shards {
        done: usize,
        count: usize,
    },
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::NeverRun => write!(f, "never run"),
            Why::Forced => write!(f, "forced"),
            Why::CodeChanged { from, to } => write!(f, "code changed (v{from} → v{to})"),
            Why::ParamsChanged { changes } => write!(f, "params changed: {}", changes.join(", ")),
            Why::UpstreamChanged { stages } => write!(f, "upstream changed: {}", stages.join(", ")),
            Why::InputChanged { paths } => write!(f, "input file changed: {}", paths.join(", ")),
            Why::Damaged { problems } => {
                write!(f, "cached entry damaged: {}", problems.join("; "))
            }
            Why::Shards { done, count } if done == count => {
                write!(f, "{done}/{count} shards done: the run merges them")
            }
            Why::Shards { done, count } => write!(
                f,
                "{done}/{count} shards done: the run computes the other {} and merges",
                count - done
            ),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// The entry for this key exists; nothing to do.
    Cached,
    WillRun,
}

/// One stage in a plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanItem {
    pub stage: String,
    /// `None` while pending: an upstream stage will run and this one reads only some of its
    /// files, so its key is known only after that stage has run.
    pub key: Option<String>,
    pub state: State,
    pub why: Vec<Why>,
    pub dir: PathBuf,
    #[serde(skip)]
    pub upstream: BTreeMap<String, String>,
    /// What each upstream stage contributes to the key (its key, or the hashes of the files read).
    #[serde(skip)]
    pub digests: BTreeMap<String, String>,
    #[serde(skip)]
    pub inputs: BTreeMap<String, String>,
}

/// A pipeline bound to its registered stages and its artefact store: what planning and
/// execution read. Cheap to copy; the [`Runner`](super::Runner) lends one out.
#[derive(Clone, Copy)]
pub(super) struct Pipeline<'a> {
    pub(super) registry: &'a Registry,
    pub(super) config: &'a PipelineConfig,
    pub(super) store: &'a Store,
}

impl Pipeline<'_> {
    /// The named stages, checked to be in the pipeline; all stages when none are named.
    pub(super) fn check_targets(&self, targets: &[String]) -> Result<Vec<String>, DagError> {
        if targets.is_empty() {
            return Ok(self.config.stages.iter().map(|s| s.name.clone()).collect());
        }
        for t in targets {
            if self.config.stage(t).is_none() {
                return Err(DagError::UnknownTarget {
                    name: t.clone(),
                    known: self.config.stages.iter().map(|s| s.name.clone()).collect(),
                });
            }
        }
        Ok(targets.to_vec())
    }

    /// The stages of this pipeline that split into shards.
    pub(super) fn shardable_stages(&self) -> Vec<String> {
        self.config
            .stages
            .iter()
            .filter(|s| self.registry.get(&s.name).is_some_and(|s| s.shardable()))
            .map(|s| s.name.clone())
            .collect()
    }

    /// The error for asking `stage` for shards when it does not split into them.
    pub(super) fn not_shardable(&self, stage: &str) -> DagError {
        DagError::NotShardable {
            stage: stage.to_string(),
            shardable: self.shardable_stages(),
        }
    }

    /// The parts the shards of `stage`'s entry `key` have written so far.
    pub(super) fn parts(&self, stage: &str, key: &str) -> Result<Parts, DagError> {
        self.store
            .parts(stage, key)
            .map_err(|e| DagError::io(&self.store.parts_dir(stage, key), e))
    }

    /// The walk over the stage graph that planning and running share: plans each of the
    /// (checked) `targets` and their upstream in topological order (`force` forces the
    /// targets, not their upstream) and hands the item to `visit`, which may act on it (run
    /// the stage) and returns the item the stages downstream are planned against. Returns
    /// those items by stage.
    pub(super) fn walk(
        &self,
        targets: &[String],
        force: bool,
        cache: &mut HashCache,
        mut visit: impl FnMut(PlanItem, &mut HashCache) -> Result<PlanItem, DagError>,
    ) -> Result<BTreeMap<String, PlanItem>, DagError> {
        let wanted = graph::with_upstream(&self.config.stages, targets);
        let mut done: BTreeMap<String, PlanItem> = BTreeMap::new();
        for sc in self
            .config
            .stages
            .iter()
            .filter(|s| wanted.contains(&s.name))
        {
            let forced = force && targets.contains(&sc.name);
            let item = self.plan_stage(&sc.name, &done, forced, cache)?;
            let item = visit(item, cache)?;
            done.insert(sc.name.clone(), item);
        }
        Ok(done)
    }

    /// What an upstream stage contributes to a key: its key, or the hashes of the files read.
    /// `None` while that is not known yet (the upstream will run and only some files are read).
    fn dep_digest(&self, input: &Input, up: &PlanItem) -> Result<Option<String>, DagError> {
        let Some(key) = &up.key else { return Ok(None) };
        if input.files.is_empty() {
            return Ok(Some(format!("key:{key}")));
        }
        if up.state == State::WillRun {
            return Ok(None);
        }
        let m = self
            .store
            .manifest(&up.stage, key)
            .map_err(|e| DagError::io(&up.dir, e))?;
        let mut parts = Vec::new();
        for f in input.files {
            let o = m.output(f).ok_or_else(|| DagError::MissingOutput {
                stage: up.stage.clone(),
                path: f.to_string(),
            })?;
            parts.push(format!("{f}={}", o.blake3));
        }
        Ok(Some(format!("files:{}", parts.join(";"))))
    }

    /// Plans stage `name` against the plan items of its upstream stages (`done`).
    pub(super) fn plan_stage(
        &self,
        name: &str,
        done: &BTreeMap<String, PlanItem>,
        forced: bool,
        cache: &mut HashCache,
    ) -> Result<PlanItem, DagError> {
        let sc = self.config.stage(name).expect("validated");
        let stage = self.registry.get(name).expect("validated");
        let spec = stage.spec();
        let raw = stage
            .raw_inputs(&sc.params, &self.config.base_dir)
            .map_err(|e| DagError::Stage {
                stage: sc.name.clone(),
                source: e,
            })?;
        let mut inputs = BTreeMap::new();
        for r in raw {
            let p = r.path().to_path_buf();
            let h = match &r {
                RawInput::File(p) => cache.file(p),
                RawInput::Dir(p) => cache.dir(p),
            }
            .map_err(|e| DagError::Input {
                stage: sc.name.clone(),
                path: p.clone(),
                source: e,
            })?;
            // Keyed by the path relative to the config, so the key does not depend on the
            // directory the command was started from.
            let label = relative_to(&self.config.base_dir, &p);
            inputs.insert(label.to_string_lossy().into_owned(), h);
        }
        let mut upstream = BTreeMap::new();
        let mut digests = BTreeMap::new();
        let mut pending = Vec::new();
        for d in &sc.deps {
            let up = &done[d];
            let input = spec
                .inputs
                .iter()
                .find(|i| i.stage == d)
                .copied()
                .unwrap_or(Input::all(""));
            if let Some(k) = &up.key {
                upstream.insert(d.clone(), k.clone());
            }
            match self.dep_digest(&input, up)? {
                Some(dg) => {
                    digests.insert(d.clone(), dg);
                }
                None => pending.push(d.clone()),
            }
        }
        let dir_of = |key: &Option<String>| match key {
            Some(k) => self.store.entry_dir(name, k),
            None => self.store.stage_dir(name).join("(pending)"),
        };
        if !pending.is_empty() {
            let key = None;
            return Ok(PlanItem {
                stage: name.to_string(),
                dir: dir_of(&key),
                key,
                state: State::WillRun,
                why: vec![Why::UpstreamChanged {
                    stages: pending.iter().map(|p| format!("{p} (will run; this stage reruns only if the files it reads change)")).collect(),
                }],
                upstream,
                digests,
                inputs,
            });
        }
        let key = stage_key(
            &sc.name,
            spec.version,
            &key_params(&sc.params, spec.params, &self.config.base_dir),
            &digests,
            &inputs,
        );
        let entry = self.store.verify(name, &key, Check::Quick);
        let (state, why) = if entry == EntryState::Valid && !forced {
            (State::Cached, vec![])
        } else {
            let mut why = Vec::new();
            match entry {
                EntryState::Damaged(problems) => why.push(Why::Damaged { problems }),
                EntryState::Valid => why.push(Why::Forced),
                EntryState::Absent => {}
            }
            match self
                .store
                .latest(name)
                .and_then(|k| self.store.manifest(name, &k).ok())
            {
                None if why.is_empty() => why.push(Why::NeverRun),
                None => {}
                Some(prev) if prev.key != key => {
                    if prev.code_version != spec.version {
                        why.push(Why::CodeChanged {
                            from: prev.code_version,
                            to: spec.version,
                        });
                    }
                    let changes: Vec<String> = sc
                        .params
                        .diff(&prev.params)
                        .into_iter()
                        .map(|(n, old, new)| format!("{n} {} → {}", show(&old), show(&new)))
                        .collect();
                    if !changes.is_empty() {
                        why.push(Why::ParamsChanged { changes });
                    }
                    let ups: Vec<String> = digests
                        .iter()
                        .filter(|(d, g)| prev.deps.get(*d) != Some(*g))
                        .map(|(d, _)| {
                            if done.get(d).map(|u| &u.state) == Some(&State::WillRun) {
                                format!("{d} (will run)")
                            } else {
                                d.clone()
                            }
                        })
                        .collect();
                    if !ups.is_empty() {
                        why.push(Why::UpstreamChanged { stages: ups });
                    }
                    let paths: Vec<String> = inputs
                        .iter()
                        .filter(|(p, h)| prev.inputs.get(*p) != Some(*h))
                        .map(|(p, _)| p.clone())
                        .chain(
                            prev.inputs
                                .keys()
                                .filter(|p| !inputs.contains_key(*p))
                                .cloned(),
                        )
                        .collect();
                    if !paths.is_empty() {
                        why.push(Why::InputChanged { paths });
                    }
                }
                Some(_) => {}
            }
            if stage.shardable()
                && let Some((count, done)) = self.parts(name, &key)?.best()
            {
                why.push(Why::Shards {
                    done: done.len(),
                    count,
                });
            }
            (State::WillRun, why)
        };
        let key = Some(key);
        Ok(PlanItem {
            stage: name.to_string(),
            dir: dir_of(&key),
            key,
            state,
            why,
            upstream,
            digests,
            inputs,
        })
    }
}

/// The cache key of a stage: a digest of everything that determines its outputs. `upstream`
/// maps each upstream stage to its contribution (its key, or the hashes of the files read).
pub fn stage_key(
    stage: &str,
    version: u32,
    params_json: &str,
    upstream: &BTreeMap<String, String>,
    inputs: &BTreeMap<String, String>,
) -> String {
    let doc = serde_json::json!({
        "stage": stage,
        "version": version,
        "params": serde_json::from_str::<serde_json::Value>(params_json).expect("json"),
        "upstream": upstream,
        "inputs": inputs,
    });
    digest(doc.to_string().as_bytes())[..20].to_string()
}

/// A key as progress lines show it.
pub(super) fn short(key: &str) -> &str {
    &key[..key.len().min(12)]
}

fn show(v: &Option<ParamValue>) -> String {
    match v {
        Some(v) => v.to_string(),
        None => "(unset)".into(),
    }
}

/// The params as a stage key hashes them: each [`ParamKind::Path`] value that names an
/// existing file or folder as its path relative to `base` after resolving, so that the same
/// file given absolutely, through a symlink or as `./x` keeps the key (and a project moved
/// as a whole keeps its keys).
pub(crate) fn key_params(params: &Params, specs: &[ParamSpec], base: &std::path::Path) -> String {
    let mut p = params.clone();
    for s in specs.iter().filter(|s| s.kind == ParamKind::Path) {
        if let Some(ParamValue::Str(v)) = params.get(s.name) {
            let full = resolve_path(base, v);
            if full.exists() {
                let rel = relative_to(base, &full).to_string_lossy().into_owned();
                p.set(s.name, ParamValue::Str(rel));
            }
        }
    }
    p.canonical_json()
}
