//! The runner benchmark: the median time of a no-op re-run of a pipeline (every stage cached)
//! and of `status`, through the `fashionbert` binary beside this one. No peer.

use std::process::Command;
use std::time::Instant;

use crate::Args;
use crate::report::Row;

/// Runs per measurement; the median is reported.
const RUNS: usize = 5;

/// Whether the runner rows can be measured: the pipeline exists and every stage is cached (a
/// "no-op" re-run of a pipeline that is not would train a model). With `--only` naming it,
/// a pipeline that is not cached is an error (exit 2); with `all` the rows are left out.
pub fn ready(a: &Args) -> bool {
    if !a.pipeline.is_file() {
        return false;
    }
    let pending = not_cached(a);
    if pending.is_empty() {
        return true;
    }
    eprintln!(
        "{}: the runner benchmark times a no-op re-run of {}, but these stages would run: {}. \
         Run the pipeline first, or pick another with --pipeline / --pipeline-set.",
        if a.only == "all" {
            "skipping `runner`"
        } else {
            "error"
        },
        a.pipeline.display(),
        pending.join(", ")
    );
    if a.only != "all" {
        std::process::exit(2);
    }
    false
}

/// The rows of a no-op `run` and of `status`.
pub fn rows(a: &Args) -> Vec<Row> {
    let noop = median_secs(|| {
        fashionbert_cli(a, "run", &[]);
    });
    let status = median_secs(|| {
        fashionbert_cli(a, "status", &[]);
    });
    let sets: String = a
        .pipeline_set
        .iter()
        .map(|s| format!(" --set {s}"))
        .collect();
    [
        ("no-op `run` (all stages cached)", noop),
        ("`status`", status),
    ]
    .into_iter()
    .map(|(what, s)| {
        Row::alone(
            format!("runner: {what}, {}{sets}", a.pipeline.display()),
            format!("{s:.3}"),
            "seconds (median of 5)",
            "goal < 2 s".into(),
        )
    })
    .collect()
}

fn median_secs(mut f: impl FnMut()) -> f64 {
    let mut v: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[RUNS / 2]
}

/// Runs `fashionbert VERB --config <pipeline> [--set ...] EXTRA` and returns its stdout.
fn fashionbert_cli(a: &Args, verb: &str, extra: &[&str]) -> Vec<u8> {
    let bin = std::env::current_exe()
        .unwrap()
        .with_file_name("fashionbert");
    let mut cmd = Command::new(bin);
    cmd.arg(verb).arg("--config").arg(&a.pipeline);
    for set in &a.pipeline_set {
        cmd.args(["--set", set]);
    }
    let o = cmd.args(extra).output().unwrap();
    assert!(
        o.status.success(),
        "fashionbert {verb}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// The stages of the benchmarked pipeline that are not cached.
fn not_cached(a: &Args) -> Vec<String> {
    let plan: serde_json::Value =
        serde_json::from_slice(&fashionbert_cli(a, "status", &["--json"])).unwrap();
    plan.as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] != "cached")
        .map(|s| s["stage"].as_str().unwrap_or("?").to_string())
        .collect()
}
