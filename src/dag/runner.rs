//! Planning (`status`) and execution (`run`) of a pipeline against the store.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use serde::Serialize;

use super::config::{PipelineConfig, Registry};
use super::graph;
use super::hash::{HashCache, digest, hash_file};
use super::lock::StoreLock;
use super::manifest::{Manifest, OutputFile};
use super::params::ParamValue;
use super::parts::PartManifest;
use super::stage::{Input, RawInput, RunContext, ShardId};
use super::store::{Check, EntryState, Store, list_files};
use super::{DagError, table_rows};
use crate::progress;

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

/// What a run did with one stage.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub stage: String,
    pub key: String,
    pub ran: bool,
    pub seconds: f64,
    pub dir: PathBuf,
}

pub struct Runner<'a> {
    registry: &'a Registry,
    config: &'a PipelineConfig,
    store: Store,
}

/// Options of `run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Re-run the named stages even if cached (not their upstream).
    pub force: bool,
    /// Resume interrupted stages from their work directories.
    pub resume: bool,
    /// Fail instead of waiting when another run holds the store.
    pub no_wait: bool,
    /// Fail, naming the files, instead of rebuilding a damaged cached entry.
    pub no_rebuild: bool,
    /// For the named (shardable) stages: only merge the parts their shards wrote, and fail,
    /// naming the missing shards, when some have not run (`fashionbert merge`).
    pub merge_only: bool,
}

/// What `run STAGE --shard I/N` did.
#[derive(Debug, Clone, PartialEq)]
pub enum ShardOutcome {
    /// Computed and committed the part.
    Done { seconds: f64 },
    /// The part was there already (a retried or duplicated shard): nothing done.
    AlreadyDone,
    /// The stage's whole entry is already in the store: nothing to do.
    EntryCached,
}

