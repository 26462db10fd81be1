//! The parts of a sharded run: what `fashionbert run STAGE --shard I/N` leaves for the merge.
//!
//! Layout: `<root>/<stage>/.shards/<key>/part-IIIII-of-NNNNN/`, each holding the files the
//! stage's `run_shard` wrote and `part.json` (their sizes and blake3 hashes). A shard writes
//! into `.tmp-part-I-of-N-<host>-<pid>/` beside it and renames that into place when it is
//! complete, so a part is either whole or absent (a shard killed mid-way leaves only its
//! `.tmp-` directory, which nothing reads). A second shard with the same I/N (a retry, or a
//! duplicated array task) finds the part there and discards its own copy: parts are pure
//! functions of the key and the shard, so either copy would do. The merge reads only complete
//! parts, re-hashes them against `part.json`, and removes the whole `.shards/<key>/` once the
//! entry is committed.
//!
//! What this needs from a shared file system (NFS, Lustre): `rename(2)` of a directory within
//! one directory is atomic (NFSv3/v4, Lustre: yes); the store lock (`flock`) must work across
//! machines for the plain runs that run upstream stages and merge (NFSv4, or NFSv3 with lockd;
//! Lustre mounted with `-o flock`). Shards themselves take the lock only while they bring the
//! upstream stages up to date, not while they compute.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::manifest::OutputFile;
use super::stage::ShardId;
use super::store::{EntryState, Store};

/// `part.json`: what one shard wrote.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PartManifest {
    pub stage: String,
    pub key: String,
    pub index: usize,
    pub count: usize,
    pub outputs: Vec<OutputFile>,
    pub seconds: f64,
    pub host: String,
    pub pid: u32,
    pub finished_at: String,
    #[serde(default)]
    pub counts: BTreeMap<String, u64>,
}

impl PartManifest {
    pub const FILE: &'static str = "part.json";

    pub fn read(dir: &Path) -> io::Result<PartManifest> {
        let bytes = super::fsafe::read_regular(&dir.join(Self::FILE))?;
        serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// The parts present for one key, by shard count (a key may have parts of more than one
/// split, e.g. a run with 4 shards abandoned for one with 16).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parts {
    pub done: BTreeMap<usize, BTreeSet<usize>>,
}

impl Parts {
    /// The split with the most parts done (ties: the larger count): what a run completes.
    pub fn best(&self) -> Option<(usize, &BTreeSet<usize>)> {
        self.done
            .iter()
            .max_by_key(|(count, done)| (done.len(), **count))
            .map(|(c, d)| (*c, d))
    }

    /// The shards of `count` not done yet.
    pub fn missing(&self, count: usize) -> Vec<usize> {
        let done = self.done.get(&count);
        (0..count)
            .filter(|i| done.is_none_or(|d| !d.contains(i)))
            .collect()
    }
}

/// This machine's name, for telling whose leftovers are whose on a shared store.
pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        })
        .unwrap_or_else(|| "localhost".into())
}

fn part_name(shard: ShardId) -> String {
    format!("part-{:05}-of-{:05}", shard.index, shard.count)
}

fn parse_part_name(name: &str) -> Option<ShardId> {
    let rest = name.strip_prefix("part-")?;
    let (i, n) = rest.split_once("-of-")?;
    ShardId::new(i.parse().ok()?, n.parse().ok()?).ok()
}

impl Store {
    /// `<root>/<stage>/.shards/<key>`.
    pub fn parts_dir(&self, stage: &str, key: &str) -> PathBuf {
        self.stage_dir(stage).join(".shards").join(key)
    }

    pub fn part_dir(&self, stage: &str, key: &str, shard: ShardId) -> PathBuf {
        self.parts_dir(stage, key).join(part_name(shard))
    }

    /// A fresh directory for shard `shard` to write its part into.
    pub fn begin_part(&self, stage: &str, key: &str, shard: ShardId) -> io::Result<PathBuf> {
        let tmp = self.parts_dir(stage, key).join(format!(
            ".tmp-{}-{}-{}",
            part_name(shard),
            hostname(),
            std::process::id()
        ));
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        Ok(tmp)
    }

    /// Writes `part.json` into `tmp` and renames it into place. Returns false when the part
    /// was there already (another process with the same shard finished first); `tmp` is then
    /// removed and the existing part kept.
    pub fn commit_part(&self, tmp: &Path, manifest: &PartManifest) -> io::Result<bool> {
        let shard = ShardId::new(manifest.index, manifest.count).map_err(io::Error::other)?;
        fs::write(
            tmp.join(PartManifest::FILE),
            serde_json::to_vec_pretty(manifest).expect("part manifest serialises"),
        )?;
        super::store::sync_tree(tmp)?;
        let dest = self.part_dir(&manifest.stage, &manifest.key, shard);
        if dest.join(PartManifest::FILE).is_file() {
            fs::remove_dir_all(tmp)?;
            return Ok(false);
        }
        match fs::rename(tmp, &dest) {
            Ok(()) => {}
            // A part that appeared meanwhile (rename onto a non-empty directory fails).
            Err(_) if dest.join(PartManifest::FILE).is_file() => {
                fs::remove_dir_all(tmp)?;
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        if let Ok(d) = fs::File::open(self.parts_dir(&manifest.stage, &manifest.key)) {
            let _ = d.sync_all();
        }
        Ok(true)
    }

    /// The complete parts present for `key`.
    pub fn parts(&self, stage: &str, key: &str) -> io::Result<Parts> {
        let mut parts = Parts::default();
        let dir = self.parts_dir(stage, key);
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(parts),
            Err(e) => return Err(e),
        };
        for e in rd {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(s) = parse_part_name(&name)
                && e.path().join(PartManifest::FILE).is_file()
            {
                parts.done.entry(s.count).or_default().insert(s.index);
            }
        }
        Ok(parts)
    }

    /// Checks a part against its `part.json`, hashing every file.
    pub fn verify_part(&self, stage: &str, key: &str, shard: ShardId) -> EntryState {
        let dir = self.part_dir(stage, key, shard);
        let m = match PartManifest::read(&dir) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return EntryState::Absent,
            Err(e) => {
                return EntryState::Damaged(vec![format!("{}: {e}", PartManifest::FILE)]);
            }
        };
        let mut problems = Vec::new();
        if m.stage != stage || m.key != key || m.index != shard.index || m.count != shard.count {
            problems.push(format!(
                "{}: describes {}/{} shard {}/{}",
                PartManifest::FILE,
                m.stage,
                m.key,
                m.index,
                m.count
            ));
        }
        problems.extend(super::store::check_outputs(
            &dir,
            &m.outputs,
            super::store::Check::Full,
            None,
        ));
        if problems.is_empty() {
            EntryState::Valid
        } else {
            EntryState::Damaged(problems)
        }
    }

