//! The DAG runner on its own, with toy stages (no ML): caching, invalidation, --set, kill -9,
//! locking and gc. Its guarantees must not depend on FashionBERT code.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fashionbert::dag::{
    DagError, Input, ParamDefault, ParamKind, ParamSpec, PipelineConfig, RawInput, Registry,
    RunContext, RunOptions, Runner, Stage, StageError, StageSpec, State, Why,
    hash::HashCache,
    lock::StoreLock,
    store::{GcOptions, Wanted},
};

// ---- toy stages -----------------------------------------------------------------------

/// Reads numbers (one per line) from a raw file and multiplies them by `scale`.
struct Source;
const SOURCE: StageSpec = StageSpec {
    name: "source",
    version: 1,
    about: "read numbers",
    inputs: &[],
    params: &[
        ParamSpec::new(
            "file",
            ParamKind::Str,
            ParamDefault::Str("numbers.txt"),
            "input",
        ),
        ParamSpec::new("scale", ParamKind::Int, ParamDefault::Int(1), "factor"),
    ],
    outputs: &["numbers.txt", "numbers.parquet"],
};
impl Stage for Source {
    fn spec(&self) -> &'static StageSpec {
        &SOURCE
    }
    fn raw_inputs(
        &self,
        p: &fashionbert::dag::Params,
        base: &Path,
    ) -> Result<Vec<RawInput>, StageError> {
        Ok(vec![RawInput::File(base.join(p.str("file")?))])
    }
    fn run(&self, ctx: &mut RunContext) -> Result<(), StageError> {
        let text = std::fs::read_to_string(ctx.resolve(ctx.params().str("file")?))?;
        let scale = ctx.params().int("scale")?;
        let nums: Vec<i64> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.trim().parse::<i64>().map(|n| n * scale))
            .collect::<Result<_, _>>()?;
        let out: Vec<String> = nums.iter().map(|n| n.to_string()).collect();
        std::fs::write(ctx.out("numbers.txt"), out.join("\n"))?;
        let mut df = fashionbert::table::frame(vec![fashionbert::table::col_i64("n", &nums)])?;
        fashionbert::table::write_parquet(&mut df, &ctx.out("numbers.parquet"))?;
        ctx.count("rows", nums.len() as u64);
        Ok(())
    }
}

/// Adds `offset` to each number; sleeps mid-write when FB_TOY_SLEEP is set (for kill tests).
struct Shift;
const SHIFT: StageSpec = StageSpec {
    name: "shift",
    version: 1,
    about: "add an offset",
    inputs: &[Input::all("source")],
    params: &[ParamSpec::new(
        "offset",
        ParamKind::Int,
        ParamDefault::Int(0),
        "offset",
    )],
    outputs: &["shifted.txt"],
};
impl Stage for Shift {
    fn spec(&self) -> &'static StageSpec {
        &SHIFT
    }
    fn run(&self, ctx: &mut RunContext) -> Result<(), StageError> {
        let text = std::fs::read_to_string(ctx.input("source", "numbers.txt")?)?;
        let off = ctx.params().int("offset")?;
        let out: Vec<String> = text
            .lines()
            .map(|l| (l.parse::<i64>().unwrap() + off).to_string())
            .collect();
        std::fs::write(ctx.out("partial.txt"), "half written")?;
        if let Ok(marker) = std::env::var("FB_TOY_SLEEP") {
            std::fs::write(marker, "started")?;
            std::thread::sleep(Duration::from_secs(60));
        }
        std::fs::write(ctx.out("shifted.txt"), out.join("\n"))?;
        Ok(())
    }
}

/// Sums its input.
struct Total;
const TOTAL: StageSpec = StageSpec {
    name: "total",
    version: 1,
    about: "sum",
    inputs: &[Input::all("shift")],
    params: &[],
    outputs: &["total.txt"],
};
impl Stage for Total {
    fn spec(&self) -> &'static StageSpec {
        &TOTAL
    }
    fn run(&self, ctx: &mut RunContext) -> Result<(), StageError> {
        let text = std::fs::read_to_string(ctx.input("shift", "shifted.txt")?)?;
        let s: i64 = text.lines().map(|l| l.parse::<i64>().unwrap()).sum();
        std::fs::write(ctx.out("total.txt"), s.to_string())?;
        Ok(())
    }
}

