//! Comparing runs: `fashionbert runs STAGE` (a stage's entries side by side: key, when, the
//! params that differ between them, headline metrics) and `fashionbert diff KEY KEY` (every
//! param and metric of two entries), as `dvc exp show` / `dvc params diff` / `dvc metrics diff`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::dag::{DagError, Manifest, ParamValue, PipelineConfig, Store};
use crate::error::Error;

/// The figures a stage's runs are compared by, read from its outputs: every numeric leaf of
/// `metrics.json` (evaluate) or `summary.json` (train), and the manifest's counts.
fn metrics(dir: &Path, m: &Manifest) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for file in ["metrics.json", "summary.json"] {
        if m.output(file).is_none() {
            continue;
        }
        if let Some(v) = crate::dag::fsafe::read_regular(&dir.join(file))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        {
            flatten("", &v, &mut out);
        }
    }
    for (k, v) in &m.counts {
        out.insert(format!("count.{k}"), *v as f64);
    }
    out.insert("seconds".into(), m.seconds);
    out
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, f64>) {
    match v {
        serde_json::Value::Number(n) => {
            if let Some(x) = n.as_f64() {
                out.insert(prefix.to_string(), x);
            }
        }
        serde_json::Value::Object(o) => {
            for (k, v) in o {
                // The model's config is a param, not a metric.
                if prefix.is_empty() && (k == "config" || k == "init") {
                    continue;
                }
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, v, out);
            }
        }
        _ => {}
    }
}

/// The headline columns of `runs` for a stage (those its entries have).
const HEADLINE: &[(&str, &str)] = &[
    ("img2txt.rank@1", "i2t R@1"),
    ("img2txt.rank@10", "i2t R@10"),
    ("txt2img.rank@1", "t2i R@1"),
    ("txt2img.rank@10", "t2i R@10"),
    ("probe.img2txt.rank@1", "probe i2t R@1"),
    ("valid.itc_accuracy", "valid ITC acc"),
    ("valid.tia_accuracy", "valid align acc"),
    ("loss_last_20_steps.loss", "loss (last 20)"),
    ("count.rows", "rows"),
    ("seconds", "seconds"),
];

struct Run {
    key: String,
    manifest: Manifest,
    metrics: BTreeMap<String, f64>,
}

fn open(config_file: &Path) -> Result<(PipelineConfig, Store), Error> {
    let registry = crate::stages::registry();
    let config = PipelineConfig::load(config_file, &registry).map_err(DagError::from)?;
    let store = Store::open(&config.artifacts).map_err(|e| DagError::io(&config.artifacts, e))?;
    Ok((config, store))
}

fn load(store: &Store, stage: &str, key: &str) -> Result<Run, Error> {
    let dir = store.entry_dir(stage, key);
    let manifest = Manifest::read(&dir).map_err(|e| DagError::io(&dir, e))?;
    Ok(Run {
        key: key.to_string(),
        metrics: metrics(&dir, &manifest),
        manifest,
    })
}

fn value(v: Option<&ParamValue>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "—".into())
}

/// A stage's entries, oldest first, with what tells them apart.
struct View {
    runs: Vec<Run>,
    latest: Option<String>,
    /// The params whose values are not the same in every entry.
    differing: Vec<String>,
    /// The upstream stages whose entries differ between the runs (an evaluate of another model).
    ups: Vec<String>,
    heads: Vec<(&'static str, &'static str)>,
}

