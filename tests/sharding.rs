//! Sharded `features` (docs/scaling.md): N shard processes at once against one store merge into
//! exactly the entry an unsharded run writes; a shard killed mid-way leaves nothing that is read
//! and is simply re-run; the Slurm and Kubernetes files under deploy/ run these commands.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const PRODUCTS: usize = 48;

/// Every output file of the `features` entry `latest` points at, but its manifest (which
/// records times); and the entry's key.
fn features_entry(dir: &Path) -> (String, BTreeMap<String, Vec<u8>>) {
    let latest = dir.join("artifacts/features/latest");
    let key = std::fs::read_link(&latest)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let entry = dir.join("artifacts/features").join(&key);
    let mut files = BTreeMap::new();
    for rel in fashionbert::dag::store::list_files(&entry).unwrap() {
        if rel != "manifest.json" {
            files.insert(rel.clone(), std::fs::read(entry.join(&rel)).unwrap());
        }
    }
    (key, files)
}

fn unsharded() -> (tempfile::TempDir, (String, BTreeMap<String, Vec<u8>>)) {
    let d = tempfile::tempdir().unwrap();
    tiny_pipeline(d.path(), PRODUCTS, "auto");
    ok(d.path(), &["run", "features"]);
    let e = features_entry(d.path());
    (d, e)
}

/// Starts a process with its output captured (for [`finish`]).
fn spawn(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn shard(dir: &Path, i: usize, n: usize) -> Child {
    spawn(
        Command::new(bin())
            .args(["run", "features", "--shard", &format!("{i}/{n}")])
            .current_dir(dir),
    )
}

/// Waits for a shard (or a scheduler's task) and asserts it succeeded.
fn finish(child: Child) -> String {
    succeeded(child.wait_with_output().unwrap(), "shard")
}

/// The tiny pipeline's config without `train` and `evaluate` (to keep merges short).
fn short_config(dir: &Path) -> &'static str {
    let cfg = std::fs::read_to_string(dir.join("pipeline.toml")).unwrap();
    std::fs::write(
        dir.join("short.toml"),
        &cfg[..cfg.find("[stages.train]").unwrap()],
    )
    .unwrap();
    "short.toml"
}

fn assert_same(a: &(String, BTreeMap<String, Vec<u8>>), b: &(String, BTreeMap<String, Vec<u8>>)) {
    assert_eq!(a.0, b.0, "same key");
    assert_eq!(
        a.1.keys().collect::<Vec<_>>(),
        b.1.keys().collect::<Vec<_>>(),
        "same files"
    );
    for (name, bytes) in &a.1 {
        assert!(bytes == &b.1[name], "{name} differs");
    }
}

fn parts_dir(dir: &Path) -> PathBuf {
    dir.join("artifacts/features/.shards")
}

#[test]
fn four_concurrent_shards_merge_into_the_unsharded_entry() {
    let (_a, reference) = unsharded();
    assert!(reference.1.keys().any(|k| k.starts_with("shards/")));

    let d = tempfile::tempdir().unwrap();
    tiny_pipeline(d.path(), PRODUCTS, "auto");
    let t0 = Instant::now();
    let children: Vec<Child> = (0..4).map(|i| shard(d.path(), i, 4)).collect();
    let logs: Vec<String> = children.into_iter().map(finish).collect();
    eprintln!("4 concurrent shards: {:.1}s", t0.elapsed().as_secs_f64());
    for (i, log) in logs.iter().enumerate() {
        assert!(log.contains(&format!("shard {i}/4 done")), "{log}");
    }
    // Only parts so far: no entry for `records` to read.
    assert!(!d.path().join("artifacts/features/latest").exists());
    let status = ok(d.path(), &["status"]);
    assert!(status.contains("4/4 shards done"), "{status}");

    // A duplicated shard finds its part and does nothing.
    let again = ok(d.path(), &["run", "features", "--shard", "2/4"]);
    assert!(again.contains("shard 2/4 already done"), "{again}");

    let merged = ok(d.path(), &["merge", "features"]);
    assert!(merged.contains("merging"), "{merged}");
    assert_eq!(stages_run(&merged), ["features"], "upstream was cached");
    assert_same(&reference, &features_entry(d.path()));
    assert!(
        !parts_dir(d.path()).exists(),
        "parts are removed once merged"
    );
    let m = fashionbert::dag::Manifest::read(&d.path().join("artifacts/features/latest")).unwrap();
    assert_eq!(m.notes["shards"].as_array().unwrap().len(), 4);

    // Downstream stages read the merged entry as any other; a shard run now has nothing to do.
    ok(d.path(), &["run", "records"]);
    let late = ok(d.path(), &["run", "features", "--shard", "0/4"]);
    assert!(late.contains("nothing for shard 0/4 to do"), "{late}");
}

