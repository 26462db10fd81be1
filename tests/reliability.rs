//! Reliability: every bad value and bad input the issue tracker reproduced ends in a clear
//! error (exit 1, never a panic's 101), and nothing is silently accepted. Each test names the
//! item of the fault table (README, "Faults and what happens").

mod common;

use common::*;

/// Runs the CLI and expects a clean failure (exit 1) whose output contains every `want`.
fn fails_with(dir: &std::path::Path, args: &[&str], want: &[&str]) -> String {
    let out = run(dir, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{args:?}: expected exit 1 (a clear error), got {:?}:\n{text}",
        out.status.code()
    );
    assert!(!text.contains("panicked"), "{args:?} panicked:\n{text}");
    for w in want {
        assert!(text.contains(w), "{args:?}: output lacks {w:?}:\n{text}");
    }
    text
}

/// Values that used to panic (max_len 0/1, max_predictions 0, masked_patches 0) or were
/// silently accepted (batch_size 0, epochs 0, image_size 0, valid_fraction 1.5 / -1, queries
/// 0, negative integers) are rejected when the config is read, naming the allowed values.
#[test]
fn out_of_range_params_are_rejected_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tiny_pipeline(d, 20, "flex");
    for (set, want) in [
        ("tokenize.max_len=0", "from 3 to 512"),
        ("tokenize.max_len=1", "from 3 to 512"),
        ("tokenize.max_predictions=0", "from 1 to 512"),
        ("patches.masked_patches=0", "from 1 to 4096"),
        ("train.batch_size=0", "1 or more"),
        ("train.epochs=0", "1 or more"),
        ("ingest.image_size=0", "from 8 to 4096"),
        ("ingest.valid_fraction=1.5", "from 0 to 0.95"),
        ("ingest.valid_fraction=-1", "from 0 to 0.95"),
        ("evaluate.queries=0", "1 or more"),
        ("negatives.seed=-3", "0 or more"),
        ("train.lr=-0.1", "from 0 to 10"),
    ] {
        let param = set.split('=').next().unwrap();
        fails_with(d, &["status", "--set", set], &[param, want]);
    }
    assert!(
        !d.join("artifacts").join("ingest").exists(),
        "nothing may run on a bad value"
    );
}

/// The same check on a value in the config file names the file, line and column.
#[test]
fn out_of_range_values_in_the_config_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = tiny_pipeline(d, 20, "flex");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("max_len = 32", "max_len = 1");
    std::fs::write(&cfg, &text).unwrap();
    let line = text.lines().position(|l| l == "max_len = 1").unwrap() + 1;
    fails_with(
        d,
        &["status"],
        &[&format!("pipeline.toml:{line}"), "max_len", "from 3 to 512"],
    );
}

/// `inspect` of a missing file outside a project says the file is missing, not that a
/// pipeline config cannot be read.
#[test]
fn inspect_of_a_missing_file_outside_a_project_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let text = fails_with(
        dir.path(),
        &["inspect", "/tmp/no-such-dir/nope.parquet"],
        &["/tmp/no-such-dir/nope.parquet: no such file"],
    );
    assert!(!text.contains("cannot read the pipeline config"), "{text}");
}

/// A CSV with only its header: the error says there are no data rows.
#[test]
fn a_csv_with_only_a_header_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tiny_pipeline(d, 20, "flex");
    std::fs::write(
        d.join("products.csv"),
        "product_id,image,title,description,category,subcategory,split\n",
    )
    .unwrap();
    let text = fails_with(
        d,
        &[
            "run",
            "ingest",
            "--set",
            "ingest.source=csv",
            "--set",
            "ingest.csv=products.csv",
        ],
        &["no data rows"],
    );
    assert!(!text.contains("printed above"), "{text}");
}

/// An unknown device names the devices there are.
#[test]
fn an_unknown_device_lists_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("m")).unwrap();
    let text = fails_with(
        d,
        &[
            "eval-tsv", "x.txt", "--model", "m", "--type", "img2txt", "--device", "gpu9",
        ],
        &["device `gpu9` is not known", "auto"],
    );
    assert!(!text.contains("built without"), "{text}");
}

