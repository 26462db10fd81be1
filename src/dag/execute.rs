//! Execution of one planned stage into the artefact store: running it (or one of its shards,
//! into a part), merging the parts of its shards, checking and describing its outputs, and
//! writing its manifest. Also the peak-memory probe recorded in each manifest.
//!
//! These are methods of `Pipeline` (from `plan.rs`); the [`Runner`](super::Runner) decides
//! what runs, under which lock, and calls them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use serde::Serialize;

use super::config::StageConfig;
use super::hash::hash_file;
use super::manifest::{Manifest, OutputFile};
use super::parts::{PartManifest, hostname};
use super::plan::{Pipeline, PlanItem, short};
use super::stage::{RunContext, ShardId};
use super::store::{EntryState, list_files};
use super::{DagError, table_rows};
use crate::progress;

/// What a run did with one stage.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub stage: String,
    pub key: String,
    pub ran: bool,
    pub seconds: f64,
    pub dir: PathBuf,
}

impl Pipeline<'_> {
    /// Runs a stage that will run: plainly, or, when shards of its key have run (or only a
    /// merge is asked for), by computing the missing shards and merging all of them.
    /// `resume`: continue interrupted work from its work directories.
    pub(super) fn execute_maybe_sharded(
        &self,
        item: &PlanItem,
        resume: bool,
        merge_only: bool,
    ) -> Result<Outcome, DagError> {
        let stage = self.registry.get(&item.stage).expect("validated");
        let key = item.key.clone().expect("known key");
        if !stage.shardable() {
            if merge_only {
                return Err(self.not_shardable(&item.stage));
            }
            return self.execute(item, resume, None);
        }
        let parts = self.parts(&item.stage, &key)?;
        let Some((count, _)) = parts.best() else {
            if merge_only {
                return Err(DagError::ShardsIncomplete {
                    stage: item.stage.clone(),
                    done: 0,
                    count: 0,
                    missing: vec![],
                });
            }
            return self.execute(item, resume, None);
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
            self.execute_part(item, ShardId::new(i, count).expect("in range"), resume)?;
        }
        let dirs: Vec<PathBuf> = (0..count)
            .map(|i| {
                self.store
                    .part_dir(&item.stage, &key, ShardId::new(i, count).expect("in range"))
            })
            .collect();
        let out = self.execute(item, resume, Some(&dirs))?;
        self.store
            .remove_parts(&item.stage, &key)
            .map_err(|e| DagError::io(&self.store.parts_dir(&item.stage, &key), e))?;
        Ok(out)
    }

    /// Computes one shard's part of a planned item and commits it. Returns its seconds.
    pub(super) fn execute_part(
        &self,
        item: &PlanItem,
        shard: ShardId,
        resume: bool,
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
        let mut ctx = self.context(item, sc, tmp.clone(), work.clone(), resume)?;
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
            host: hostname(),
            pid: std::process::id(),
            finished_at: rfc3339(SystemTime::now()),
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

    /// The context a stage (or one of its shards) runs in.
    fn context(
        &self,
        item: &PlanItem,
        sc: &StageConfig,
        out: PathBuf,
        work: PathBuf,
        resume: bool,
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
            resume,
        ))
    }

    /// Runs a stage into a fresh entry: `run`, or, given the parts of all its shards, `merge`.
    fn execute(
        &self,
        item: &PlanItem,
        resume: bool,
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
        if work.exists() && !resume {
            tracing::info!(
                "{}: discarding the work directory of an interrupted run ({}); pass --resume to continue from it",
                item.stage,
                work.display()
            );
            std::fs::remove_dir_all(&work).map_err(|e| DagError::io(&work, e))?;
        }
        std::fs::create_dir_all(&work).map_err(|e| DagError::io(&work, e))?;

        let mut ctx = self.context(item, sc, tmp.clone(), work.clone(), resume)?;
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
            started_at: rfc3339(started_at),
            finished_at: rfc3339(SystemTime::now()),
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
fn describe_outputs(dir: &Path) -> Result<Vec<OutputFile>, DagError> {
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

/// A time as manifests record it.
fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}