fn registry() -> Registry {
    Registry::new(&[]).with(Source).with(Shift).with(Total)
}

const CONFIG: &str = r#"
[runtime]
artifacts = "store"

[stages.source]
[stages.source.params]
file = "numbers.txt"

[stages.shift]
deps = ["source"]

[stages.total]
deps = ["shift"]
"#;

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("numbers.txt"), "1\n2\n3\n").unwrap();
    let cfg = dir.path().join("pipeline.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    (dir, cfg)
}

fn config(cfg: &Path, sets: &[&str]) -> PipelineConfig {
    let reg = registry();
    let mut c = PipelineConfig::load(cfg, &reg).unwrap();
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    c.apply_sets(&sets, &reg).unwrap();
    c
}

fn run(cfg: &Path, sets: &[&str], targets: &[&str]) -> Vec<(String, bool)> {
    let reg = registry();
    let c = config(cfg, sets);
    let runner = Runner::new(&reg, &c).unwrap();
    let targets: Vec<String> = targets.iter().map(|s| s.to_string()).collect();
    runner
        .run(&targets, &RunOptions::default())
        .unwrap()
        .into_iter()
        .map(|o| (o.stage, o.ran))
        .collect()
}

fn ran(outcomes: &[(String, bool)]) -> Vec<&str> {
    outcomes
        .iter()
        .filter(|(_, r)| *r)
        .map(|(s, _)| s.as_str())
        .collect()
}

fn plan(cfg: &Path, sets: &[&str]) -> Vec<fashionbert::dag::PlanItem> {
    let reg = registry();
    let c = config(cfg, sets);
    let runner = Runner::new(&reg, &c).unwrap();
    runner
        .plan(&[], false, &mut HashCache::ephemeral())
        .unwrap()
}

fn latest_file(dir: &Path, stage: &str, file: &str) -> String {
    std::fs::read_to_string(dir.join("store").join(stage).join("latest").join(file)).unwrap()
}

#[test]
fn second_run_runs_nothing_and_is_fast() {
    let (dir, cfg) = setup();
    assert_eq!(ran(&run(&cfg, &[], &[])), ["source", "shift", "total"]);
    let t0 = Instant::now();
    assert!(ran(&run(&cfg, &[], &[])).is_empty());
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert_eq!(latest_file(dir.path(), "total", "total.txt"), "6");
    assert!(plan(&cfg, &[]).iter().all(|p| p.state == State::Cached));
}

#[test]
fn set_reruns_the_stage_and_downstream_only_and_status_says_why() {
    let (dir, cfg) = setup();
    run(&cfg, &[], &[]);
    let p = plan(&cfg, &["shift.offset=10"]);
    assert_eq!(p[0].state, State::Cached);
    assert_eq!(p[1].state, State::WillRun);
    assert!(
        matches!(&p[1].why[0], Why::ParamsChanged { changes } if changes[0] == "offset 0 → 10")
    );
    assert_eq!(p[2].state, State::WillRun);
    assert!(
        matches!(&p[2].why[0], Why::UpstreamChanged { stages } if stages[0] == "shift (will run)")
    );

    let outcome = run(&cfg, &["shift.offset=10"], &["shift"]);
    assert_eq!(
        ran(&outcome),
        ["shift"],
        "only shift, not its upstream, not unnamed downstream"
    );
    assert_eq!(
        run(&cfg, &["shift.offset=10"], &[])
            .iter()
            .filter(|o| o.1)
            .count(),
        1
    );
    assert_eq!(latest_file(dir.path(), "total", "total.txt"), "36");
    // Back to the old value: every entry is still in the store, nothing runs.
    assert!(ran(&run(&cfg, &[], &[])).is_empty());
    assert_eq!(latest_file(dir.path(), "total", "total.txt"), "6");
}

#[test]
fn changing_a_raw_input_invalidates_its_stage_and_descendants() {
    let (dir, cfg) = setup();
    run(&cfg, &[], &[]);
    std::fs::write(dir.path().join("numbers.txt"), "1\n2\n4\n").unwrap();
    let p = plan(&cfg, &[]);
    assert!(matches!(&p[0].why[0], Why::InputChanged { paths } if paths[0] == "numbers.txt"));
    assert_eq!(ran(&run(&cfg, &[], &[])), ["source", "shift", "total"]);
    assert_eq!(latest_file(dir.path(), "total", "total.txt"), "7");
}