fn view(store: &Store, stage: &str) -> Result<View, Error> {
    let mut runs: Vec<Run> = store
        .entries()
        .map_err(|e| DagError::io(store.root(), e))?
        .into_iter()
        .filter(|e| e.stage == stage)
        .map(|e| load(store, stage, &e.key))
        .collect::<Result<_, _>>()?;
    runs.sort_by(|a, b| a.manifest.finished_at.cmp(&b.manifest.finished_at));
    let latest = store.latest(stage);
    let mut names: Vec<String> = runs
        .iter()
        .flat_map(|r| r.manifest.params.iter().map(|(k, _)| k.clone()))
        .collect();
    names.sort();
    names.dedup();
    let differing: Vec<String> = names
        .into_iter()
        .filter(|n| {
            let first = runs.first().and_then(|r| r.manifest.params.get(n));
            runs.iter().any(|r| r.manifest.params.get(n) != first)
        })
        .collect();
    let mut ups: Vec<String> = runs
        .iter()
        .flat_map(|r| r.manifest.upstream.keys().cloned())
        .collect();
    ups.sort();
    ups.dedup();
    ups.retain(|u| {
        let first = runs.first().and_then(|r| r.manifest.upstream.get(u));
        runs.iter().any(|r| r.manifest.upstream.get(u) != first)
    });
    let heads: Vec<(&str, &str)> = HEADLINE
        .iter()
        .copied()
        .filter(|(k, _)| runs.iter().any(|r| r.metrics.contains_key(*k)))
        .collect();
    Ok(View {
        runs,
        latest,
        differing,
        ups,
        heads,
    })
}

/// A stage's entries as `runs --json` prints them (and `serve` answers): key, whether it is
/// `latest`, when, the upstream entries and params that differ, the headline metrics.
pub fn rows(store: &Store, stage: &str) -> Result<Vec<serde_json::Value>, Error> {
    let v = view(store, stage)?;
    Ok(v.runs
        .iter()
        .map(|r| {
            serde_json::json!({
                "key": r.key,
                "latest": v.latest.as_deref() == Some(r.key.as_str()),
                "finished_at": r.manifest.finished_at,
                "upstream": v.ups.iter().map(|u| (u.clone(), r.manifest.upstream.get(u).cloned())).collect::<BTreeMap<_, _>>(),
                "params": v.differing.iter().map(|n| (n.clone(), r.manifest.params.get(n).map(|v| serde_json::to_value(v).unwrap()))).collect::<BTreeMap<_, _>>(),
                "metrics": v.heads.iter().filter_map(|(k, _)| r.metrics.get(*k).map(|x| (k.to_string(), *x))).collect::<BTreeMap<_, _>>(),
            })
        })
        .collect())
}

/// `fashionbert runs STAGE`: every entry of the stage, oldest first.
pub fn runs(config_file: &Path, stage: &str, json: bool) -> Result<(), Error> {
    let (config, store) = open(config_file)?;
    if config.stage(stage).is_none() {
        return Err(DagError::UnknownTarget {
            name: stage.to_string(),
            known: config.stages.iter().map(|s| s.name.clone()).collect(),
        }
        .into());
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows(&store, stage)?).expect("serialises")
        );
        return Ok(());
    }
    let View {
        runs,
        latest,
        differing,
        ups,
        heads,
    } = view(&store, stage)?;
    if runs.is_empty() {
        println!("stage {stage} has no entries in {}", store.root().display());
        return Ok(());
    }
    let mut header = vec!["key".to_string(), "finished (UTC)".to_string()];
    header.extend(ups.iter().map(|u| format!("← {u}")));
    header.extend(differing.iter().cloned());
    header.extend(heads.iter().map(|(_, h)| h.to_string()));
    let mut rows = vec![header];
    for r in &runs {
        let mut row = vec![
            format!(
                "{}{}",
                &r.key[..r.key.len().min(12)],
                if latest.as_deref() == Some(r.key.as_str()) {
                    " *"
                } else {
                    ""
                }
            ),
            r.manifest
                .finished_at
                .get(..19)
                .unwrap_or(&r.manifest.finished_at)
                .replace('T', " "),
        ];
        row.extend(ups.iter().map(|u| {
            r.manifest
                .upstream
                .get(u)
                .map_or("—".to_string(), |k| k[..k.len().min(12)].to_string())
        }));
        row.extend(differing.iter().map(|n| value(r.manifest.params.get(n))));
        row.extend(heads.iter().map(|(k, _)| match r.metrics.get(*k) {
            Some(v) => number(*v),
            None => "—".into(),
        }));
        rows.push(row);
    }
    print_table(&rows);
    println!(
        "(* = latest; the upstream entries and params listed are those that differ between the runs; `fashionbert diff KEY KEY` shows everything)"
    );
    Ok(())
}

/// Integers as integers, other figures to 4 significant decimals.
pub fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