#[test]
fn a_killed_shard_is_rerun_alone_and_the_next_run_completes_the_entry() {
    let d = tempfile::tempdir().unwrap();
    let cfg = tiny_pipeline(d.path(), PRODUCTS, "auto");
    // One feature file per image, so a shard killed mid-way has written some of them.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("shard_images = 16", "shard_images = 1")).unwrap();
    let (_b, reference_1) = {
        let b = tempfile::tempdir().unwrap();
        let c = tiny_pipeline(b.path(), PRODUCTS, "auto");
        std::fs::write(&c, text.replace("shard_images = 16", "shard_images = 1")).unwrap();
        ok(b.path(), &["run", "features"]);
        let e = features_entry(b.path());
        (b, e)
    };

    for i in [0, 2, 3] {
        finish(shard(d.path(), i, 4));
    }
    let mut victim = shard(d.path(), 1, 4);
    let t0 = Instant::now();
    let partial = loop {
        let found = std::fs::read_dir(parts_dir(d.path()).join(&reference_1.0))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(".tmp-part-00001")
                    && p.join("shards/shard-00001.bin").exists()
            });
        if let Some(p) = found {
            break p;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "shard 1/4 never started writing"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    victim.kill().unwrap(); // SIGKILL, mid-way through its images
    victim.wait().unwrap();
    assert!(
        partial.exists(),
        "the killed shard's leftovers stay until cleaned"
    );
    assert!(
        !parts_dir(d.path())
            .join(&reference_1.0)
            .join("part-00001-of-00004")
            .exists(),
        "a killed shard leaves no part"
    );

    let status = ok(d.path(), &["status"]);
    assert!(status.contains("3/4 shards done"), "{status}");
    let out = run(d.path(), &["merge", "features"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("3/4 shards done, missing 1/4"), "{err}");
    assert!(!d.path().join("artifacts/features/latest").exists());

    // Re-running only that shard completes the set; its dead leftovers are cleaned.
    let log = finish(shard(d.path(), 1, 4));
    assert!(log.contains("4/4 shards done"), "{log}");
    assert!(
        !partial.exists(),
        "a dead shard's .tmp- directory is removed"
    );
    ok(d.path(), &["merge", "features"]);
    assert_same(&reference_1, &features_entry(d.path()));
}

#[test]
fn a_plain_run_computes_the_missing_shards_and_merges() {
    let (_a, reference) = unsharded();
    let d = tempfile::tempdir().unwrap();
    tiny_pipeline(d.path(), PRODUCTS, "auto");
    finish(shard(d.path(), 1, 3));
    let out = ok(d.path(), &["run", "records"]);
    assert!(
        out.contains("1/3 shards done: the run computes the other 2 and merges"),
        "{out}"
    );
    assert!(out.contains("merging"), "{out}");
    assert_same(&reference, &features_entry(d.path()));

    // Wrong uses say what to do.
    for (args, want) in [
        (
            &["run", "features", "--shard", "3/3"][..],
            "numbered 0 to 2",
        ),
        (&["run", "features", "--shard", "x"][..], "write I/N"),
        (
            &["run", "train", "--shard", "0/2"][..],
            "does not split into shards",
        ),
        (&["run", "--shard", "0/2"][..], "name exactly one"),
        (&["merge", "train"][..], "does not split into shards"),
    ] {
        let o = run(d.path(), args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// Lines of a shell script or YAML that are not comments.
fn code_lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

fn yaml_value<'a>(text: &'a str, key: &str) -> &'a str {
    code_lines(text)
        .into_iter()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no `{key}:`"))
        .trim()
        .trim_matches('"')
}

/// The `args:` command of the (first) container, as `sh -c` runs it.
fn yaml_command(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim() == "args:")
        .expect("args:");
    lines[at + 1].trim().strip_prefix("- ").unwrap().to_string()
}

#[test]
fn the_slurm_and_kubernetes_files_run_the_sharded_pipeline() {
    let (_a, reference) = unsharded();
    let deploy = root().join("deploy");
    let bin_dir = Path::new(bin()).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());

    // Slurm: the array script for each task id of `--array=1-4` at once, then the merge script.
    let sbatch = std::fs::read_to_string(deploy.join("slurm/features-shards.sbatch")).unwrap();
    assert!(
        sbatch.lines().any(|l| l.starts_with("#SBATCH --array=0-")),
        "an array job"
    );
    for script in ["features-shards.sbatch", "merge.sbatch", "submit.sh"] {
        let st = Command::new("bash")
            .args(["-n", deploy.join("slurm").join(script).to_str().unwrap()])
            .status()
            .unwrap();
        assert!(st.success(), "{script} parses");
    }
    let d = tempfile::tempdir().unwrap();
    tiny_pipeline(d.path(), PRODUCTS, "auto");
    let tasks: Vec<Child> = (1..=4)
        .map(|id| {
            spawn(
                Command::new("bash")
                    .arg(deploy.join("slurm/features-shards.sbatch"))
                    .arg("pipeline.toml")
                    .current_dir(d.path())
                    .env("PATH", &path)
                    .env("SLURM_ARRAY_TASK_ID", id.to_string())
                    .env("SLURM_ARRAY_TASK_MIN", "1")
                    .env("SLURM_ARRAY_TASK_COUNT", "4"),
            )
        })
        .collect();
    for t in tasks {
        finish(t);
    }
    // The merge script merges, then runs the rest of the pipeline (here: stop after records,
    // to keep the test short, by pointing it at a config without train/evaluate).
    let out = Command::new("bash")
        .arg(deploy.join("slurm/merge.sbatch"))
        .arg(short_config(d.path()))
        .current_dir(d.path())
        .env("PATH", &path)
        .output()
        .unwrap();
    let text = succeeded(out, "merge.sbatch");
    assert!(text.contains("merging"), "{text}");
    assert_same(&reference, &features_entry(d.path()));
    assert!(d.path().join("artifacts/records/latest").exists());

    // Kubernetes: an Indexed Job whose completions, parallelism and NUM_SHARDS agree; its
    // command, run for each JOB_COMPLETION_INDEX (with 3 shards here), then the merge Job's.
    let job = std::fs::read_to_string(deploy.join("kubernetes/features-indexed-job.yaml")).unwrap();
    assert_eq!(yaml_value(&job, "completionMode"), "Indexed");
    let n = yaml_value(&job, "completions");
    assert_eq!(yaml_value(&job, "parallelism"), n);
    assert_eq!(
        yaml_value(&job, "value"),
        n,
        "NUM_SHARDS is the first env value"
    );
    let command = yaml_command(&job);
    assert!(
        command.contains("--shard \"$JOB_COMPLETION_INDEX/$NUM_SHARDS\""),
        "{command}"
    );
    let d = tempfile::tempdir().unwrap();
    tiny_pipeline(d.path(), PRODUCTS, "auto");
    let pods: Vec<Child> = (0..3)
        .map(|i| {
            spawn(
                Command::new("/bin/sh")
                    .args(["-c", &command])
                    .current_dir(d.path())
                    .env("PATH", &path)
                    .env("FB_CONFIG", "pipeline.toml")
                    .env("NUM_SHARDS", "3")
                    .env("JOB_COMPLETION_INDEX", i.to_string()),
            )
        })
        .collect();
    for p in pods {
        finish(p);
    }
    let merge = std::fs::read_to_string(deploy.join("kubernetes/merge-job.yaml")).unwrap();
    let command = yaml_command(&merge);
    assert!(
        command.starts_with("fashionbert merge features"),
        "{command}"
    );
    let out = Command::new("/bin/sh")
        .args(["-c", &command])
        .current_dir(d.path())
        .env("PATH", &path)
        .env("FB_CONFIG", short_config(d.path()))
        .output()
        .unwrap();
    succeeded(out, "the merge Job's command");
    assert_same(&reference, &features_entry(d.path()));
}