#[test]
fn manifest_records_everything() {
    let (dir, cfg) = setup();
    run(&cfg, &[], &[]);
    let entry = dir.path().join("store/source/latest");
    let m = fashionbert::dag::Manifest::read(&entry).unwrap();
    assert_eq!(m.stage, "source");
    assert_eq!(m.params.int("scale").unwrap(), 1);
    assert_eq!(m.counts["rows"], 3);
    assert!(m.inputs.contains_key("numbers.txt"));
    let pq = m.output("numbers.parquet").unwrap();
    assert_eq!(pq.rows, Some(3));
    assert_eq!(
        pq.blake3,
        fashionbert::dag::hash::hash_file(&entry.join("numbers.parquet")).unwrap()
    );
    let shift = fashionbert::dag::Manifest::read(&dir.path().join("store/shift/latest")).unwrap();
    assert_eq!(shift.upstream["source"], m.key);
}

#[test]
fn second_run_fails_or_waits_on_the_lock() {
    let (dir, cfg) = setup();
    let held = StoreLock::acquire(&dir.path().join("store"), false).unwrap();
    let reg = registry();
    let c = config(&cfg, &[]);
    let runner = Runner::new(&reg, &c).unwrap();
    let err = runner
        .run(
            &[],
            &RunOptions {
                no_wait: true,
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, DagError::Locked { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    // A waiting run proceeds once the holder lets go.
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(held);
    });
    let t0 = Instant::now();
    runner.run(&[], &RunOptions::default()).unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(250));
    release.join().unwrap();
}

#[test]
fn gc_deletes_only_unreferenced_entries() {
    let (dir, cfg) = setup();
    run(&cfg, &[], &[]);
    run(&cfg, &["shift.offset=5"], &[]);
    let store = fashionbert::dag::Store::open(&dir.path().join("store")).unwrap();
    assert_eq!(store.entries().unwrap().len(), 5);
    // Nothing wanted by a config: only each stage's `latest` stays.
    let victims = gc(&store, &Wanted::new(), false, true);
    assert_eq!(victims.len(), 2, "old shift and old total");
    assert_eq!(store.entries().unwrap().len(), 3);
    assert!(ran(&run(&cfg, &["shift.offset=5"], &[])).is_empty());
}

/// What a config resolves to, as `fashionbert gc` computes it.
fn wanted(cfg: &Path, sets: &[&str]) -> Wanted {
    let mut w = Wanted::new();
    for item in plan(cfg, sets) {
        if let Some(k) = item.key {
            w.entry(item.stage)
                .or_default()
                .entry(k)
                .or_default()
                .push("config".into());
        }
    }
    w
}

/// Runs gc (deleting when `delete`); the paths it deleted or would delete.
fn gc(store: &fashionbert::dag::Store, wanted: &Wanted, work: bool, delete: bool) -> Vec<PathBuf> {
    let plan = store.gc_plan(wanted, GcOptions { work }).unwrap();
    if delete {
        store.gc_apply(&plan).unwrap();
    }
    plan.delete.into_iter().map(|(i, _)| i.path).collect()
}

/// The user's case: an experiment with `--set` moves `latest`, then `gc`. The entries the
/// config resolves to stay, and the config's pipeline is still all cached.
#[test]
fn gc_keeps_the_entries_the_config_resolves_to() {
    let (dir, cfg) = setup();
    run(&cfg, &[], &[]);
    let configs_shift = entry_dir(dir.path(), "shift");
    run(&cfg, &["shift.offset=5"], &[]);
    run(&cfg, &["shift.offset=7"], &[]);
    let store = fashionbert::dag::Store::open(&dir.path().join("store")).unwrap();
    assert_eq!(store.entries().unwrap().len(), 7);
    let victims = gc(&store, &wanted(&cfg, &[]), false, true);
    assert_eq!(
        victims.len(),
        2,
        "only offset=5's shift and total: {victims:?}"
    );
    assert!(configs_shift.join("shifted.txt").is_file());
    assert!(plan(&cfg, &[]).iter().all(|p| p.state == State::Cached));
    // `latest` (offset=7) stays too.
    assert!(
        plan(&cfg, &["shift.offset=7"])
            .iter()
            .all(|p| p.state == State::Cached)
    );
    // The kept entries say why.
    let p = store
        .gc_plan(&wanted(&cfg, &[]), GcOptions::default())
        .unwrap();
    let why: Vec<String> = p.keep.iter().flat_map(|(_, w)| w.clone()).collect();
    assert!(
        why.iter().any(|w| w == "config") && why.iter().any(|w| w.contains("latest")),
        "{why:?}"
    );
}

