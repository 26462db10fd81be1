//! The artefact store: `<root>/<stage>/<key>/` entries, each complete or absent.
//!
//! A stage writes into `<root>/<stage>/.tmp-<key>-<pid>/`; the directory is renamed to
//! `<root>/<stage>/<key>/` only after every output and the manifest are written and synced, so an
//! interrupted run (even `kill -9`) leaves no entry. `<root>/<stage>/latest` is a symlink to the
//! newest entry, replaced atomically. `<root>/.work/<stage>/<key>/` holds what a long stage
//! keeps across interruptions (checkpoints).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::manifest::Manifest;

/// How thoroughly [`Store::verify`] checks an entry against its manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Every output's presence, type and size; the content hash of each file up to
    /// [`QUICK_HASH_BYTES`] and of any larger one modified after the manifest was written.
    /// Run before a stage is called cached.
    Quick,
    /// Every output's content hash (`fashionbert verify`).
    Full,
}

/// Outputs up to this size are hashed by every [`Check::Quick`] (blake3 reads ~1 GB/s, so
/// this costs at most ~0.1 s a file); larger ones (feature shards) are hashed when their
/// modification time says they changed.
pub const QUICK_HASH_BYTES: u64 = 128 << 20;

/// What the store holds for a key.
#[derive(Debug, Clone, PartialEq)]
pub enum EntryState {
    Absent,
    /// Complete and matching its manifest.
    Valid,
    /// Present but not usable: one line per problem (file and what is wrong).
    Damaged(Vec<String>),
}

pub struct Store {
    root: PathBuf,
}

/// One complete entry in the store.
#[derive(Debug, Clone)]
pub struct Entry {
    pub stage: String,
    pub key: String,
    pub dir: PathBuf,
}

impl Store {
    pub const LATEST: &'static str = "latest";