/// Every output file of the entry `latest` points at for `stage`, but its manifest; and its key.
fn entry(dir: &Path, stage: &str) -> (String, BTreeMap<String, Vec<u8>>) {
    let latest = dir.join("artifacts").join(stage).join("latest");
    let key = std::fs::read_link(&latest)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let at = dir.join("artifacts").join(stage).join(&key);
    let mut files = BTreeMap::new();
    for rel in fashionbert::dag::store::list_files(&at).unwrap() {
        if rel != "manifest.json" {
            files.insert(rel.clone(), std::fs::read(at.join(&rel)).unwrap());
        }
    }
    (key, files)
}

fn shard_of(dir: &Path, stage: &str, i: usize, n: usize, extra: &[&str]) -> Child {
    let s = format!("{i}/{n}");
    let mut args = vec!["run", stage, "--shard", &s];
    args.extend_from_slice(extra);
    spawn(Command::new(bin()).args(&args).current_dir(dir))
}

/// The counts the manifest of `stage`'s latest entry records.
fn counts(dir: &Path, stage: &str) -> BTreeMap<String, u64> {
    let m = fashionbert::dag::Manifest::read(&dir.join("artifacts").join(stage).join("latest"))
        .unwrap();
    m.counts.into_iter().collect()
}

/// A catalogue of `n` product images (synthetic ones, copied) and a CSV naming them, with three
/// broken rows: a truncated PNG, a file that is no image and a missing file.
fn broken_catalogue(dir: &Path, n: usize) {
    let src = tempfile::tempdir().unwrap();
    tiny_pipeline(src.path(), n, "auto");
    ok(src.path(), &["run", "ingest"]);
    let images = src.path().join("artifacts/ingest/latest/images");
    std::fs::create_dir_all(dir.join("img")).unwrap();
    let mut csv = String::from("product_id,image,title,description,category,subcategory,split\n");
    let subs = ["Shirts", "Tops", "Jeans"];
    for i in 0..n {
        let from = images.join(format!("S{i:06}.png"));
        let name = format!("img/p{i}.png");
        std::fs::copy(&from, dir.join(&name)).unwrap();
        let split = if i % 4 == 0 { "valid" } else { "train" };
        csv.push_str(&format!(
            "P{i},{name},Item {i},Description of item {i},Clothing,{},{split}\n",
            subs[i % 3]
        ));
    }
    let good = std::fs::read(dir.join("img/p0.png")).unwrap();
    std::fs::write(dir.join("img/truncated.png"), &good[..good.len() / 3]).unwrap();
    std::fs::write(dir.join("img/garbage.png"), b"not an image").unwrap();
    csv.push_str("B1,img/truncated.png,Broken,Truncated file,Clothing,Shirts,train\n");
    csv.push_str("B2,img/garbage.png,Garbage,Not an image,Clothing,Shirts,train\n");
    csv.push_str("B3,img/missing.png,Missing,No file,Clothing,Shirts,train\n");
    std::fs::write(dir.join("products.csv"), csv).unwrap();
    std::fs::write(
        dir.join("pipeline.toml"),
        "[runtime]\nartifacts = \"artifacts\"\n\n[stages.ingest]\n[stages.ingest.params]\nsource = \"csv\"\ncsv = \"products.csv\"\n",
    )
    .unwrap();
}

