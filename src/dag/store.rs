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
                return EntryState::Damaged(vec![format!(
                    "{}: does not parse ({})",
                    Manifest::FILE,
                    e.to_string().rsplit(": ").next().unwrap_or_default()
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

    /// The entry each stage keeps through `gc`: the one `latest` points at or, when that link
    /// is missing or broken, the newest by the time it finished.
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

    /// Entries other than each stage's kept one (see [`Store::kept`]), and work directories.
    /// With `delete`, removes them. Returns (path, bytes) of each.
    pub fn gc(&self, delete: bool) -> io::Result<Vec<(PathBuf, u64)>> {
        let mut out = Vec::new();
        let entries = self.entries()?;
        let keep = self.kept(&entries);
        for e in &entries {
            if keep.get(&e.stage) != Some(&e.key) {
                out.push((e.dir.clone(), dir_size(&e.dir)));
            }
        }
        let work = self.root.join(".work");
        if work.is_dir() {
            for stage in fs::read_dir(&work)? {
                let stage = stage?;
                for k in fs::read_dir(stage.path())? {
                    let k = k?;
                    out.push((k.path(), dir_size(&k.path())));
                }
            }
        }
        if delete {
            for (p, _) in &out {
                fs::remove_dir_all(p)?;
            }
        }
        Ok(out)
    }
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
        let p = dir.join(&o.path);
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
