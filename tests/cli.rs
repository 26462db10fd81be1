//! The CLI end to end on tiny generated data: every stage, caching and invalidation as a user
//! sees them, inspecting artefacts (also from Python), config errors, and the tools.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn pipeline_end_to_end_then_cached_then_partial_reruns() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tiny_pipeline(d, 60, "auto");

    let first = ok(d, &["run"]);
    assert_eq!(
        stages_run(&first),
        [
            "ingest",
            "pairs",
            "negatives",
            "tokenize",
            "patches",
            "features",
            "records",
            "train",
            "evaluate"
        ],
        "{first}"
    );
    let eval = d.join("artifacts/evaluate/latest");
    for f in [
        "metrics.json",
        "report.md",
        "rank_at_k.png",
        "train_loss.png",
        "ranks.parquet",
        "predictions_img2txt.txt",
    ] {
        assert!(eval.join(f).is_file(), "missing {f}");
    }
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(eval.join("metrics.json")).unwrap()).unwrap();
    for dir in ["img2txt", "txt2img"] {
        for k in [
            "acc",
            "auc",
            "rank@1",
            "rank@5",
            "rank@10",
            "rank@100",
            "mrr",
            "queries",
            "candidates_per_query",
            "easytransfer_compatible",
        ] {
            assert!(metrics[dir].get(k).is_some(), "{dir}.{k} missing");
        }
        assert_eq!(metrics[dir]["candidates_per_query"], 11.0);
    }

    // Nothing changed: nothing runs, quickly.
    let t0 = Instant::now();
    let second = ok(d, &["run"]);
    assert!(stages_run(&second).is_empty(), "{second}");
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "no-op run took {:?}",
        t0.elapsed()
    );
    let status = ok(d, &["status", "--json"]);
    let plan: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(
        plan.as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "cached")
    );

    // A param of `negatives`: status explains, then only it and its descendants run.
    let status = ok(d, &["status", "--set", "negatives.seed=8"]);
    assert!(status.contains("params changed: seed 7 → 8"), "{status}");
    let third = ok(d, &["run", "negatives", "--set", "negatives.seed=8"]);
    assert_eq!(
        stages_run(&third),
        ["negatives"],
        "named stage only, upstream cached: {third}"
    );
    let fourth = ok(d, &["run", "--set", "negatives.seed=8"]);
    assert_eq!(
        stages_run(&fourth),
        ["tokenize", "patches", "records", "train", "evaluate"],
        "{fourth}"
    );

    // Changing a raw input invalidates its stage and everything below.
    let vocab = std::fs::read_to_string(d.join("vocab.txt")).unwrap();
    std::fs::write(
        d.join("vocab.txt"),
        vocab.replace("\nstripes\n", "\nstriped\n"),
    )
    .unwrap();
    let status = ok(d, &["status"]);
    assert!(status.contains("input file changed: vocab.txt"), "{status}");

    // inspect, from the CLI and from Python.
    let shown = ok(d, &["inspect", "negatives"]);
    assert!(
        shown.contains("negatives.parquet") && shown.contains("pair_id"),
        "{shown}"
    );
    // The vocabulary changed, so this config's tokenize entry is not built: the tools say so
    // and point to `--latest`, which reads the last run's entry.
    let stale = run(d, &["inspect", "tokenize/texts.parquet"]);
    let err = String::from_utf8_lossy(&stale.stderr);
    assert!(
        !stale.status.success()
            && err.contains("input file changed: vocab.txt")
            && err.contains("--latest"),
        "{err}"
    );
    // One line per row, fitted to the width; or one line per field.
    let shown = ok(
        d,
        &[
            "inspect",
            "tokenize/texts.parquet",
            "--latest",
            "--rows",
            "2",
            "--width",
            "70",
        ],
    );
    let table: Vec<&str> = shown
        .lines()
        .skip_while(|l| !l.starts_with('─'))
        .skip(1)
        .take_while(|l| !l.is_empty() && !l.starts_with('('))
        .collect();
    assert_eq!(table.len(), 2, "two rows, one line each: {shown}");
    let body: Vec<&str> = shown
        .lines()
        .skip_while(|l| !l.starts_with("product_id "))
        .collect();
    assert!(body.len() >= 4, "{shown}");
    assert!(body.iter().all(|l| l.chars().count() <= 70), "{shown}");
    let shown = ok(
        d,
        &[
            "inspect",
            "negatives",
            "--rows",
            "1",
            "--vertical",
            "--columns",
            "pair_id,round",
            "--width",
            "50",
        ],
    );
    assert!(shown.contains("── row 1 of"), "{shown}");
    assert!(
        shown.lines().any(|l| l.starts_with("pair_id "))
            && shown.lines().any(|l| l.starts_with("round ")),
        "{shown}"
    );
    let bad = run(d, &["inspect", "negatives", "--columns", "nope"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("no column `nope`"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let pq = d.join("artifacts/tokenize/latest/tokens.parquet");
    let py = std::process::Command::new(python())
        .args(["-c", "import sys, pyarrow.parquet as pq, pandas as pd; t = pq.read_table(sys.argv[1]); df = pd.read_parquet(sys.argv[1]); print(t.num_rows, len(df), len(df.input_ids[0]))"])
        .arg(&pq)
        .output()
        .expect("python");
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let words: Vec<String> = String::from_utf8_lossy(&py.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(words[0], words[1]);
    assert_eq!(words[2], "32");

    // rank: texts for an image, and images for a text, with the trained model.
    let img = d.join("artifacts/ingest/latest/images/S000001.png");
    let out = ok(
        d,
        &[
            "rank",
            "--image",
            img.to_str().unwrap(),
            "--text",
            "navy striped shirt",
            "--text",
            "red leather boots",
            "--text",
            "yellow tote bag",
            "--latest",
        ],
    );
    let ranked = |out: &str| {
        out.lines()
            .filter(|l| {
                l.trim_start()
                    .split_once(". ")
                    .is_some_and(|(n, _)| n.parse::<usize>().is_ok())
            })
            .count()
    };
    assert_eq!(ranked(&out), 3, "{out}");
    let out = ok(
        d,
        &[
            "rank",
            "--text",
            "black jeans",
            "--image",
            d.join("artifacts/ingest/latest/images").to_str().unwrap(),
            "--top",
            "5",
            "--latest",
        ],
    );
    assert_eq!(ranked(&out), 5, "{out}");

    // show draws a record.
    ok(d, &["show", "p:S000000", "--out", "rec.png", "--latest"]);
    let img = image::open(d.join("rec.png")).unwrap();
    assert!(img.width() > 500);

    // gc deletes what neither the config nor `latest` points at; the current entries stay cached.
    let gc = ok(d, &["gc"]);
    assert!(gc.contains("deleted"), "{gc}");
    let again = ok(d, &["run", "--set", "negatives.seed=8"]);
    assert_eq!(
        stages_run(&again),
        ["tokenize", "records", "train", "evaluate"],
        "the vocab changed: {again}"
    );

    // A change to the products' texts alone re-runs ingest and what reads the texts, but
    // not `features`: it reads only the images (ids, references, content hashes).
    let texts = ok(
        d,
        &[
            "run",
            "--set",
            "negatives.seed=8",
            "--set",
            "ingest.text=title",
        ],
    );
    let ran = stages_run(&texts);
    assert!(ran.contains(&"ingest".to_string()), "{texts}");
    assert!(!ran.contains(&"features".to_string()), "{texts}");
}

#[test]
fn malformed_configs_fail_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = tiny_pipeline(d, 20, "flex");
    let good = std::fs::read_to_string(&p).unwrap();
    let cases = [
        (
            good.replace("[stages.pairs]", "[stages.pears]"),
            "unknown stage `pears`",
        ),
        (good.replace("seed = 3", "sead = 3"), "unknown param `sead`"),
        (
            good.replace("products = 20", "products = \"many\""),
            "expected an integer, found a string",
        ),
        (
            good.replace(
                "deps = [\"ingest\"]\n",
                "deps = [\"ingest\", \"evaluate\"]\n",
            ),
            "cycle",
        ),
        (
            good.replace("[stages.ingest.params]", "[stages.ingest.params"),
            "p.toml",
        ),
    ];
    for (text, want) in cases {
        let f = d.join("p.toml");
        std::fs::write(&f, &text).unwrap();
        let out = run(d, &["run", "--config", "p.toml"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains(want), "expected {want:?} in:\n{err}");
        assert!(err.contains("p.toml:"), "names the file and line: {err}");
        assert!(!d.join("artifacts/ingest").exists(), "nothing ran");
    }
    let out = run(d, &["run", "--set", "negatives.sed=1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean `seed`"));
}

#[test]
fn data_stages_are_byte_identical_for_a_seed_and_differ_for_another() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for d in [a.path(), b.path()] {
        tiny_pipeline(d, 40, "flex");
        ok(d, &["run", "patches", "tokenize"]);
    }
    let latest = |root: &std::path::Path, stage: &str, file: &str| {
        std::fs::read(root.join("artifacts").join(stage).join("latest").join(file)).unwrap()
    };
    for (stage, file) in [
        ("ingest", "products.parquet"),
        ("pairs", "pairs.parquet"),
        ("negatives", "negatives.parquet"),
        ("tokenize", "tokens.parquet"),
        ("patches", "patch_masks.parquet"),
    ] {
        let (x, y) = (latest(a.path(), stage, file), latest(b.path(), stage, file));
        assert_eq!(x, y, "{stage}/{file} differs between identical runs");
    }
    let d = b.path();
    ok(
        d,
        &[
            "run",
            "patches",
            "tokenize",
            "--set",
            "negatives.seed=99",
            "--set",
            "tokenize.seed=5",
            "--set",
            "patches.seed=6",
        ],
    );
    for (stage, file) in [
        ("negatives", "negatives.parquet"),
        ("tokenize", "tokens.parquet"),
        ("patches", "patch_masks.parquet"),
    ] {
        let (x, y) = (latest(a.path(), stage, file), latest(d, stage, file));
        assert_ne!(x, y, "{stage} did not change with its seed");
    }
}

#[test]
fn params_shows_values_defaults_and_docs_and_deps_default_to_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tiny_pipeline(d, 20, "flex");
    let out = ok(d, &["params", "negatives", "--set", "negatives.seed=9"]);
    assert!(out.starts_with("[negatives] "), "{out}");
    let seed = out
        .lines()
        .find(|l| l.trim_start().starts_with("*seed = 9"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(seed.contains("default 7; an integer, 0 or more"), "{seed}");
    assert!(out.contains("strategy = \"subcategory\""), "{out}");
    assert!(!out.contains("[ingest]"), "only the stage asked for: {out}");
    let all = ok(d, &["params"]);
    for s in ["[ingest]", "[features]", "[train]", "[evaluate]"] {
        assert!(all.contains(s), "{s}: {all}");
    }
    let bad = run(d, &["params", "negativs"]);
    assert!(!bad.status.success());
    let bad = run(d, &["status", "--set", "train.learning_rate=0.1"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("did you mean `lr` (peak learning rate)?"),
        "{err}"
    );
    for verb in ["params", "run", "verify"] {
        let bad = run(d, &[verb, "trian"]);
        let err = String::from_utf8_lossy(&bad.stderr);
        assert!(
            !bad.status.success() && err.contains("did you mean `train`?"),
            "{verb}: {err}"
        );
    }

    // A pipeline without `deps` lines: each stage depends on what it reads.
    let cfg = std::fs::read_to_string(d.join("pipeline.toml")).unwrap();
    let no_deps: String = cfg
        .lines()
        .filter(|l| !l.starts_with("deps ="))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(cfg, no_deps);
    std::fs::write(d.join("pipeline.toml"), &no_deps).unwrap();
    let dag = ok(d, &["dag"]);
    assert!(
        dag.contains("features") && dag.contains("← ingest, patches"),
        "{dag}"
    );
    assert!(dag.contains("← records, features"), "{dag}");
}

/// The user's case from issue 32: an experiment with `--set` moves train's `latest`, then
/// `gc`. The model the config uses stays, and `status` calls the whole config cached.
#[test]
fn gc_after_an_experiment_keeps_the_configs_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tiny_pipeline(d, 30, "flex");
    ok(d, &["run"]);
    let model = std::fs::canonicalize(d.join("artifacts/train/latest")).unwrap();
    ok(d, &["run", "train", "--set", "train.max_steps=2"]);
    assert_ne!(
        std::fs::canonicalize(d.join("artifacts/train/latest")).unwrap(),
        model
    );
    // The two runs side by side, and their difference.
    let runs = ok(d, &["runs", "train"]);
    let rows: Vec<&str> = runs
        .lines()
        .filter(|l| l.len() > 12 && l.as_bytes()[0].is_ascii_hexdigit())
        .collect();
    assert_eq!(rows.len(), 2, "{runs}");
    assert!(
        runs.contains("max_steps") && rows[1].contains(" * ") && rows[1].contains(" 2 "),
        "{runs}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok_stdout(d, &["runs", "train", "--json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    assert_eq!(json[1]["params"]["max_steps"], 2);
    let new_key = std::fs::canonicalize(d.join("artifacts/train/latest")).unwrap();
    let new_key = new_key.file_name().unwrap().to_str().unwrap();
    let old_key = model.file_name().unwrap().to_str().unwrap();
    let diff = ok(d, &["diff", &old_key[..10], &new_key[..10]]);
    assert!(
        diff.lines()
            .any(|l| l.starts_with("max_steps") && l.trim_end().ends_with('2')),
        "{diff}"
    );
    assert!(diff.contains("steps") && diff.contains("change"), "{diff}");
    let dj: serde_json::Value =
        serde_json::from_str(&ok_stdout(d, &["diff", old_key, new_key, "--json"])).unwrap();
    assert_eq!(dj["params"][0]["name"], "max_steps");
    let bad = run(d, &["diff", "zzzz", new_key]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no entry's key starts with `zzzz`"));

    // `evaluate --model` given the stage folder names its entries.
    let bad = run(
        d,
        &[
            "evaluate",
            "--model",
            "artifacts/train",
            "--csv",
            "none.csv",
            "--out",
            "ev",
        ],
    );
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("a stage folder, not a model") && err.contains("artifacts/train/latest"),
        "{err}"
    );

    std::fs::write(
        d.join("c.csv"),
        "product_id,image,title,description,category,subcategory,split\n1,a.png,t,d,c,s,train\n",
    )
    .unwrap();
    for flag in ["--queries", "--negatives", "--batch-size", "--rerank-k"] {
        let bad = run(
            d,
            &[
                "evaluate",
                "--model",
                "artifacts/train/latest",
                "--csv",
                "c.csv",
                flag,
                "0",
                "--out",
                "ev",
            ],
        );
        let err = String::from_utf8_lossy(&bad.stderr);
        assert!(!bad.status.success() && err.contains(flag), "{flag}: {err}");
    }
    // A split with no rows, and a missing split column: errors in this command's own flags.
    let bad = run(
        d,
        &[
            "evaluate",
            "--model",
            "artifacts/train/latest",
            "--csv",
            "c.csv",
            "--out",
            "ev",
        ],
    );
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("no row has split = `valid`")
            && err.contains("`train` (1 rows)")
            && err.contains("--split"),
        "{err}"
    );
    let bad = run(
        d,
        &[
            "evaluate",
            "--model",
            "artifacts/train/latest",
            "--csv",
            "c.csv",
            "--split-column",
            "part",
            "--out",
            "ev",
        ],
    );
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("no column `part`") && err.contains("--split-column"),
        "{err}"
    );

    let dry = ok(d, &["gc", "--dry-run"]);
    assert!(
        dry.lines()
            .any(|l| l.starts_with("keep") && l.contains("resolves to")),
        "{dry}"
    );
    assert!(!dry.contains("would delete  train/"), "{dry}");
    let gc = ok(d, &["gc"]);
    assert!(model.join("model.safetensors").is_file(), "{gc}");
    let status = ok(d, &["status"]);
    assert!(
        !status.contains("will run"),
        "the config's entries are all still cached: {status}"
    );
    // The experiment's model is `latest`, so it stays too.
    assert!(d.join("artifacts/train/latest/model.safetensors").is_file());
}

/// A command whose reader goes away (`… | head -n 1`) ends without a panic message.
#[test]
fn a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tiny_pipeline(d, 20, "flex");
    let mut child = std::process::Command::new(bin())
        .args(["params"])
        .current_dir(d)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the command prints: every line meets a closed pipe.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{:?} {err}",
        out.status
    );
}