/// `verify` hashes every entry and names a damaged file; `status` says the entry is damaged
/// and will run; `run` restores it.
#[test]
fn verify_and_status_name_a_damaged_output_and_run_rebuilds_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tiny_pipeline(d, 20, "flex");
    ok(d, &["run", "pairs"]);
    let out = ok(d, &["verify"]);
    assert!(out.contains("2 entries verified"), "{out}");
    let pairs = std::fs::canonicalize(d.join("artifacts/pairs/latest")).unwrap();
    let file = pairs.join("pairs.parquet");
    let good = std::fs::read(&file).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&file, &bad).unwrap();
    let text = fails_with(
        d,
        &["verify"],
        &["DAMAGED  pairs/", "pairs.parquet: content changed"],
    );
    assert!(text.contains("ok       ingest/"), "{text}");
    let status = ok(d, &["status"]);
    assert!(
        status.contains("cached entry damaged: pairs.parquet: content changed"),
        "{status}"
    );
    fails_with(
        d,
        &["run", "pairs", "--no-rebuild"],
        &["stage `pairs`", "is damaged", "pairs.parquet"],
    );
    let rerun = ok(d, &["run", "pairs"]);
    assert_eq!(stages_run(&rerun), ["pairs"], "{rerun}");
    assert_eq!(std::fs::read(&file).unwrap(), good, "rebuilt byte for byte");
    ok(d, &["verify", "pairs"]);
}

/// bf16 products need libtorch: on flex the train stage says so, and what to set instead.
#[test]
fn bf16_on_flex_says_to_use_libtorch() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tiny_pipeline(d, 20, "flex");
    fails_with(
        d,
        &["run", "train", "--set", "train.precision=bf16"],
        &["train.precision", "libtorch", "--device tch"],
    );
}

/// Issue 31, item 4: a write that fails in `features` (here: a file-size limit, as a full
/// disk fails it) ends the run with the error instead of leaving the image loader blocked on
/// a channel nobody reads.
#[test]
fn a_failed_feature_write_ends_the_run() {
    use std::os::unix::process::CommandExt;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tiny_pipeline(d, 40, "flex");
    ok(d, &["run", "patches"]);
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["run", "features"])
        .current_dir(d)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 256 << 10,
                rlim_max: 256 << 10,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("`run features` hung after its write failed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("features") && err.contains("File too large"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // No entry was made; a run without the limit completes it.
    let again = ok(d, &["run", "features"]);
    assert_eq!(stages_run(&again), ["features"], "{again}");
}

/// Empty results are errors (issue 31, item 11): with no valid product there is no query, and
/// the run fails in `evaluate` saying so, instead of exiting 0 with NaN metrics.
#[test]
fn no_valid_product_is_an_error_not_nan_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tiny_pipeline(d, 20, "flex");
    fails_with(
        d,
        &[
            "run",
            "--set",
            "ingest.valid_fraction=0",
            "--set",
            "train.epochs=1",
        ],
        &["evaluate", "no query", "valid split"],
    );
}

/// Model sizes are checked when the run is planned (issue 31, item 8): a config that would
/// abort in the allocator, panic in a kernel or not fit in memory fails `status` with the
/// field named, before anything runs.
#[test]
fn absurd_model_sizes_fail_at_plan_time_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tiny_pipeline(d, 20, "flex");
    for (field, value, want) in [
        ("num_hidden_layers", "1000000", "from 1 to 256"),
        ("hidden_size", "1000000000", "from 1 to 16384"),
        ("hidden_size", "0", "from 1 to 16384"),
        ("intermediate_size", "0", "from 1 to 131072"),
        ("type_vocab_size", "0", "from 1 to 1024"),
        ("num_attention_heads", "0", "from 1 to 1024"),
        ("num_attention_heads", "5", "not a multiple"),
    ] {
        let cfg = format!(
            r#"{{"vocab_size": 30522, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128, "{field}": {value}}}"#
        );
        std::fs::write(d.join("big.json"), cfg).unwrap();
        fails_with(
            d,
            &["status", "--set", "train.config=big.json"],
            &[field, want],
        );
    }
    // Buildable sizes whose parameters would not fit in this machine's memory.
    std::fs::write(
        d.join("big.json"),
        r#"{"vocab_size": 30522, "hidden_size": 16384, "num_hidden_layers": 256, "num_attention_heads": 128, "intermediate_size": 65536}"#,
    )
    .unwrap();
    fails_with(
        d,
        &["status", "--set", "train.config=big.json"],
        &["parameters need about", "memory"],
    );
    assert!(!d.join("artifacts/train").exists());
}

/// Sizes given as flags are bounded before anything is sized by them (issue 31, item 9):
/// `import-tsv --dim 10000000000000` used to abort allocating. A bad flag is a usage error
/// (exit 2, as clap reports them) naming the flag and its range.
#[test]
fn import_tsv_sizes_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("x.list_csv"), "1\nx.tsv\n").unwrap();
    for (flag, value, want) in [
        ("--dim", "10000000000000", "from 1 to 1048576"),
        ("--patches", "0", "from 1 to 4096"),
        ("--text-len", "100000", "from 3 to 512"),
    ] {
        let out = run(d, &["import-tsv", "x.list_csv", "--out", "o", flag, value]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {err}");
        assert!(
            err.contains(flag) && err.contains(want) && !err.contains("panicked"),
            "{flag}: {err}"
        );
    }
    assert!(!d.join("o").exists());
}
