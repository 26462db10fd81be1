//! Verbs that drive the DAG runner: run, status, dag, inspect, gc.

use std::path::{Path, PathBuf};

use super::ConfigArgs;
use crate::dag::{DagError, Manifest, PipelineConfig, Registry, RunOptions, Runner, State, Store};
use crate::error::Error;

fn load(cfg: &ConfigArgs, registry: &Registry) -> Result<PipelineConfig, Error> {
    let mut config = PipelineConfig::load(&cfg.config, registry).map_err(DagError::from)?;
    config
        .apply_sets(&cfg.sets, registry)
        .map_err(DagError::from)?;
    Ok(config)
}

pub fn run(cfg: &ConfigArgs, stages: &[String], opts: &RunOptions) -> Result<(), Error> {
    let registry = crate::stages::registry();
    let config = load(cfg, &registry)?;
    let runner = Runner::new(&registry, &config)?;
    let t0 = std::time::Instant::now();
    let outcomes = runner.run(stages, opts)?;
    let ran = outcomes.iter().filter(|o| o.ran).count();
    crate::progress::println(format!(
        "{} stage(s) ran, {} cached, in {:.1}s",
        ran,
        outcomes.len() - ran,
        t0.elapsed().as_secs_f64()
    ));
    Ok(())
}

pub fn run_shard(
    cfg: &ConfigArgs,
    stages: &[String],
    shard: crate::dag::ShardId,
    opts: &RunOptions,
) -> Result<(), Error> {
    let [stage] = stages else {
        return Err(Error::msg(format!(
            "--shard {shard} runs one shard of one stage: name exactly one (e.g. `fashionbert run features --shard {shard}`), not {}",
            if stages.is_empty() {
                "none".to_string()
            } else {
                stages.join(", ")
            }
        )));
    };
    if opts.force {
        return Err(Error::msg(
            "--force does not combine with --shard: a part is a pure function of the stage's inputs, params and shard, so one that exists has nothing to redo (a damaged part is recomputed when the parts are merged)",
        ));
    }
    let registry = crate::stages::registry();
    let config = load(cfg, &registry)?;
    let runner = Runner::new(&registry, &config)?;
    runner.run_shard(stage, shard, opts)?;
    Ok(())
}

pub fn status(cfg: &ConfigArgs, json: bool) -> Result<(), Error> {
    let registry = crate::stages::registry();
    let config = load(cfg, &registry)?;
    let runner = Runner::new(&registry, &config)?;
    let plan = runner.current_plan()?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&plan).expect("plan serialises")
        );
        return Ok(());
    }
    println!(
        "{:<10}  {:<9}  {:<20}  output / reason",
        "stage", "state", "key"
    );
    for item in &plan {
        let key = item.key.as_deref().unwrap_or("(pending)");
        match item.state {
            State::Cached => {
                println!(
                    "{:<10}  {:<9}  {:<20}  {}",
                    item.stage,
                    "cached",
                    key,
                    item.dir.display()
                );
                if let Some(other) = runner
                    .store()
                    .latest(&item.stage)
                    .filter(|l| Some(l) != item.key.as_ref())
                {
                    println!(
                        "{:<10}  {:<9}  {:<20}  (`latest` is another run, {}: tools read this config's entry unless given --latest)",
                        "",
                        "",
                        "",
                        &other[..other.len().min(20)]
                    );
                }
            }
            State::WillRun => {
                let why: Vec<String> = item.why.iter().map(|w| w.to_string()).collect();
                println!(
                    "{:<10}  {:<9}  {:<20}  {}",
                    item.stage,
                    "will run",
                    key,
                    why.join("; ")
                );
                println!(
                    "{:<10}  {:<9}  {:<20}  → {}",
                    "",
                    "",
                    "",
                    item.dir.display()
                );
            }
        }
    }
    Ok(())
}