    /// Removes every part of `key` (after the merge committed the entry).
    pub fn remove_parts(&self, stage: &str, key: &str) -> io::Result<()> {
        let dir = self.parts_dir(stage, key);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => {
                let _ = fs::remove_dir(self.stage_dir(stage).join(".shards"));
                Ok(())
            }
        }
    }

    /// Removes this machine's `.tmp-part-*` directories whose process is gone (killed shards).
    /// Another machine's are left alone: its process ids mean nothing here.
    pub fn remove_stale_parts(&self, stage: &str) -> io::Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        let root = self.stage_dir(stage).join(".shards");
        let Ok(keys) = fs::read_dir(&root) else {
            return Ok(removed);
        };
        let host = hostname();
        for k in keys {
            let k = k?;
            let Ok(rd) = fs::read_dir(k.path()) else {
                continue;
            };
            for e in rd {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(rest) = name.strip_prefix(".tmp-part-") else {
                    continue;
                };
                // `IIIII-of-NNNNN-<host>-<pid>` (indices are 5 digits: counts are ≤ 65,536).
                let Some((h, pid)) = rest.get(15..).and_then(|r| r.rsplit_once('-')) else {
                    continue;
                };
                if let Ok(pid) = pid.parse::<u32>()
                    && h == host
                    && !Path::new(&format!("/proc/{pid}")).exists()
                {
                    fs::remove_dir_all(e.path())?;
                    removed.push(e.path());
                }
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(index: usize, count: usize) -> PartManifest {
        PartManifest {
            stage: "s".into(),
            key: "k".into(),
            index,
            count,
            outputs: vec![],
            seconds: 0.0,
            host: hostname(),
            pid: std::process::id(),
            finished_at: String::new(),
            counts: BTreeMap::new(),
        }
    }

    #[test]
    fn parts_commit_once_and_are_listed_by_split() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let s = |i, n| ShardId::new(i, n).unwrap();
        let tmp = store.begin_part("s", "k", s(1, 4)).unwrap();
        fs::write(tmp.join("x"), "1").unwrap();
        // Not listed before its commit.
        assert_eq!(store.parts("s", "k").unwrap(), Parts::default());
        assert!(store.commit_part(&tmp, &manifest(1, 4)).unwrap());
        // A duplicate of the same shard is discarded, the first kept.
        let tmp2 = store.begin_part("s", "k", s(1, 4)).unwrap();
        fs::write(tmp2.join("x"), "2").unwrap();
        assert!(!store.commit_part(&tmp2, &manifest(1, 4)).unwrap());
        assert!(!tmp2.exists());
        let part = store.part_dir("s", "k", s(1, 4));
        assert_eq!(fs::read_to_string(part.join("x")).unwrap(), "1");
        let tmp3 = store.begin_part("s", "k", s(0, 2)).unwrap();
        store.commit_part(&tmp3, &manifest(0, 2)).unwrap();
        let tmp4 = store.begin_part("s", "k", s(3, 4)).unwrap();
        store.commit_part(&tmp4, &manifest(3, 4)).unwrap();
        let parts = store.parts("s", "k").unwrap();
        assert_eq!(parts.best(), Some((4, &BTreeSet::from([1, 3]))));
        assert_eq!(parts.missing(4), vec![0, 2]);
        assert_eq!(parts.missing(2), vec![1]);
        assert_eq!(store.verify_part("s", "k", s(1, 4)), EntryState::Valid);
        store.remove_parts("s", "k").unwrap();
        assert_eq!(store.parts("s", "k").unwrap(), Parts::default());
    }

    #[test]
    fn leftovers_of_dead_shards_on_this_host_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let dir = store.parts_dir("s", "k");
        fs::create_dir_all(&dir).unwrap();
        let host = hostname();
        let dead = dir.join(format!(".tmp-part-00000-of-00002-{host}-4000000"));
        let alive = dir.join(format!(
            ".tmp-part-00001-of-00002-{host}-{}",
            std::process::id()
        ));
        let elsewhere = dir.join(".tmp-part-00001-of-00002-otherhost-4000000");
        for p in [&dead, &alive, &elsewhere] {
            fs::create_dir_all(p).unwrap();
        }
        let removed = store.remove_stale_parts("s").unwrap();
        assert_eq!(removed, vec![dead.clone()]);
        assert!(alive.exists() && elsewhere.exists() && !dead.exists());
    }
}