/// A `.work` (or `.work/<stage>`) that is a symbolic link to a user's folder: gc lists it as
/// left alone and deletes nothing through it.
#[test]
fn gc_never_deletes_through_a_symbolic_link() {
    let (dir, cfg) = setup();
    run(&cfg, &[], &[]);
    let outside = dir.path().join("home");
    std::fs::create_dir_all(outside.join("alice/thesis")).unwrap();
    std::fs::write(outside.join("alice/thesis/chapter1.tex"), "precious").unwrap();
    let store_root = dir.path().join("store");
    let _ = std::fs::remove_dir_all(store_root.join(".work"));
    std::os::unix::fs::symlink(&outside, store_root.join(".work")).unwrap();
    let store = fashionbert::dag::Store::open(&store_root).unwrap();
    let p = store
        .gc_plan(&wanted(&cfg, &[]), GcOptions { work: true })
        .unwrap();
    assert_eq!(p.refused.len(), 1, "{:?}", p.refused);
    gc(&store, &wanted(&cfg, &[]), true, true);
    assert!(outside.join("alice/thesis/chapter1.tex").is_file());

    // A real `.work` whose stage folder is a link.
    std::fs::remove_file(store_root.join(".work")).unwrap();
    std::fs::create_dir(store_root.join(".work")).unwrap();
    std::os::unix::fs::symlink(&outside, store_root.join(".work/shift")).unwrap();
    gc(&store, &wanted(&cfg, &[]), true, true);
    assert!(outside.join("alice/thesis/chapter1.tex").is_file());

    // And a path planted by hand through a link is refused by the deleting call itself.
    let err =
        fashionbert::dag::store::remove_inside(&store_root, &store_root.join(".work/shift/alice"))
            .unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(outside.join("alice/thesis/chapter1.tex").is_file());
}

/// The work folder of an interrupted run (what `run --resume` continues from) survives `gc`;
/// `gc --work` deletes it; work folders of completed entries always go.
#[test]
fn gc_keeps_an_interrupted_runs_work_unless_asked() {
    let (dir, cfg) = setup();
    run(&cfg, &[], &[]);
    let store_root = dir.path().join("store");
    let store = fashionbert::dag::Store::open(&store_root).unwrap();
    // The config now asks for offset=3, which was interrupted: its work folder exists.
    let key3 = plan(&cfg, &["shift.offset=3"])
        .into_iter()
        .find(|p| p.stage == "shift")
        .unwrap()
        .key
        .unwrap();
    let work3 = store_root.join(".work/shift").join(&key3);
    std::fs::create_dir_all(&work3).unwrap();
    std::fs::write(work3.join("checkpoint"), "step 12").unwrap();
    // An older interrupted run nothing resolves to, and a leftover of a complete entry.
    let old = store_root
        .join(".work/shift/0000000000000000000000000000000000000000000000000000000000000000");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(old.join("checkpoint"), "old").unwrap();
    let filetime = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(old.join("checkpoint"))
        .unwrap()
        .set_modified(filetime)
        .unwrap();
    std::fs::File::open(&old)
        .unwrap()
        .set_modified(filetime)
        .unwrap();
    let done_key = store.latest("shift").unwrap();
    let done = store_root.join(".work/shift").join(&done_key);
    std::fs::create_dir_all(&done).unwrap();

    let w = wanted(&cfg, &["shift.offset=3"]);
    let victims = gc(&store, &w, false, true);
    assert!(
        work3.join("checkpoint").is_file(),
        "the resumable work was deleted"
    );
    assert!(victims.contains(&done) && !done.exists(), "{victims:?}");
    assert!(victims.contains(&old) && !old.exists(), "{victims:?}");
    assert_eq!(victims.len(), 2, "{victims:?}");
    // Without a config that resolves to it, the newest interrupted run still stays.
    let victims = gc(&store, &wanted(&cfg, &[]), false, true);
    assert!(work3.is_dir() && victims.is_empty(), "{victims:?}");
    // --work clears it.
    gc(&store, &w, true, true);
    assert!(!work3.exists());
}