fn print_table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (i, r) in rows.iter().enumerate() {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, s)| format!("{s:<w$}", w = widths[c]))
            .collect();
        println!("{}", line.join("  ").trim_end());
        if i == 0 {
            println!(
                "{}",
                widths
                    .iter()
                    .map(|w| "─".repeat(*w))
                    .collect::<Vec<_>>()
                    .join("  ")
            );
        }
    }
}

/// Finds the entry a key (or a unique prefix of it, as `status` prints) names, in any stage.
fn find(store: &Store, key: &str) -> Result<(String, String), Error> {
    let hits: Vec<(String, String)> = store
        .entries()
        .map_err(|e| DagError::io(store.root(), e))?
        .into_iter()
        .filter(|e| e.key.starts_with(key))
        .map(|e| (e.stage, e.key))
        .collect();
    match hits.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::msg(format!(
            "no entry's key starts with `{key}` in {}; `fashionbert runs STAGE` lists a stage's keys",
            store.root().display()
        ))),
        many => Err(Error::msg(format!(
            "`{key}` names {} entries ({}); give more of the key",
            many.len(),
            many.iter()
                .map(|(s, k)| format!("{s}/{}", &k[..k.len().min(16)]))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// `fashionbert diff KEY KEY`: the params and metrics of two entries that differ.
pub fn diff(config_file: &Path, a: &str, b: &str, json: bool) -> Result<(), Error> {
    let (_, store) = open(config_file)?;
    let (sa, ka) = find(&store, a)?;
    let (sb, kb) = find(&store, b)?;
    let ra = load(&store, &sa, &ka)?;
    let rb = load(&store, &sb, &kb)?;
    let params = rb.manifest.params.diff(&ra.manifest.params);
    let mut names: Vec<&String> = ra.metrics.keys().chain(rb.metrics.keys()).collect();
    names.sort();
    names.dedup();
    let metrics: Vec<(String, Option<f64>, Option<f64>)> = names
        .into_iter()
        .map(|n| {
            (
                n.clone(),
                ra.metrics.get(n).copied(),
                rb.metrics.get(n).copied(),
            )
        })
        .filter(|(_, x, y)| x != y)
        .collect();
    if json {
        let out = serde_json::json!({
            "a": {"stage": sa, "key": ka},
            "b": {"stage": sb, "key": kb},
            "params": params.iter().map(|(n, x, y)| serde_json::json!({"name": n, "a": x, "b": y})).collect::<Vec<_>>(),
            "metrics": metrics.iter().map(|(n, x, y)| serde_json::json!({"name": n, "a": x, "b": y, "change": x.zip(*y).map(|(x, y)| y - x)})).collect::<Vec<_>>(),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("serialises")
        );
        return Ok(());
    }
    println!("a = {sa}/{ka}\nb = {sb}/{kb}\n");
    let mut rows = vec![vec!["param".to_string(), "a".into(), "b".into()]];
    rows.extend(
        params
            .iter()
            .map(|(n, x, y)| vec![n.clone(), value(x.as_ref()), value(y.as_ref())]),
    );
    if rows.len() == 1 {
        println!("params: the same");
    } else {
        print_table(&rows);
    }
    if ra.manifest.upstream != rb.manifest.upstream {
        println!();
        for (s, k) in &ra.manifest.upstream {
            let other = rb.manifest.upstream.get(s);
            if other != Some(k) {
                println!(
                    "upstream {s}: a {} / b {}",
                    &k[..k.len().min(12)],
                    other.map_or("—", |o| &o[..o.len().min(12)])
                );
            }
        }
    }
    println!();
    let mut rows = vec![vec![
        "metric".to_string(),
        "a".into(),
        "b".into(),
        "change".into(),
    ]];
    rows.extend(metrics.iter().map(|(n, x, y)| {
        vec![
            n.clone(),
            x.map_or("—".into(), number),
            y.map_or("—".into(), number),
            x.zip(*y)
                .map_or("—".into(), |(x, y)| format!("{:+.4}", y - x)),
        ]
    }));
    if rows.len() == 1 {
        println!("metrics: the same");
    } else {
        print_table(&rows);
    }
    Ok(())
}