/// After `run negatives --set negatives.seed=8`, the tools read the entry the config resolves
/// to (seed 7) and say which; `--latest` reads the experiment; `status` marks the stage; a
/// damaged config entry is refused with `status`'s words.
#[test]
fn tools_read_the_configs_entry_and_say_which() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tiny_pipeline(d, 20, "flex");
    ok(d, &["run", "negatives"]);
    let configs = std::fs::canonicalize(d.join("artifacts/negatives/latest")).unwrap();
    let key = configs.file_name().unwrap().to_string_lossy().into_owned();
    ok(d, &["run", "negatives", "--set", "negatives.seed=8"]);
    let out = ok(d, &["inspect", "negatives", "--rows", "1"]);
    assert!(
        out.contains(&format!("using negatives/{}", &key[..12])),
        "{out}"
    );
    assert!(out.contains("\"seed\":7"), "{out}");
    let out = ok(d, &["inspect", "negatives", "--rows", "1", "--latest"]);
    assert!(
        out.contains("\"seed\":8") && out.contains("latest run"),
        "{out}"
    );
    let status = ok(d, &["status"]);
    assert!(status.contains("`latest` is another run"), "{status}");

    // Damage the config's entry: the tool refuses it as `status` would.
    let pq = configs.join("negatives.parquet");
    let bytes = std::fs::read(&pq).unwrap();
    std::fs::write(&pq, &bytes[..bytes.len() / 2]).unwrap();
    let bad = run(d, &["inspect", "negatives"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        err.contains("damaged") && err.contains("negatives.parquet"),
        "{err}"
    );
}

