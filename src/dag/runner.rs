//! Running a pipeline against the store: the [`Runner`] plans (`status`), brings stages up to
//! date (`run`), or runs one shard of a stage (`run STAGE --shard I/N`), holding the store's
//! lock while it decides what runs.
//!
//! What runs, and why, comes from planning (`plan.rs`), whose walk over the stage graph both
//! `plan` and `run` go through; how one stage runs into the store (plainly, by shards, or as a
//! merge) from `execute.rs`. Their public items are re-exported here, where they used to live.

use std::collections::BTreeMap;

use super::DagError;
use super::config::{PipelineConfig, Registry};
use super::hash::HashCache;
use super::lock::StoreLock;
use super::plan::{Pipeline, short};
use super::stage::ShardId;
use super::store::{EntryState, Store};
use crate::progress;

pub use super::execute::{Outcome, peak_rss_mib};
pub use super::plan::{PlanItem, State, Why, stage_key};

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

    /// The pipeline bound to its stages and this runner's store: what plans and executes.
    fn pipeline(&self) -> Pipeline<'_> {
        Pipeline {
            registry: self.registry,
            config: self.config,
            store: &self.store,
        }
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
        let pipeline = self.pipeline();
        let targets = pipeline.check_targets(targets)?;
        let mut plan = Vec::new();
        pipeline.walk(&targets, force, cache, |item, _| {
            plan.push(item.clone());
            Ok(item)
        })?;
        Ok(plan)
    }

    /// The plan of every stage (what `status` prints), with the store's hash cache, which is
    /// saved afterwards so the next look hashes nothing unchanged.
    pub fn current_plan(&self) -> Result<Vec<PlanItem>, DagError> {
        let mut cache = self.store.hash_cache();
        let plan = self.plan(&[], false, &mut cache)?;
        cache.save().ok();
        Ok(plan)
    }

    /// Brings the named stages (all when none) and their upstream up to date. Each stage's key
    /// is computed when its upstream is done, so a stage whose inputs came out unchanged is
    /// not run again.
    pub fn run(&self, targets: &[String], opts: &RunOptions) -> Result<Vec<Outcome>, DagError> {
        let _lock = self.lock_and_clean(opts)?;
        let mut cache = self.store.hash_cache();
        let targets = self.pipeline().check_targets(targets)?;
        Ok(self.run_locked(&targets, opts, &mut cache)?.0)
    }

    fn lock_and_clean(&self, opts: &RunOptions) -> Result<StoreLock, DagError> {
        let lock = StoreLock::acquire(self.store.root(), !opts.no_wait)?;
        let mut stale = self
            .store
            .remove_stale()
            .map_err(|e| DagError::io(self.store.root(), e))?;
        for name in self.pipeline().shardable_stages() {
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

    fn save_cache(&self, cache: &mut HashCache) -> Result<(), DagError> {
        cache
            .save()
            .map_err(|e| DagError::io(&self.store.hash_cache_file(), e))
    }

    /// `run` under the lock, over checked `targets`; also returns each stage's (now cached)
    /// plan item.
    fn run_locked(
        &self,
        targets: &[String],
        opts: &RunOptions,
        cache: &mut HashCache,
    ) -> Result<(Vec<Outcome>, BTreeMap<String, PlanItem>), DagError> {
        let pipeline = self.pipeline();
        let mut outcomes = Vec::new();
        let done = pipeline.walk(targets, opts.force, cache, |mut item, cache| {
            self.save_cache(cache)?;
            let key = item
                .key
                .clone()
                .expect("upstream is done, so the key is known");
            if item.state == State::Cached {
                self.store
                    .set_latest(&item.stage, &key)
                    .map_err(|e| DagError::io(&item.dir, e))?;
                print_cached(&item, &key, "");
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
                let merge_only = opts.merge_only && targets.contains(&item.stage);
                outcomes.push(pipeline.execute_maybe_sharded(&item, opts.resume, merge_only)?);
            }
            item.state = State::Cached;
            Ok(item)
        })?;
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
        let pipeline = self.pipeline();
        pipeline.check_targets(&[target.to_string()])?;
        let stage = self.registry.get(target).expect("validated");
        if !stage.shardable() {
            return Err(pipeline.not_shardable(target));
        }
        let item = {
            let _lock = self.lock_and_clean(opts)?;
            let mut cache = self.store.hash_cache();
            let deps = self.config.stage(target).expect("validated").deps.clone();
            let (_, done) = self.run_locked(&deps, opts, &mut cache)?;
            let item = pipeline.plan_stage(target, &done, false, &mut cache)?;
            self.save_cache(&mut cache)?;
            item
        };
        let key = item
            .key
            .clone()
            .expect("upstream is done, so the key is known");
        if item.state == State::Cached {
            print_cached(&item, &key, &format!(" (nothing for shard {shard} to do)"));
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
        let seconds = pipeline.execute_part(&item, shard, opts.resume)?;
        let done = pipeline
            .parts(target, &key)?
            .done
            .get(&shard.count)
            .map_or(0, |d| d.len());
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
}

/// The progress line of a stage found cached under `key`, then `note`.
fn print_cached(item: &PlanItem, key: &str, note: &str) {
    progress::println(format!(
        "  {:<10} cached    {}  {}{note}",
        item.stage,
        short(key),
        item.dir.display()
    ));
}