#[test]
fn ingest_image_checks_shard_and_merge_into_the_unsharded_entry() {
    // A CSV catalogue with broken images: the checks split by image id, the rejects survive.
    let a = tempfile::tempdir().unwrap();
    broken_catalogue(a.path(), 40);
    ok(a.path(), &["run", "ingest"]);
    let reference = entry(a.path(), "ingest");
    assert_eq!(counts(a.path(), "ingest")["rejected"], 3);
    assert_eq!(counts(a.path(), "ingest")["products"], 40);

    let b = tempfile::tempdir().unwrap();
    broken_catalogue(b.path(), 40);
    let children: Vec<Child> = (0..4)
        .map(|i| shard_of(b.path(), "ingest", i, 4, &[]))
        .collect();
    let logs: Vec<String> = children.into_iter().map(finish).collect();
    for (i, log) in logs.iter().enumerate() {
        assert!(log.contains(&format!("shard {i}/4 done")), "{log}");
    }
    assert!(
        !b.path().join("artifacts/ingest/latest").exists(),
        "only parts so far"
    );
    let status = ok(b.path(), &["status"]);
    assert!(status.contains("4/4 shards done"), "{status}");
    let merged = ok(b.path(), &["merge", "ingest"]);
    assert!(merged.contains("merging"), "{merged}");
    assert_same(&reference, &entry(b.path(), "ingest"));
    assert_eq!(counts(b.path(), "ingest"), counts(a.path(), "ingest"));

    // Synthetic products: each shard draws its images; the merge links them into the entry.
    let (_c, synth_ref) = {
        let c = tempfile::tempdir().unwrap();
        tiny_pipeline(c.path(), PRODUCTS, "auto");
        ok(c.path(), &["run", "ingest"]);
        let e = entry(c.path(), "ingest");
        (c, e)
    };
    assert!(synth_ref.1.keys().any(|k| k.starts_with("images/")));
    let d = tempfile::tempdir().unwrap();
    tiny_pipeline(d.path(), PRODUCTS, "auto");
    // Shard 2/3 through the Slurm array script, as task 3 of `--array=1-3` with STAGE=ingest.
    let bin_dir = Path::new(bin()).parent().unwrap().to_path_buf();
    finish(spawn(
        Command::new("bash")
            .arg(root().join("deploy/slurm/features-shards.sbatch"))
            .arg("pipeline.toml")
            .current_dir(d.path())
            .env(
                "PATH",
                format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap()),
            )
            .env("STAGE", "ingest")
            .env("SLURM_ARRAY_TASK_ID", "3")
            .env("SLURM_ARRAY_TASK_MIN", "1")
            .env("SLURM_ARRAY_TASK_COUNT", "3"),
    ));
    // A plain run computes the other two shards and merges.
    let out = ok(d.path(), &["run", "ingest"]);
    assert!(
        out.contains("1/3 shards done: the run computes the other 2 and merges"),
        "{out}"
    );
    assert_same(&synth_ref, &entry(d.path(), "ingest"));
}