impl<'a> Runner<'a> {
    pub fn new(registry: &'a Registry, config: &'a PipelineConfig) -> Result<Self, DagError> {
        let store =
            Store::open(&config.artifacts).map_err(|e| DagError::io(&config.artifacts, e))?;
        Ok(Self {
            registry,
            config,
            store,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn check_targets(&self, targets: &[String]) -> Result<Vec<String>, DagError> {
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

    /// Computes keys and states for the named stages and their upstream (all stages when none
    /// are named), in topological order. Reads only; hashes raw inputs (cached). A stage that
    /// reads particular files of an upstream stage that will run has a pending key: whether it
    /// runs depends on whether those files change.
    pub fn plan(
        &self,
        targets: &[String],
        force: bool,
        cache: &mut HashCache,
    ) -> Result<Vec<PlanItem>, DagError> {
        let targets = self.check_targets(targets)?;
        let wanted = graph::with_upstream(&self.config.stages, &targets);
        let mut done: BTreeMap<String, PlanItem> = BTreeMap::new();
        let mut plan = Vec::new();
        for sc in self
            .config
            .stages
            .iter()
            .filter(|s| wanted.contains(&s.name))
        {
            let forced = force && targets.contains(&sc.name);
            let item = self.plan_stage(&sc.name, &done, forced, cache)?;
            done.insert(sc.name.clone(), item.clone());
            plan.push(item);
        }
        Ok(plan)
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

    fn plan_stage(
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
            let label = super::stage::relative_to(&self.config.base_dir, &p);
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
            &sc.params.canonical_json(),
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
            if stage.shardable() {
                let parts = self
                    .store
                    .parts(name, &key)
                    .map_err(|e| DagError::io(&self.store.parts_dir(name, &key), e))?;
                if let Some((count, done)) = parts.best() {
                    why.push(Why::Shards {
                        done: done.len(),
                        count,
                    });
                }
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

    /// Brings the named stages (all when none) and their upstream up to date. Each stage's key
    /// is computed when its upstream is done, so a stage whose inputs came out unchanged is
    /// not run again.
    pub fn run(&self, targets: &[String], opts: &RunOptions) -> Result<Vec<Outcome>, DagError> {
        let _lock = self.lock_and_clean(opts)?;
        let mut cache = self.store.hash_cache();
        let targets = self.check_targets(targets)?;
        Ok(self.run_locked(&targets, opts, &mut cache)?.0)
    }

    fn lock_and_clean(&self, opts: &RunOptions) -> Result<StoreLock, DagError> {
        let lock = StoreLock::acquire(self.store.root(), !opts.no_wait)?;
        let mut stale = self
            .store
            .remove_stale()
            .map_err(|e| DagError::io(self.store.root(), e))?;
        for name in self.shardable_stages() {
            stale.extend(
                self.store
                    .remove_stale_parts(&name)
                    .map_err(|e| DagError::io(&self.store.stage_dir(&name), e))?,
            );
        }
        for p in stale {
            tracing::info!(
                "removed the leftovers of an interrupted run: {}",
                p.display()
            );
        }
        Ok(lock)
    }

    /// The stages of this pipeline that split into shards.
    fn shardable_stages(&self) -> Vec<String> {
        self.config
            .stages
            .iter()
            .filter(|s| self.registry.get(&s.name).is_some_and(|s| s.shardable()))
            .map(|s| s.name.clone())
            .collect()
    }

    /// `run` under the lock; also returns each stage's (now cached) plan item.
    fn run_locked(
        &self,
        targets: &[String],
        opts: &RunOptions,
        cache: &mut HashCache,
    ) -> Result<(Vec<Outcome>, BTreeMap<String, PlanItem>), DagError> {
        let wanted = graph::with_upstream(&self.config.stages, targets);
        let mut done: BTreeMap<String, PlanItem> = BTreeMap::new();
        let mut outcomes = Vec::new();
        for sc in self
            .config
            .stages
            .iter()
            .filter(|s| wanted.contains(&s.name))
        {
            let forced = opts.force && targets.contains(&sc.name);
            let item = self.plan_stage(&sc.name, &done, forced, cache)?;
            cache
                .save()
                .map_err(|e| DagError::io(&self.store.hash_cache_file(), e))?;
            let key = item
                .key
                .clone()
                .expect("upstream is done, so the key is known");
            if item.state == State::Cached {
                self.store
                    .set_latest(&item.stage, &key)
                    .map_err(|e| DagError::io(&item.dir, e))?;
                progress::println(format!(
                    "  {:<10} cached    {}  {}",
                    item.stage,
                    short(&key),
                    item.dir.display()
                ));
                outcomes.push(Outcome {
                    stage: item.stage.clone(),
                    key: key.clone(),
                    ran: false,
                    seconds: 0.0,
                    dir: item.dir.clone(),
                });
            } else {
                if opts.no_rebuild
                    && let Some(Why::Damaged { problems }) =
                        item.why.iter().find(|w| matches!(w, Why::Damaged { .. }))
                {
                    return Err(DagError::Damaged {
                        stage: item.stage.clone(),
                        dir: item.dir.clone(),
                        problems: problems.clone(),
                    });
                }
                let merge_only = opts.merge_only && targets.contains(&sc.name);
                outcomes.push(self.execute_maybe_sharded(&item, opts, merge_only)?);
            }
            let mut item = item;
            item.state = State::Cached;
            done.insert(sc.name.clone(), item);
        }
        Ok((outcomes, done))
    }

    /// Runs shard `shard` of `target` (a stage that splits into shards): brings its upstream
    /// up to date under the store lock, then, without the lock (so that N shards run at once),
    /// computes its part and commits it. Idempotent: a part already there, or the stage's
    /// whole entry, means there is nothing to do.
    pub fn run_shard(
        &self,
        target: &str,
        shard: ShardId,
        opts: &RunOptions,
    ) -> Result<ShardOutcome, DagError> {
        self.check_targets(&[target.to_string()])?;
        let stage = self.registry.get(target).expect("validated");
        if !stage.shardable() {
            return Err(DagError::NotShardable {
                stage: target.to_string(),
                shardable: self.shardable_stages(),
            });
        }
        let item = {
            let _lock = self.lock_and_clean(opts)?;
            let mut cache = self.store.hash_cache();
            let deps = self.config.stage(target).expect("validated").deps.clone();
            let (_, done) = self.run_locked(&deps, opts, &mut cache)?;
            let item = self.plan_stage(target, &done, false, &mut cache)?;
            cache
                .save()
                .map_err(|e| DagError::io(&self.store.hash_cache_file(), e))?;
            item
        };
        let key = item
            .key
            .clone()
            .expect("upstream is done, so the key is known");
        if item.state == State::Cached {
            progress::println(format!(
                "  {:<10} cached    {}  {} (nothing for shard {shard} to do)",
                item.stage,
                short(&key),
                item.dir.display()
            ));
            return Ok(ShardOutcome::EntryCached);
        }
        if self.store.verify_part(target, &key, shard) == EntryState::Valid {
            progress::println(format!(
                "  {:<10} shard {shard} already done  {}",
                item.stage,
                self.store.part_dir(target, &key, shard).display()
            ));
            return Ok(ShardOutcome::AlreadyDone);
        }
        let seconds = self.execute_part(&item, shard, opts)?;
        let parts = self
            .store
            .parts(target, &key)
            .map_err(|e| DagError::io(&self.store.parts_dir(target, &key), e))?;
        let done = parts.done.get(&shard.count).map_or(0, |d| d.len());
        progress::println(format!(
            "✓ {:<10} shard {shard} done in {seconds:.1}s; {done}/{} shards done{}",
            item.stage,
            shard.count,
            if done == shard.count {
                format!(": `fashionbert merge {target}` (or the next `run`) assembles them")
            } else {
                String::new()
            }
        ));
        Ok(ShardOutcome::Done { seconds })
    }

    /// Computes one shard's part of a planned item and commits it. Returns its seconds.
    fn execute_part(
        &self,
        item: &PlanItem,
        shard: ShardId,
        opts: &RunOptions,
    ) -> Result<f64, DagError> {
        let key = item.key.clone().expect("known key");
        let sc = self.config.stage(&item.stage).expect("planned");
        let stage = self.registry.get(&item.stage).expect("validated");
        progress::println(format!(
            "▶ {:<10} shard {shard}  {}",
            item.stage,
            short(&key)
        ));
        let tmp = self
            .store
            .begin_part(&item.stage, &key, shard)
            .map_err(|e| DagError::io(&self.store.parts_dir(&item.stage, &key), e))?;
        let work = self.store.work_dir(
            &item.stage,
            &format!("{key}.part-{}-of-{}", shard.index, shard.count),
        );
        std::fs::create_dir_all(&work).map_err(|e| DagError::io(&work, e))?;
        let mut ctx = self.context(item, sc, tmp.clone(), work.clone(), opts)?;
        let t0 = Instant::now();
        if let Err(e) = stage.run_shard(&mut ctx, shard) {
            let _ = std::fs::remove_dir_all(&tmp);
            let _ = std::fs::remove_dir_all(&work);
            if self.store.has(&item.stage, &key) {
                // A merge committed the entry (and removed the parts, this one's directory
                // with them) while this shard ran: its work is no longer needed.
                tracing::info!(
                    "{}: shard {shard} stopped: the entry was assembled meanwhile ({e})",
                    item.stage
                );
                return Ok(t0.elapsed().as_secs_f64());
            }
            return Err(DagError::Stage {
                stage: item.stage.clone(),
                source: e,
            });
        }
        let seconds = t0.elapsed().as_secs_f64();
        let manifest = PartManifest {
            stage: item.stage.clone(),
            key: key.clone(),
            index: shard.index,
            count: shard.count,
            outputs: describe_outputs(&tmp)?,
            seconds,
            host: super::parts::hostname(),
            pid: std::process::id(),
            finished_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            counts: ctx.counts.clone(),
        };
        match self.store.commit_part(&tmp, &manifest) {
            Ok(_) => {}
            // The merge finished (and removed every part) while this shard ran.
            Err(_) if self.store.has(&item.stage, &key) => {}
            Err(e) => return Err(DagError::io(&tmp, e)),
        }
        let _ = std::fs::remove_dir_all(&work);
        Ok(seconds)
    }

    /// Runs a stage that will run: plainly, or, when shards of its key have run (or only a
    /// merge is asked for), by computing the missing shards and merging all of them.
    fn execute_maybe_sharded(
        &self,
        item: &PlanItem,
        opts: &RunOptions,
        merge_only: bool,
    ) -> Result<Outcome, DagError> {
        let stage = self.registry.get(&item.stage).expect("validated");
        let key = item.key.clone().expect("known key");
        if !stage.shardable() {
            if merge_only {
                return Err(DagError::NotShardable {
                    stage: item.stage.clone(),
                    shardable: self.shardable_stages(),
                });
            }
            return self.execute(item, opts, None);
        }
        let parts = self
            .store
            .parts(&item.stage, &key)
            .map_err(|e| DagError::io(&self.store.parts_dir(&item.stage, &key), e))?;
        let Some((count, _)) = parts.best() else {
            if merge_only {
                return Err(DagError::ShardsIncomplete {
                    stage: item.stage.clone(),
                    done: 0,
                    count: 0,
                    missing: vec![],
                });
            }
            return self.execute(item, opts, None);
        };
        // Damaged parts are recomputed like missing ones.
        let mut missing = parts.missing(count);
        for i in 0..count {
            let s = ShardId::new(i, count).expect("listed");
            if !missing.contains(&i)
                && let EntryState::Damaged(problems) = self.store.verify_part(&item.stage, &key, s)
            {
                tracing::warn!(
                    "{}: part {s} is damaged ({}); computing it again",
                    item.stage,
                    problems.join("; ")
                );
                let _ = std::fs::remove_dir_all(self.store.part_dir(&item.stage, &key, s));
                missing.push(i);
            }
        }
        missing.sort_unstable();
        if merge_only && !missing.is_empty() {
            return Err(DagError::ShardsIncomplete {
                stage: item.stage.clone(),
                done: count - missing.len(),
                count,
                missing,
            });
        }
        for &i in &missing {
            self.execute_part(item, ShardId::new(i, count).expect("in range"), opts)?;
        }
        let dirs: Vec<PathBuf> = (0..count)
            .map(|i| {
                self.store
                    .part_dir(&item.stage, &key, ShardId::new(i, count).expect("in range"))
            })
            .collect();
        let out = self.execute(item, opts, Some(&dirs))?;
        self.store
            .remove_parts(&item.stage, &key)
            .map_err(|e| DagError::io(&self.store.parts_dir(&item.stage, &key), e))?;
        Ok(out)
    }

    /// The context a stage (or one of its shards) runs in.
    fn context(
        &self,
        item: &PlanItem,
        sc: &super::config::StageConfig,
        out: PathBuf,
        work: PathBuf,
        opts: &RunOptions,
    ) -> Result<RunContext, DagError> {
        let key = item.key.clone().expect("known key");
        let mut upstream = BTreeMap::new();
        for (dep, key) in &item.upstream {
            let dir = self.store.entry_dir(dep, key);
            let m = Manifest::read(&dir).map_err(|e| DagError::io(&dir, e))?;
            upstream.insert(dep.clone(), (dir, m));
        }
        Ok(RunContext::new(
            &item.stage,
            &key,
            sc.params.clone(),
            self.config.runtime.clone(),
            self.config.base_dir.clone(),
            out,
            work,
            upstream,
            opts.resume,
        ))
    }

    /// Runs a stage into a fresh entry: `run`, or, given the parts of all its shards, `merge`.
    fn execute(
        &self,
        item: &PlanItem,
        opts: &RunOptions,
        parts: Option<&[PathBuf]>,
    ) -> Result<Outcome, DagError> {
        let key = item.key.clone().expect("known key");
        let sc = self.config.stage(&item.stage).expect("planned");
        let stage = self.registry.get(&item.stage).expect("validated");
        let spec = stage.spec();
        let why: Vec<String> = item.why.iter().map(|w| w.to_string()).collect();
        progress::println(format!(
            "▶ {:<10} {}   {}  ({})",
            item.stage,
            if parts.is_some() {
                "merging"
            } else {
                "running"
            },
            short(&key),
            why.join("; ")
        ));
        let tmp = self
            .store
            .begin(&item.stage, &key)
            .map_err(|e| DagError::io(&self.store.stage_dir(&item.stage), e))?;
        let work = self.store.work_dir(&item.stage, &key);
        if work.exists() && !opts.resume {
            tracing::info!(
                "{}: discarding the work directory of an interrupted run ({}); pass --resume to continue from it",
                item.stage,
                work.display()
            );
            std::fs::remove_dir_all(&work).map_err(|e| DagError::io(&work, e))?;
        }
        std::fs::create_dir_all(&work).map_err(|e| DagError::io(&work, e))?;

        let mut ctx = self.context(item, sc, tmp.clone(), work.clone(), opts)?;
        let started_at = SystemTime::now();
        let t0 = Instant::now();
        reset_peak_rss();
        let result = match parts {
            None => stage.run(&mut ctx),
            Some(dirs) => {
                let mut shard_seconds = Vec::new();
                for d in dirs {
                    let m = PartManifest::read(d).map_err(|e| DagError::io(d, e))?;
                    shard_seconds.push(serde_json::json!({
                        "shard": format!("{}/{}", m.index, m.count),
                        "seconds": m.seconds,
                        "host": m.host,
                    }));
                }
                ctx.note("shards", serde_json::Value::Array(shard_seconds));
                stage.merge(&mut ctx, dirs)
            }
        };
        if let Some(mib) = peak_rss_mib() {
            ctx.notes
                .entry("peak_rss_mib".into())
                .or_insert(serde_json::json!(mib));
        }
        let seconds = t0.elapsed().as_secs_f64();
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(DagError::Stage {
                stage: item.stage.clone(),
                source: e,
            });
        }
        for out in spec.outputs {
            let p = tmp.join(out.trim_end_matches('/'));
            let ok = if out.ends_with('/') {
                p.is_dir()
            } else {
                p.is_file()
            };
            if !ok {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(DagError::MissingOutput {
                    stage: item.stage.clone(),
                    path: out.to_string(),
                });
            }
        }
        let outputs = describe_outputs(&tmp)?;
        let manifest = Manifest {
            stage: item.stage.clone(),
            key: key.clone(),
            code_version: spec.version,
            params: sc.params.clone(),
            upstream: item.upstream.clone(),
            deps: item.digests.clone(),
            inputs: item.inputs.clone(),
            outputs,
            started_at: humantime::format_rfc3339_millis(started_at).to_string(),
            finished_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            seconds,
            counts: ctx.counts.clone(),
            notes: ctx.notes.clone(),
            runtime: self.config.runtime.clone(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let mpath = tmp.join(Manifest::FILE);
        std::fs::write(
            &mpath,
            serde_json::to_vec_pretty(&manifest).expect("manifest serialises"),
        )
        .map_err(|e| DagError::io(&mpath, e))?;
        let dir = self
            .store
            .commit(&item.stage, &key, &tmp)
            .map_err(|e| DagError::io(&tmp, e))?;
        self.store
            .set_latest(&item.stage, &key)
            .map_err(|e| DagError::io(&dir, e))?;
        let _ = std::fs::remove_dir_all(&work);
        let counts: Vec<String> = ctx
            .counts
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        progress::println(format!(
            "✓ {:<10} done in {:.1}s  {}{}",
            item.stage,
            seconds,
            dir.display(),
            if counts.is_empty() {
                String::new()
            } else {
                format!("  ({})", counts.join(", "))
            }
        ));
        Ok(Outcome {
            stage: item.stage.clone(),
            key,
            ran: true,
            seconds,
            dir,
        })
    }
}

/// Size, hash and (parquet) row count of every file under `dir`.
fn describe_outputs(dir: &std::path::Path) -> Result<Vec<OutputFile>, DagError> {
    let mut outputs = Vec::new();
    for rel in list_files(dir).map_err(|e| DagError::io(dir, e))? {
        let p = dir.join(&rel);
        let bytes = std::fs::metadata(&p)
            .map_err(|e| DagError::io(&p, e))?
            .len();
        let blake3 = hash_file(&p).map_err(|e| DagError::io(&p, e))?;
        let rows = if rel.ends_with(".parquet") {
            table_rows(&p)
        } else {
            None
        };
        outputs.push(OutputFile {
            path: rel,
            bytes,
            blake3,
            rows,
        });
    }
    Ok(outputs)
}

/// Resets the process's peak resident memory (Linux: `/proc/self/clear_refs`), so that the
/// peak read after a stage is that stage's.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident memory since the last reset, in MiB (Linux), recorded in each manifest.
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((kb / 1024.0 * 10.0).round() / 10.0)
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

fn short(key: &str) -> &str {
    &key[..key.len().min(12)]
}

fn show(v: &Option<ParamValue>) -> String {
    match v {
        Some(v) => v.to_string(),
        None => "(unset)".into(),
    }
}