    pub fn open(root: &Path) -> io::Result<Store> {
        fs::create_dir_all(root)?;
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn stage_dir(&self, stage: &str) -> PathBuf {
        self.root.join(stage)
    }

    pub fn entry_dir(&self, stage: &str, key: &str) -> PathBuf {
        self.root.join(stage).join(key)
    }

    pub fn work_dir(&self, stage: &str, key: &str) -> PathBuf {
        self.root.join(".work").join(stage).join(key)
    }

    /// The persistent hash cache of this store; directory hashing skips the store itself.
    pub fn hash_cache(&self) -> super::hash::HashCache {
        super::hash::HashCache::load(&self.hash_cache_file()).excluding(self.root())
    }

    pub fn hash_cache_file(&self) -> PathBuf {
        self.root.join(".cache").join("file-hashes.json")
    }

    /// Whether a complete entry exists for this key.
    pub fn has(&self, stage: &str, key: &str) -> bool {
        self.entry_dir(stage, key).join(Manifest::FILE).is_file()
    }

    /// Checks the entry for `key` against its manifest (see [`Check`]). A manifest that does
    /// not parse, or that names another stage or key, makes the entry damaged.
    pub fn verify(&self, stage: &str, key: &str, check: Check) -> EntryState {
        let dir = self.entry_dir(stage, key);
        let mpath = dir.join(Manifest::FILE);
        let Ok(mmeta) = fs::metadata(&mpath) else {
            return EntryState::Absent;
        };
        let m = match Manifest::read(&dir) {
            Ok(m) => m,
            Err(e) => {
                // The error names the full path; say it relative to the entry.
                let text = e.to_string();
                let text = text
                    .strip_prefix(&format!("{}: ", mpath.display()))
                    .or_else(|| text.strip_prefix(&format!("{} ", mpath.display())))
                    .unwrap_or(&text);
                return EntryState::Damaged(vec![format!(
                    "{}: does not parse ({text})",
                    Manifest::FILE,
                )]);
            }
        };
        let mut problems = Vec::new();
        if m.stage != stage || m.key != key {
            problems.push(format!(
                "{}: describes {}/{}, not {stage}/{key}",
                Manifest::FILE,
                m.stage,
                m.key
            ));
        }
        problems.extend(check_outputs(
            &dir,
            &m.outputs,
            check,
            mmeta.modified().ok(),
        ));
        if problems.is_empty() {
            EntryState::Valid
        } else {
            EntryState::Damaged(problems)
        }
    }

    pub fn manifest(&self, stage: &str, key: &str) -> io::Result<Manifest> {
        Manifest::read(&self.entry_dir(stage, key))
    }

    /// The key `latest` points at, if any.
    pub fn latest(&self, stage: &str) -> Option<String> {
        let link = self.stage_dir(stage).join(Self::LATEST);
        let target = fs::read_link(link).ok()?;
        let key = target.file_name()?.to_string_lossy().into_owned();
        self.has(stage, &key).then_some(key)
    }

    pub fn set_latest(&self, stage: &str, key: &str) -> io::Result<()> {
        if self.latest(stage).as_deref() == Some(key) {
            return Ok(());
        }
        let dir = self.stage_dir(stage);
        let link = dir.join(Self::LATEST);
        if fs::symlink_metadata(&link).is_ok_and(|m| m.is_dir()) {
            return Err(io::Error::other(format!(
                "{} is a directory, not the link to the newest entry that the store keeps there; \
                 move it out of the store (it is not an entry) and run again",
                link.display()
            )));
        }
        let tmp = dir.join(format!(".latest-{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(key, &tmp)?;
        fs::rename(&tmp, link)
    }

    /// Starts an entry: a fresh temporary directory to write into.
    pub fn begin(&self, stage: &str, key: &str) -> io::Result<PathBuf> {
        let tmp = self
            .stage_dir(stage)
            .join(format!(".tmp-{key}-{}", std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        Ok(tmp)
    }

    /// Makes a finished temporary directory the entry for `key`, replacing an existing one
    /// (a forced re-run). Everything in it is synced first.
    pub fn commit(&self, stage: &str, key: &str, tmp: &Path) -> io::Result<PathBuf> {
        sync_tree(tmp)?;
        let dest = self.entry_dir(stage, key);
        if dest.exists() {
            let old = self
                .stage_dir(stage)
                .join(format!(".old-{key}-{}", std::process::id()));
            fs::rename(&dest, &old)?;
            fs::rename(tmp, &dest)?;
            fs::remove_dir_all(&old)?;
        } else {
            fs::rename(tmp, &dest)?;
        }
        if let Ok(d) = fs::File::open(self.stage_dir(stage)) {
            let _ = d.sync_all();
        }
        Ok(dest)
    }

    /// Removes leftovers of interrupted runs (`.tmp-*`, `.old-*`). Call only under the lock.
    pub fn remove_stale(&self) -> io::Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        for stage_dir in self.stage_dirs()? {
            for e in fs::read_dir(&stage_dir)? {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(".tmp-")
                    || name.starts_with(".old-")
                    || name.starts_with(".latest-")
                {
                    let p = e.path();
                    if p.is_dir() {
                        fs::remove_dir_all(&p)?;
                    } else {
                        fs::remove_file(&p)?;
                    }
                    removed.push(p);
                }
            }
        }
        Ok(removed)
    }

    fn stage_dirs(&self) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.root)? {
            let e = e?;
            let name = e.file_name();
            if e.file_type()?.is_dir() && !name.to_string_lossy().starts_with('.') {
                out.push(e.path());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every complete entry.
    pub fn entries(&self) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        for stage_dir in self.stage_dirs()? {
            let stage = stage_dir
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            for e in fs::read_dir(&stage_dir)? {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || name == Self::LATEST || !e.file_type()?.is_dir() {
                    continue;
                }
                if e.path().join(Manifest::FILE).is_file() {
                    out.push(Entry {
                        stage: stage.clone(),
                        key: name,
                        dir: e.path(),
                    });
                }
            }
        }
        out.sort_by(|a, b| (&a.stage, &a.key).cmp(&(&b.stage, &b.key)));
        Ok(out)
    }

    /// The entry each stage keeps through `gc` whatever the configs say: the one `latest`
    /// points at or, when that link is missing or broken, the newest by the time it finished.
    pub fn kept(&self, entries: &[Entry]) -> std::collections::BTreeMap<String, String> {
        let mut keep = std::collections::BTreeMap::new();
        for e in entries {
            if keep.contains_key(&e.stage) {
                continue;
            }
            let key = self.latest(&e.stage).or_else(|| {
                entries
                    .iter()
                    .filter(|o| o.stage == e.stage)
                    .max_by_key(|o| {
                        let finished = Manifest::read(&o.dir)
                            .map(|m| m.finished_at)
                            .unwrap_or_default();
                        let mtime = fs::metadata(o.dir.join(Manifest::FILE))
                            .and_then(|m| m.modified())
                            .ok();
                        (finished, mtime)
                    })
                    .map(|o| o.key.clone())
            });
            if let Some(k) = key {
                keep.insert(e.stage.clone(), k);
            }
        }
        keep
    }

    /// What `gc` would do with every entry and work directory of the store (see [`GcPlan`]).
    /// `wanted` holds, per stage, the keys some config resolves to and why (for example
    /// "the entry pipeline.toml resolves to"); each stage's `latest` is kept as well. Work
    /// directories that a `--resume` could still use are kept unless `opts.work`. Nothing
    /// reached through a symbolic link is ever walked or deleted.
    pub fn gc_plan(&self, wanted: &Wanted, opts: GcOptions) -> io::Result<GcPlan> {
        let mut plan = GcPlan::default();
        let entries = self.entries()?;
        let mut keep: Wanted = wanted.clone();
        for (stage, key) in self.kept(&entries) {
            let reasons = keep
                .entry(stage.clone())
                .or_default()
                .entry(key)
                .or_default();
            reasons.push(if self.latest(&stage).is_some() {
                "the stage's `latest`".to_string()
            } else {
                "the stage's newest entry (no `latest` link)".to_string()
            });
        }
        for e in &entries {
            let item = GcItem {
                path: e.dir.clone(),
                bytes: dir_size(&e.dir),
                what: format!("{}/{}", e.stage, e.key),
            };
            match keep.get(&e.stage).and_then(|k| k.get(&e.key)) {
                Some(reasons) => plan.keep.push((item, reasons.clone())),
                None => plan.delete.push((
                    item,
                    "no config resolves to it and it is not the stage's `latest`".to_string(),
                )),
            }
        }
        self.plan_work(&keep, opts, &mut plan)?;
        Ok(plan)
    }

    /// The work directories (`.work/<stage>/<key>[.part-…]`) into `plan`.
    fn plan_work(&self, keep: &Wanted, opts: GcOptions, plan: &mut GcPlan) -> io::Result<()> {
        let work = self.root.join(".work");
        match fs::symlink_metadata(&work) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
            Ok(m) if m.file_type().is_symlink() => {
                plan.refused.push((
                    work,
                    "a symbolic link: the store never follows links out of itself; remove the link by hand"
                        .to_string(),
                ));
                return Ok(());
            }
            Ok(m) if !m.is_dir() => {
                plan.refused.push((work, "not a directory".to_string()));
                return Ok(());
            }
            Ok(_) => {}
        }
        for stage in sorted_dir(&work)? {
            let stage_name = stage.file_name().to_string_lossy().into_owned();
            if !stage.file_type()?.is_dir() {
                plan.refused.push((
                    stage.path(),
                    "not a directory (a link or a file): left alone".to_string(),
                ));
                continue;
            }
            // (directory, key of the run it belongs to, mtime)
            let mut dirs = Vec::new();
            for k in sorted_dir(&stage.path())? {
                let name = k.file_name().to_string_lossy().into_owned();
                if !k.file_type()?.is_dir() {
                    plan.refused.push((
                        k.path(),
                        "not a directory (a link or a file): left alone".to_string(),
                    ));
                    continue;
                }
                let key = name.split(".part-").next().unwrap_or(&name).to_string();
                let mtime = newest_mtime(&k.path());
                dirs.push((k.path(), name, key, mtime));
            }
            let newest = dirs
                .iter()
                .filter(|(_, _, key, _)| !self.has(&stage_name, key))
                .max_by_key(|(_, name, _, t)| (*t, name.clone()))
                .map(|(p, ..)| p.clone());
            for (path, name, key, _) in dirs {
                let item = GcItem {
                    bytes: dir_size(&path),
                    what: format!(".work/{stage_name}/{name}"),
                    path: path.clone(),
                };
                if self.has(&stage_name, &key) {
                    plan.delete.push((
                        item,
                        "work of a run whose entry is complete: nothing resumes from it".into(),
                    ));
                } else if opts.work {
                    plan.delete
                        .push((item, "--work: interrupted run's work".into()));
                } else if keep.get(&stage_name).is_some_and(|k| k.contains_key(&key)) {
                    plan.keep.push((
                        item,
                        vec!["`run --resume` continues from it (a config resolves to its key); `gc --work` deletes it".into()],
                    ));
                } else if Some(&path) == newest.as_ref() {
                    plan.keep.push((
                        item,
                        vec!["the newest interrupted run of the stage (`run --resume` may continue from it); `gc --work` deletes it".into()],
                    ));
                } else {
                    plan.delete.push((
                        item,
                        "an older interrupted run that no config resolves to".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Deletes what `plan` says to delete, re-checking that no path on the way from the
    /// store's root is a symbolic link. Returns the items deleted.
    pub fn gc_apply(&self, plan: &GcPlan) -> io::Result<Vec<GcItem>> {
        let mut done = Vec::new();
        for (item, _) in &plan.delete {
            remove_inside(&self.root, &item.path)?;
            done.push(item.clone());
        }
        Ok(done)
    }
}

/// Per stage, the keys to keep and why.
pub type Wanted =
    std::collections::BTreeMap<String, std::collections::BTreeMap<String, Vec<String>>>;

/// What `gc` may delete besides stale entries.
#[derive(Debug, Clone, Copy, Default)]
pub struct GcOptions {
    /// Also delete the work directories of interrupted runs (`gc --work`).
    pub work: bool,
}

/// One entry or work directory `gc` considered.
#[derive(Debug, Clone)]
pub struct GcItem {
    pub path: PathBuf,
    pub bytes: u64,
    /// `stage/key` or `.work/stage/key`.
    pub what: String,
}

/// What `gc` keeps, deletes and leaves alone, each with its reason.
#[derive(Debug, Default)]
pub struct GcPlan {
    pub keep: Vec<(GcItem, Vec<String>)>,
    pub delete: Vec<(GcItem, String)>,
    /// Paths gc will not touch (symbolic links, files where a directory belongs).
    pub refused: Vec<(PathBuf, String)>,
}

fn sorted_dir(p: &Path) -> io::Result<Vec<fs::DirEntry>> {
    let mut v: Vec<fs::DirEntry> = fs::read_dir(p)?.collect::<Result<_, _>>()?;
    v.sort_by_key(|e| e.file_name());
    Ok(v)
}

/// The newest modification time of anything under `p` (not following links).
fn newest_mtime(p: &Path) -> Option<std::time::SystemTime> {
    let mut t = fs::symlink_metadata(p).and_then(|m| m.modified()).ok();
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            let sub = match e.file_type() {
                Ok(ft) if ft.is_dir() => newest_mtime(&e.path()),
                _ => e.metadata().and_then(|m| m.modified()).ok(),
            };
            t = t.max(sub);
        }
    }
    t
}

/// Removes the directory `path`, which must lie under `root`, after checking that no
/// component between them is a symbolic link (so a link planted in the store never makes
/// a deletion reach outside it).
pub fn remove_inside(root: &Path, path: &Path) -> io::Result<()> {
    let rel = path.strip_prefix(root).map_err(|_| {
        io::Error::other(format!(
            "{} is not inside the store {}: not deleted",
            path.display(),
            root.display()
        ))
    })?;
    let mut cur = root.to_path_buf();
    for c in rel.components() {
        let std::path::Component::Normal(c) = c else {
            return Err(io::Error::other(format!(
                "{}: not a plain path inside the store: not deleted",
                path.display()
            )));
        };
        cur.push(c);
        let m = fs::symlink_metadata(&cur)?;
        if m.file_type().is_symlink() {
            return Err(io::Error::other(format!(
                "{} is a symbolic link: the store never deletes through links; not deleted",
                cur.display()
            )));
        }
    }
    fs::remove_dir_all(path)
}

/// Checks the files `outputs` lists under `dir` (presence, type, size, and content hash as
/// [`Check`] says; `written` is when their list was written): one line per problem.
pub(crate) fn check_outputs(
    dir: &Path,
    outputs: &[super::manifest::OutputFile],
    check: Check,
    written: Option<std::time::SystemTime>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for o in outputs {
        if let Err(e) = super::manifest::check_output_path(&o.path) {
            problems.push(e);
            continue;
        }
        let p = dir.join(&o.path);
        if let Some(link) = linked_parent(dir, &o.path) {
            problems.push(format!(
                "{}: reached through the symbolic link {link}: not a file of the entry",
                o.path
            ));
            continue;
        }
        let meta = match fs::symlink_metadata(&p) {
            Ok(meta) => meta,
            Err(_) => {
                problems.push(format!("{}: missing", o.path));
                continue;
            }
        };
        if !meta.is_file() {
            problems.push(format!("{}: not a regular file", o.path));
            continue;
        }
        if meta.len() != o.bytes {
            problems.push(format!(
                "{}: {} bytes, the manifest says {}",
                o.path,
                meta.len(),
                o.bytes
            ));
            continue;
        }
        let touched = match (meta.modified().ok(), written) {
            (Some(f), Some(w)) => f > w,
            _ => true,
        };
        if check == Check::Full || o.bytes <= QUICK_HASH_BYTES || touched {
            match super::hash::hash_file(&p) {
                Ok(h) if h == o.blake3 => {}
                Ok(h) => problems.push(format!(
                    "{}: content changed (blake3 {}…, the manifest says {}…)",
                    o.path,
                    &h[..12.min(h.len())],
                    &o.blake3[..12.min(o.blake3.len())]
                )),
                Err(e) => problems.push(format!("{}: cannot be read ({e})", o.path)),
            }
        }
    }
    problems
}

/// The first folder on the way from `dir` to `rel`'s file that is not a real directory
/// (a symbolic link), if any.
fn linked_parent(dir: &Path, rel: &str) -> Option<String> {
    let parts: Vec<&str> = rel.split('/').collect();
    let mut cur = dir.to_path_buf();
    for (i, part) in parts[..parts.len().saturating_sub(1)].iter().enumerate() {
        cur.push(part);
        if fs::symlink_metadata(&cur).is_ok_and(|m| m.file_type().is_symlink()) {
            return Some(parts[..=i].join("/"));
        }
    }
    None
}

/// Total bytes of the files under `p`.
pub fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            match e.file_type() {
                Ok(ft) if ft.is_dir() => total += dir_size(&e.path()),
                Ok(ft) if ft.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

pub(crate) fn sync_tree(p: &Path) -> io::Result<()> {
    for e in fs::read_dir(p)? {
        let e = e?;
        let ft = e.file_type()?;
        if ft.is_dir() {
            sync_tree(&e.path())?;
        } else if ft.is_file() {
            fs::File::open(e.path())?.sync_all()?;
        }
    }
    fs::File::open(p)?.sync_all()
}

/// Lists files under `dir` relative to it, sorted.
pub fn list_files(dir: &Path) -> io::Result<Vec<String>> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) -> io::Result<()> {
        for e in fs::read_dir(dir)? {
            let e = e?;
            let p = e.path();
            if e.file_type()?.is_dir() {
                walk(base, &p, out)?;
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}