#[test]
fn evaluate_scoring_shards_and_merges_into_the_unsharded_entry() {
    // ITC for every candidate, the alignment head re-ranking the top 3: both kinds of work.
    let itc: &[&str] = &[
        "--set",
        "train.w_itc=1.0",
        "--set",
        "evaluate.score=itc_then_itm",
        "--set",
        "evaluate.rerank_k=3",
        "--set",
        "evaluate.batch_size=4",
    ];
    // Batches of 4, so every shard has several.
    let itm: &[&str] = &["--set", "train.w_itc=1.0", "--set", "evaluate.batch_size=4"];
    let a = tempfile::tempdir().unwrap();
    tiny_pipeline(a.path(), PRODUCTS, "auto");
    // `fashionbert ARGS EXTRA` in `dir`, which must succeed.
    let with = |dir: &Path, args: &[&str], extra: &[&str]| -> String {
        let all: Vec<&str> = args.iter().chain(extra).copied().collect();
        ok(dir, &all)
    };
    with(a.path(), &["run", "evaluate"], itc);
    let ref_itc = entry(a.path(), "evaluate");
    with(a.path(), &["run", "evaluate"], itm);
    let ref_itm = entry(a.path(), "evaluate");
    assert_ne!(ref_itc.0, ref_itm.0);

    // The same store without its evaluate entries: the same model, scored in shards.
    let b = tempfile::tempdir().unwrap();
    let st = Command::new("cp")
        .args(["-a", &format!("{}/.", a.path().display())])
        .arg(b.path())
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::remove_dir_all(b.path().join("artifacts/evaluate")).unwrap();

    let children: Vec<Child> = (0..3)
        .map(|i| shard_of(b.path(), "evaluate", i, 3, itc))
        .collect();
    for (i, log) in children.into_iter().map(finish).enumerate() {
        assert!(log.contains(&format!("shard {i}/3 done")), "{log}");
        assert_eq!(stages_run(&log), ["evaluate"], "upstream cached: {log}");
    }
    // Each part holds its own batches: every shard scored some pairs and encoded some inputs.
    let parts: Vec<fashionbert::dag::parts::PartManifest> =
        std::fs::read_dir(b.path().join("artifacts/evaluate/.shards"))
            .unwrap()
            .flat_map(|k| std::fs::read_dir(k.unwrap().path()).unwrap())
            .map(|p| fashionbert::dag::parts::PartManifest::read(&p.unwrap().path()).unwrap())
            .collect();
    assert_eq!(parts.len(), 3);
    for p in &parts {
        assert!(
            p.counts["pairs_scored"] > 0 && p.counts["itc_encodings"] > 0,
            "{:?}",
            p.counts
        );
    }
    let status = with(b.path(), &["status"], itc);
    assert!(status.contains("3/3 shards done"), "{status}");
    let merged = with(b.path(), &["merge", "evaluate"], itc);
    assert!(merged.contains("merging"), "{merged}");
    assert_same(&ref_itc, &entry(b.path(), "evaluate"));

    // The original's score, 1 of 2 shards run by hand; a plain run does the other and merges.
    finish(shard_of(b.path(), "evaluate", 0, 2, itm));
    let out = with(b.path(), &["run", "evaluate"], itm);
    assert!(
        out.contains("1/2 shards done: the run computes the other 1 and merges"),
        "{out}"
    );
    assert_same(&ref_itm, &entry(b.path(), "evaluate"));
}