/// Manifest output paths are data to check: `..`, absolute paths and links through a folder
/// make the entry damaged (never stat'ed or hashed outside it); a FIFO named manifest.json is
/// refused without blocking.
#[test]
fn manifests_cannot_point_outside_their_entry() {
    use fashionbert::dag::store::{Check, EntryState};
    let (dir, cfg) = setup();
    run(&cfg, &[], &[]);
    let store = fashionbert::dag::Store::open(&dir.path().join("store")).unwrap();
    let key = store.latest("source").unwrap();
    let entry = entry_dir(dir.path(), "source");
    let mpath = entry.join("manifest.json");
    let original = std::fs::read_to_string(&mpath).unwrap();
    for bad in ["../../../../outside/numbers.txt", "/etc/passwd"] {
        std::fs::write(
            &mpath,
            original.replace("\"numbers.txt\"", &format!("{bad:?}")),
        )
        .unwrap();
        match store.verify("source", &key, Check::Full) {
            EntryState::Damaged(p) => {
                assert!(p.join(" ").contains("not a plain relative name"), "{p:?}")
            }
            other => panic!("{bad}: {other:?}"),
        }
        assert!(
            plan(&cfg, &[])
                .iter()
                .any(|p| p.stage == "source" && p.state == State::WillRun)
        );
    }
    std::fs::write(&mpath, &original).unwrap();
    assert_eq!(store.verify("source", &key, Check::Full), EntryState::Valid);

    // An output reached through a linked folder.
    let sub = entry.join("sub");
    std::os::unix::fs::symlink(dir.path(), &sub).unwrap();
    std::fs::write(
        &mpath,
        original.replace("\"numbers.txt\"", "\"sub/numbers.txt\""),
    )
    .unwrap();
    match store.verify("source", &key, Check::Full) {
        EntryState::Damaged(p) => assert!(p.join(" ").contains("symbolic link"), "{p:?}"),
        other => panic!("{other:?}"),
    }
    std::fs::remove_file(&sub).unwrap();

    // A FIFO: verify and plan answer at once.
    std::fs::remove_file(&mpath).unwrap();
    let c = std::ffi::CString::new(mpath.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let (tx, rx) = std::sync::mpsc::channel();
    let cfg2 = cfg.clone();
    let root = dir.path().join("store");
    std::thread::spawn(move || {
        let store = fashionbert::dag::Store::open(&root).unwrap();
        let v = store.verify("source", &key, Check::Full);
        let p = plan(&cfg2, &[]);
        tx.send((v, p)).unwrap();
    });
    let (v, p) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("blocked on a FIFO");
    match v {
        EntryState::Damaged(p) => assert!(p.join(" ").contains("FIFO"), "{p:?}"),
        other => panic!("{other:?}"),
    }
    assert!(
        p.iter()
            .any(|p| p.stage == "source" && p.state == State::WillRun)
    );
}

/// Runs in a child process (re-executing this test binary) and is killed with SIGKILL mid-stage.
#[test]
fn kill_dash_nine_leaves_no_entry_and_the_rerun_matches() {
    if let Ok(cfg) = std::env::var("FB_TOY_CHILD_CONFIG") {
        // Child: run until killed.
        run(Path::new(&cfg), &[], &[]);
        return;
    }
    let (dir, cfg) = setup();
    let marker = dir.path().join("started");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kill_dash_nine_leaves_no_entry_and_the_rerun_matches",
            "--nocapture",
        ])
        .env("FB_TOY_CHILD_CONFIG", &cfg)
        .env("FB_TOY_SLEEP", &marker)
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !marker.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "child never reached the stage"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let store = fashionbert::dag::Store::open(&dir.path().join("store")).unwrap();
    let stages: Vec<String> = store
        .entries()
        .unwrap()
        .into_iter()
        .map(|e| e.stage)
        .collect();
    assert_eq!(stages, ["source"], "no entry for the killed stage");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("store/shift"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        leftovers.iter().any(|n| n.starts_with(".tmp-")),
        "{leftovers:?}"
    );

    // The next run redoes it, cleans the leftovers, and produces what an uninterrupted run does.
    assert_eq!(ran(&run(&cfg, &[], &[])), ["shift", "total"]);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("store/shift"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !leftovers.iter().any(|n| n.starts_with(".tmp-")),
        "{leftovers:?}"
    );
    let (clean, clean_cfg) = setup();
    run(&clean_cfg, &[], &[]);
    for (stage, file) in [("shift", "shifted.txt"), ("total", "total.txt")] {
        assert_eq!(
            latest_file(dir.path(), stage, file),
            latest_file(clean.path(), stage, file)
        );
    }
    let a = fashionbert::dag::Manifest::read(&dir.path().join("store/total/latest")).unwrap();
    let b = fashionbert::dag::Manifest::read(&clean.path().join("store/total/latest")).unwrap();
    assert_eq!(a.key, b.key);
    assert_eq!(a.outputs, b.outputs);
}