pub fn dag(cfg: &ConfigArgs) -> Result<(), Error> {
    let registry = crate::stages::registry();
    let config = load(cfg, &registry)?;
    let deps: Vec<String> = config
        .stages
        .iter()
        .map(|s| {
            if s.deps.is_empty() {
                "(source)".to_string()
            } else {
                format!("← {}", s.deps.join(", "))
            }
        })
        .collect();
    let w = deps.iter().map(|d| d.chars().count()).max().unwrap_or(0);
    for (i, (s, d)) in config.stages.iter().zip(&deps).enumerate() {
        let spec = registry.get(&s.name).expect("validated").spec();
        println!("{:>2}. {:<10} {:<w$}  {}", i + 1, s.name, d, spec.about);
    }
    Ok(())
}

/// `params`: each param of `stage` (all stages when `None`) with the value the config gives,
/// marked `*` where it is not the default, then its default, type, range and doc.
pub fn params(cfg: &ConfigArgs, stage: Option<&str>) -> Result<(), Error> {
    let registry = crate::stages::registry();
    let config = load(cfg, &registry)?;
    if let Some(name) = stage
        && config.stage(name).is_none()
    {
        return Err(DagError::UnknownTarget {
            name: name.to_string(),
            known: config.stages.iter().map(|s| s.name.clone()).collect(),
        }
        .into());
    }
    for s in config
        .stages
        .iter()
        .filter(|s| stage.is_none_or(|n| n == s.name))
    {
        let spec = registry.get(&s.name).expect("validated").spec();
        println!("[{}] {}", spec.name, spec.about);
        let shown: Vec<(String, &crate::dag::ParamSpec)> = spec
            .params
            .iter()
            .map(|p| {
                let value = s.params.get(p.name);
                let changed = value != p.default_value().as_ref();
                let text = value.map_or("(unset)".to_string(), |v| v.to_string());
                (
                    format!("{}{} = {text}", if changed { "*" } else { " " }, p.name),
                    p,
                )
            })
            .collect();
        let w = shown
            .iter()
            .map(|(t, _)| t.chars().count())
            .max()
            .unwrap_or(0);
        for (text, p) in shown {
            let default = p
                .default_value()
                .map_or("none".to_string(), |v| v.to_string());
            let range = p.range_text().map(|r| format!(", {r}")).unwrap_or_default();
            println!("  {text:<w$}   default {default}; {}{range}", p.kind);
            if !p.doc.is_empty() {
                println!("  {:w$}   {}", "", p.doc);
            }
        }
        println!();
    }
    Ok(())
}