/// Runs and asserts success; returns stdout alone (for JSON).
fn ok_stdout(dir: &std::path::Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Raw inputs are keyed by content and by their resolved path (issue 32): the same vocabulary
/// given absolutely, as `./vocab.txt` or through a symlink keeps tokenize's key, and so does
/// the whole project moved to another folder; other bytes change it.
#[test]
fn the_same_file_under_another_spelling_keeps_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("project");
    std::fs::create_dir(&d).unwrap();
    tiny_pipeline(&d, 20, "flex");
    ok(&d, &["run", "tokenize"]);
    let state = |dir: &std::path::Path, set: &str| -> String {
        let mut args = vec!["status", "--json"];
        if !set.is_empty() {
            args.extend(["--set", set]);
        }
        let plan: serde_json::Value = serde_json::from_str(&ok(dir, &args)).unwrap();
        let t = plan
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stage"] == "tokenize")
            .unwrap()
            .clone();
        t["state"].as_str().unwrap().to_string()
    };
    assert_eq!(state(&d, ""), "cached");
    let abs = d.join("vocab.txt").canonicalize().unwrap();
    assert_eq!(
        state(&d, &format!("tokenize.vocab={}", abs.display())),
        "cached",
        "absolute path"
    );
    assert_eq!(state(&d, "tokenize.vocab=./vocab.txt"), "cached");
    std::os::unix::fs::symlink("vocab.txt", d.join("link.txt")).unwrap();
    assert_eq!(state(&d, "tokenize.vocab=link.txt"), "cached", "symlink");
    // Other bytes under another name: a new key.
    let text = std::fs::read_to_string(d.join("vocab.txt")).unwrap();
    std::fs::write(
        d.join("other.txt"),
        text.replace("\nstripes\n", "\nstriped\n"),
    )
    .unwrap();
    assert_eq!(state(&d, "tokenize.vocab=other.txt"), "will_run");
    // The project (config, inputs, store) moved elsewhere: every entry still cached.
    let moved = dir.path().join("moved");
    std::fs::rename(&d, &moved).unwrap();
    assert_eq!(state(&moved, ""), "cached", "moved project");
}