#[test]
fn a_failing_stage_leaves_no_entry_and_names_itself() {
    let (dir, cfg) = setup();
    std::fs::write(dir.path().join("numbers.txt"), "1\nnot a number\n").unwrap();
    let reg = registry();
    let c = config(&cfg, &[]);
    let runner = Runner::new(&reg, &c).unwrap();
    let err = runner.run(&[], &RunOptions::default()).unwrap_err();
    assert!(
        err.to_string().starts_with("stage `source` failed"),
        "{err}"
    );
    assert!(runner.store().entries().unwrap().is_empty());
}

// ---- the store verifies its entries (reliability issue, item 2) ------------------------------

fn entry_dir(dir: &Path, stage: &str) -> PathBuf {
    std::fs::canonicalize(dir.join("store").join(stage).join("latest")).unwrap()
}

fn why_of(cfg: &Path, stage: &str) -> Vec<Why> {
    plan(cfg, &[])
        .into_iter()
        .find(|p| p.stage == stage)
        .unwrap()
        .why
}

/// An output edited in place (same size), deleted, or a manifest of garbage: the entry is not
/// called cached, `status` says which file and why, and `run` rebuilds it with the right content.
#[test]
fn a_damaged_entry_is_not_cached_and_is_rebuilt() {
    let (dir, cfg) = setup();
    run(&cfg, &[], &[]);
    let shift = entry_dir(dir.path(), "shift");
    // Same size, other bytes.
    std::fs::write(shift.join("shifted.txt"), "9\n9\n9").unwrap();
    let why = why_of(&cfg, "shift");
    assert!(
        matches!(&why[..], [Why::Damaged { problems }] if problems[0].starts_with("shifted.txt: content changed")),
        "{why:?}"
    );
    assert_eq!(
        ran(&run(&cfg, &[], &[])),
        ["shift"],
        "only the damaged entry reruns"
    );
    assert_eq!(latest_file(dir.path(), "shift", "shifted.txt"), "1\n2\n3");

    // A deleted parquet output.
    let source = entry_dir(dir.path(), "source");
    std::fs::remove_file(source.join("numbers.parquet")).unwrap();
    let why = why_of(&cfg, "source");
    assert!(
        matches!(&why[..], [Why::Damaged { problems }] if problems == &["numbers.parquet: missing"]),
        "{why:?}"
    );
    assert_eq!(ran(&run(&cfg, &[], &[])), ["source"]);
    assert!(source.join("numbers.parquet").is_file());

    // A manifest full of garbage.
    let total = entry_dir(dir.path(), "total");
    std::fs::write(total.join("manifest.json"), "{ garbage").unwrap();
    let why = why_of(&cfg, "total");
    assert!(
        matches!(&why[..], [Why::Damaged { problems }] if problems[0].starts_with("manifest.json: does not parse")),
        "{why:?}"
    );
    assert_eq!(ran(&run(&cfg, &[], &[])), ["total"]);
    assert_eq!(latest_file(dir.path(), "total", "total.txt"), "6");
    assert!(ran(&run(&cfg, &[], &[])).is_empty());
}