/// Resolves `what` to parquet files: a file path, a stage name, or `stage/file`.
fn resolve_inspect(entries: &super::EntryArgs, what: &str) -> Result<Vec<PathBuf>, Error> {
    let config_file = entries.config.as_path();
    let p = PathBuf::from(what);
    if p.is_file() {
        return Ok(vec![p]);
    }
    let looks_like_path = what.ends_with(".parquet") || p.is_absolute() || what.starts_with('.');
    if looks_like_path && !config_file.is_file() {
        return Err(Error::msg(format!(
            "{what}: no such file (and there is no {} here, so it is not a stage's artefact either)",
            config_file.display()
        )));
    }
    let registry = crate::stages::registry();
    let latest = crate::dag::Latest::open_with(config_file, &registry, entries.resolve())?;
    let config = &latest.config;
    let (stage, file) = match what.split_once('/') {
        Some((s, f)) => (s, Some(f)),
        None => (what, None),
    };
    if config.stage(stage).is_none() {
        return Err(Error::msg(format!(
            "`{what}` is neither a file nor a stage of {} (stages: {})",
            config_file.display(),
            config
                .stages
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let key = latest.key(stage)?;
    let dir = latest.dir(stage)?; // the key is resolved once: this reuses it
    let manifest = Manifest::read(&dir).map_err(|e| DagError::io(&dir, e))?;
    if let Some(f) = file {
        return Ok(vec![dir.join(f)]);
    }
    println!("stage {stage}, key {key}, {}", dir.display());
    println!(
        "  ran {} → {} ({:.1}s), params {}",
        manifest.started_at,
        manifest.finished_at,
        manifest.seconds,
        manifest.params.canonical_json()
    );
    for (k, v) in &manifest.counts {
        println!("  count {k}: {v}");
    }
    for o in &manifest.outputs {
        println!(
            "  {:<32} {:>12} bytes{}",
            o.path,
            o.bytes,
            o.rows.map(|r| format!(", {r} rows")).unwrap_or_default()
        );
    }
    Ok(manifest
        .outputs
        .iter()
        .filter(|o| o.path.ends_with(".parquet"))
        .map(|o| dir.join(&o.path))
        .collect())
}

/// How `inspect` shows each table.
pub struct InspectView {
    pub rows: usize,
    pub vertical: bool,
    /// Only these columns, in this order (all when empty).
    pub columns: Vec<String>,
    pub width: usize,
}

pub fn inspect(entries: &super::EntryArgs, what: &str, view: &InspectView) -> Result<(), Error> {
    for path in resolve_inspect(entries, what)? {
        let mut df = crate::table::read_parquet(&path)?;
        println!(
            "\n{}: {} rows × {} columns",
            path.display(),
            df.height(),
            df.width()
        );
        for (name, dtype) in df.schema().iter() {
            println!("  {name}: {dtype}");
        }
        if !view.columns.is_empty() {
            let have = super::view::column_names(&df);
            if let Some(missing) = view.columns.iter().find(|c| !have.contains(c)) {
                return Err(Error::msg(format!(
                    "{}: no column `{missing}`; it has: {}",
                    path.display(),
                    have.join(", ")
                )));
            }
            df = df
                .select(view.columns.iter().map(|c| c.as_str()))
                .map_err(|e| Error::msg(format!("{}: {e}", path.display())))?;
        }
        println!();
        let lines = if view.vertical {
            super::view::vertical(&df, view.rows, view.width)
        } else {
            super::view::table(&df, view.rows, view.width)
        };
        for l in lines {
            println!("{l}");
        }
        if df.height() > view.rows {
            println!(
                "({} more rows; --rows N shows more)",
                df.height() - view.rows
            );
        }
    }
    Ok(())
}

/// `verify`: full hashes of every entry (of `stages`, all when empty) against its manifest.
pub fn verify(config_file: &Path, stages: &[String]) -> Result<(), Error> {
    use crate::dag::store::{Check, EntryState};
    let registry = crate::stages::registry();
    let config = PipelineConfig::load(config_file, &registry).map_err(DagError::from)?;
    for s in stages {
        if config.stage(s).is_none() {
            return Err(DagError::UnknownTarget {
                name: s.clone(),
                known: config.stages.iter().map(|s| s.name.clone()).collect(),
            }
            .into());
        }
    }
    let store = Store::open(&config.artifacts).map_err(|e| DagError::io(&config.artifacts, e))?;
    let mut damaged = 0;
    let mut checked = 0;
    for e in store
        .entries()
        .map_err(|e| DagError::io(store.root(), e))?
        .iter()
        .filter(|e| stages.is_empty() || stages.contains(&e.stage))
    {
        checked += 1;
        match store.verify(&e.stage, &e.key, Check::Full) {
            EntryState::Valid => println!("ok       {}/{}", e.stage, e.key),
            EntryState::Absent => {}
            EntryState::Damaged(problems) => {
                damaged += 1;
                println!("DAMAGED  {}/{}", e.stage, e.key);
                for p in problems {
                    println!("           {p}");
                }
            }
        }
    }
    if damaged > 0 {
        return Err(Error::msg(format!(
            "{damaged} of {checked} entries are damaged; `fashionbert run` rebuilds the current ones (`gc` removes the rest)"
        )));
    }
    println!("{checked} entries verified");
    Ok(())
}

/// What `gc` was asked.
pub struct GcArgs {
    pub configs: Vec<PathBuf>,
    pub all_configs: bool,
    pub work: bool,
    pub dry_run: bool,
    pub no_wait: bool,
}

/// The configs whose entries `gc` keeps: those given, plus `pipelines/*.toml` beside the first
/// with `--all-configs` (each once).
fn gc_configs(args: &GcArgs) -> Result<Vec<PathBuf>, Error> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut push = |p: PathBuf| {
        if seen.insert(std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone())) {
            out.push(p);
        }
    };
    for c in &args.configs {
        push(c.clone());
    }
    if args.all_configs {
        let first = args
            .configs
            .first()
            .cloned()
            .unwrap_or_else(|| "pipeline.toml".into());
        let dir = first
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .join("pipelines");
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| DagError::io(&dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        found.sort();
        for p in found {
            push(p);
        }
    }
    Ok(out)
}

/// `gc`: deletes the entries no given config resolves to and no stage's `latest` points at,
/// and the work directories no `--resume` would use.
pub fn gc(args: &GcArgs) -> Result<(), Error> {
    use crate::dag::store::{GcOptions, Wanted};
    let registry = crate::stages::registry();
    let files = gc_configs(args)?;
    let first = PipelineConfig::load(&files[0], &registry).map_err(DagError::from)?;
    let store = Store::open(&first.artifacts).map_err(|e| DagError::io(&first.artifacts, e))?;
    let root = std::fs::canonicalize(store.root()).map_err(|e| DagError::io(store.root(), e))?;
    let _lock = crate::dag::lock::StoreLock::acquire(store.root(), !args.no_wait)?;
    store
        .remove_stale()
        .map_err(|e| DagError::io(store.root(), e))?;
    let mut wanted = Wanted::new();
    for (i, file) in files.iter().enumerate() {
        let config = PipelineConfig::load(file, &registry).map_err(DagError::from)?;
        let same_store = std::fs::canonicalize(&config.artifacts).is_ok_and(|c| c == root);
        if !same_store {
            if i < args.configs.len() {
                return Err(Error::msg(format!(
                    "{} uses the store {}, not {} (the first config's): run `fashionbert gc --config {}` for that store separately",
                    file.display(),
                    config.artifacts.display(),
                    first.artifacts.display(),
                    file.display()
                )));
            }
            tracing::info!(
                "gc: {} uses another store ({}): not considered",
                file.display(),
                config.artifacts.display()
            );
            continue;
        }
        for item in Runner::new(&registry, &config)?.current_plan()? {
            if let Some(key) = item.key {
                wanted
                    .entry(item.stage)
                    .or_default()
                    .entry(key)
                    .or_default()
                    .push(format!("the entry {} resolves to", file.display()));
            }
        }
    }
    let plan = store
        .gc_plan(&wanted, GcOptions { work: args.work })
        .map_err(|e| DagError::io(store.root(), e))?;
    if args.dry_run {
        for (item, reasons) in &plan.keep {
            println!(
                "keep          {} ({}): {}",
                item.what,
                human_bytes(item.bytes),
                reasons.join("; ")
            );
        }
        for (item, why) in &plan.delete {
            println!(
                "would delete  {} ({}): {why}",
                item.what,
                human_bytes(item.bytes)
            );
        }
    }
    for (path, why) in &plan.refused {
        println!("left alone    {}: {why}", path.display());
    }
    let deleted = if args.dry_run {
        plan.delete.iter().map(|(i, _)| i.clone()).collect()
    } else {
        let done = store
            .gc_apply(&plan)
            .map_err(|e| DagError::io(store.root(), e))?;
        for item in &done {
            println!(
                "deleted       {} ({})",
                item.path.display(),
                human_bytes(item.bytes)
            );
        }
        done
    };
    let total: u64 = deleted.iter().map(|i| i.bytes).sum();
    println!(
        "{} {} entries, {}; kept {} entries, {}",
        if args.dry_run { "would free" } else { "freed" },
        deleted.len(),
        human_bytes(total),
        plan.keep.len(),
        human_bytes(plan.keep.iter().map(|(i, _)| i.bytes).sum())
    );
    Ok(())
}

pub fn human_bytes(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}