/// `embed` and `search` (issue 33): the catalogue's embeddings as files numpy and pandas read,
/// and exact search with them — by product (similar images, itself left out), by text, with
/// filters — whose scores are the model's ITC scores, best first.
#[test]
fn embed_and_search_the_catalogue() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = tiny_pipeline(d, 40, "tch");
    let mut text = std::fs::read_to_string(&cfg).unwrap().replace(
        "init = \"random\"",
        "init = \"random\"\nw_itc = 1.0\njoint = false",
    );
    text.push_str("\n[stages.embed]\n");
    std::fs::write(&cfg, text).unwrap();
    let out = ok(d, &["run", "embed"]);
    assert!(out.contains("embed"), "{out}");
    let e = d.join("artifacts/embed/latest");
    let py = std::process::Command::new(python())
        .args([
            "-c",
            "import sys, json, numpy as np, pandas as pd; d = sys.argv[1]; i = np.load(d + '/image.npy'); t = np.load(d + '/text.npy'); df = pd.read_parquet(d + '/items.parquet'); m = json.load(open(d + '/meta.json')); print(i.shape[0], i.shape[1], t.shape[0], len(df), m['dim'], round(float(np.linalg.norm(i, axis=1).mean()), 4))",
            e.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let v: Vec<String> = String::from_utf8_lossy(&py.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(v[0], v[2], "{v:?}");
    assert_eq!(v[0], v[3], "one row per product: {v:?}");
    assert_eq!(v[1], v[4], "{v:?}");
    assert_eq!(v[5], "1.0", "L2-normalised rows: {v:?}");
    let n: usize = v[0].parse().unwrap();
    assert!(n >= 30, "{v:?}");

    let search = |extra: &[&str]| -> serde_json::Value {
        let mut a = vec!["search", "--json"];
        a.extend(extra);
        let out = run(d, &a);
        let (so, se) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{a:?}: {se}");
        serde_json::from_str(&so).unwrap_or_else(|e| panic!("{e}: {so}{se}"))
    };
    let items = fashionbert::table::read_parquet(&e.join("items.parquet")).unwrap();
    let pids = fashionbert::table::strings(&items, "product_id").unwrap();
    let subs = fashionbert::table::strings(&items, "subcategory").unwrap();
    let titles = fashionbert::table::strings(&items, "title").unwrap();
    let r = search(&["--product", &pids[0], "-k", "5"]);
    let hits = r["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 5);
    assert!(
        hits.iter().all(|h| h["product_id"] != pids[0].as_str()),
        "{r}"
    );
    let scores: Vec<f64> = hits.iter().map(|h| h["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert!(r["entry"].as_str().unwrap().starts_with("embed/"), "{r}");
    assert!(r["model"].as_str().unwrap().starts_with("train/"), "{r}");
    // A text query: encoded by the model, every hit of the asked subcategory.
    let r = search(&["--text", &titles[3], "--subcategory", &subs[3], "-k", "50"]);
    let hits = r["hits"].as_array().unwrap();
    assert!(!hits.is_empty() && hits.len() <= n);
    assert!(
        hits.iter().all(|h| h["subcategory"] == subs[3].as_str()),
        "{r}"
    );
    assert_eq!(r["ranked"], "images");
    // The table form names the entry; a product that is not there is a clear error.
    let table = ok(d, &["search", "--product", &pids[1]]);
    assert!(
        table.contains("using embed/") && table.contains("rank"),
        "{table}"
    );
    let bad = run(d, &["search", "--product", "no-such-product"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no-such-product"));
}