/// `--no-rebuild` turns a damaged entry into an error naming the stage and the file.
#[test]
fn no_rebuild_names_the_damaged_file() {
    let (dir, cfg) = setup();
    run(&cfg, &[], &[]);
    std::fs::write(entry_dir(dir.path(), "source").join("numbers.txt"), "").unwrap();
    let reg = registry();
    let c = config(&cfg, &[]);
    let err = Runner::new(&reg, &c)
        .unwrap()
        .run(
            &[],
            &RunOptions {
                no_rebuild: true,
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, DagError::Damaged { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("stage `source`") && msg.contains("numbers.txt: 0 bytes, the manifest says 5"),
        "{msg}"
    );
}

/// `gc` keeps the newest entry of a stage whose `latest` link is gone, and deletes only the older.
#[test]
fn gc_keeps_the_newest_entry_when_latest_is_missing() {
    let (dir, cfg) = setup();
    run(&cfg, &[], &[]);
    std::thread::sleep(Duration::from_millis(20));
    run(&cfg, &["shift.offset=5"], &[]);
    let newest = entry_dir(dir.path(), "shift");
    std::fs::remove_file(dir.path().join("store/shift/latest")).unwrap();
    let store = fashionbert::dag::Store::open(&dir.path().join("store")).unwrap();
    let victims = gc(&store, &Wanted::new(), false, false);
    assert!(
        victims.iter().all(|p| p != &newest),
        "gc would delete the newest shift entry: {victims:?}"
    );
    assert_eq!(victims.len(), 2, "the old shift and old total: {victims:?}");
    gc(&store, &Wanted::new(), false, true);
    assert!(newest.join("shifted.txt").is_file());
}

/// A `latest` that is a real folder is an error that says what it is and what to do.
#[test]
fn a_latest_folder_is_a_clear_error() {
    let (dir, cfg) = setup();
    run(&cfg, &[], &[]);
    let link = dir.path().join("store/total/latest");
    std::fs::remove_file(&link).unwrap();
    std::fs::create_dir(&link).unwrap();
    let reg = registry();
    let c = config(&cfg, &[]);
    let err = Runner::new(&reg, &c)
        .unwrap()
        .run(&[], &RunOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is a directory, not the link") && err.contains("move it out of the store"),
        "{err}"
    );
}

// ---- a sharded toy stage ----------------------------------------------------------------

/// Squares each number of `source`; splits into shards by the number, each shard squaring
/// its own numbers; the merge puts them back in input order.
struct Square;
const SQUARE: StageSpec = StageSpec {
    name: "square",
    version: 1,
    about: "square, in shards",
    inputs: &[Input::all("source")],
    params: &[],
    outputs: &["squares.txt"],
};
fn squares(ctx: &RunContext, keep: impl Fn(&str) -> bool) -> Result<Vec<String>, StageError> {
    let text = std::fs::read_to_string(ctx.input("source", "numbers.txt")?)?;
    Ok(text
        .lines()
        .filter(|l| keep(l))
        .map(|l| {
            let n: i64 = l.parse().unwrap();
            format!("{l} {}", n * n)
        })
        .collect())
}
impl Stage for Square {
    fn spec(&self) -> &'static StageSpec {
        &SQUARE
    }
    fn run(&self, ctx: &mut RunContext) -> Result<(), StageError> {
        let out: Vec<String> = squares(ctx, |_| true)?
            .into_iter()
            .map(|l| l.split(' ').nth(1).unwrap().to_string())
            .collect();
        std::fs::write(ctx.out("squares.txt"), out.join("\n"))?;
        Ok(())
    }
    fn shardable(&self) -> bool {
        true
    }
    fn run_shard(
        &self,
        ctx: &mut RunContext,
        shard: fashionbert::dag::ShardId,
    ) -> Result<(), StageError> {
        let mine = squares(ctx, |l| shard.owns(l))?;
        std::fs::write(ctx.out("part.txt"), mine.join("\n"))?;
        ctx.count("numbers", mine.len() as u64);
        Ok(())
    }
    fn merge(&self, ctx: &mut RunContext, parts: &[PathBuf]) -> Result<(), StageError> {
        let mut by_n = std::collections::HashMap::new();
        for p in parts {
            for l in std::fs::read_to_string(p.join("part.txt"))?.lines() {
                let (n, sq) = l.split_once(' ').unwrap();
                by_n.insert(n.to_string(), sq.to_string());
            }
        }
        let text = std::fs::read_to_string(ctx.input("source", "numbers.txt")?)?;
        let out: Vec<String> = text
            .lines()
            .map(|l| by_n.remove(l).ok_or(format!("{l} in no part")))
            .collect::<Result<_, _>>()?;
        std::fs::write(ctx.out("squares.txt"), out.join("\n"))?;
        Ok(())
    }
}

const SHARDED_CONFIG: &str = r#"
[runtime]
artifacts = "store"

[stages.source]
[stages.source.params]
file = "numbers.txt"

[stages.square]
deps = ["source"]

[stages.shift]
deps = ["source"]
"#;

#[test]
fn a_sharded_stage_merges_its_parts_into_the_unsharded_output() {
    use fashionbert::dag::{ShardId, ShardOutcome};
    let reg = Registry::new(&[]).with(Source).with(Square).with(Shift);
    let setup = || {
        let dir = tempfile::tempdir().unwrap();
        let nums: Vec<String> = (1..=40).map(|i| (i * 7 % 41).to_string()).collect();
        std::fs::write(dir.path().join("numbers.txt"), nums.join("\n")).unwrap();
        std::fs::write(dir.path().join("pipeline.toml"), SHARDED_CONFIG).unwrap();
        let c = PipelineConfig::load(&dir.path().join("pipeline.toml"), &reg).unwrap();
        (dir, c)
    };
    let (plain_dir, plain) = setup();
    Runner::new(&reg, &plain)
        .unwrap()
        .run(&["square".into()], &RunOptions::default())
        .unwrap();
    let want =
        std::fs::read_to_string(plain_dir.path().join("store/square/latest/squares.txt")).unwrap();

    let (dir, c) = setup();
    let runner = Runner::new(&reg, &c).unwrap();
    let s = |i| ShardId::new(i, 3).unwrap();
    // Shards 0 and 2, concurrently, from two threads.
    std::thread::scope(|scope| {
        for i in [0, 2] {
            let runner = &runner;
            scope.spawn(move || {
                let o = runner
                    .run_shard("square", s(i), &RunOptions::default())
                    .unwrap();
                assert!(matches!(o, ShardOutcome::Done { .. }), "{o:?}");
            });
        }
    });
    assert_eq!(
        runner
            .run_shard("square", s(2), &RunOptions::default())
            .unwrap(),
        ShardOutcome::AlreadyDone
    );
    let item = runner
        .plan(&[], false, &mut HashCache::ephemeral())
        .unwrap()
        .into_iter()
        .find(|i| i.stage == "square")
        .unwrap();
    assert!(
        item.why.contains(&Why::Shards { done: 2, count: 3 }),
        "{:?}",
        item.why
    );
    assert!(
        !dir.path().join("store/square/latest").exists(),
        "no entry from parts alone"
    );

    // `merge` refuses while a shard is missing, naming it.
    let merge = RunOptions {
        merge_only: true,
        ..Default::default()
    };
    let err = runner.run(&["square".into()], &merge).unwrap_err();
    assert!(
        matches!(err, DagError::ShardsIncomplete { done: 2, count: 3, ref missing, .. } if missing == &[1]),
        "{err}"
    );
    assert!(err.to_string().contains("missing 1/3"), "{err}");
    // A plain run computes the missing shard and merges: what an unsharded run writes.
    let out = runner
        .run(&["square".into()], &RunOptions::default())
        .unwrap();
    assert!(out.iter().any(|o| o.stage == "square" && o.ran));
    let got = std::fs::read_to_string(dir.path().join("store/square/latest/squares.txt")).unwrap();
    assert_eq!(got, want);
    assert!(!dir.path().join("store/square/.shards").exists());
    assert_eq!(
        runner
            .run_shard("square", s(1), &RunOptions::default())
            .unwrap(),
        ShardOutcome::EntryCached
    );
    // Stages that do not split say so.
    let err = runner
        .run_shard("shift", s(0), &RunOptions::default())
        .unwrap_err();
    assert!(matches!(err, DagError::NotShardable { .. }), "{err}");
    assert!(err.to_string().contains("these do: square"), "{err}");
}
