//! Content hashing: blake3 of files and directories, with a cache keyed by path, size and
//! modification time so that a large raw input is hashed once, not on every run.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Entry {
    size: u64,
    mtime_ns: u128,
    hash: String,
}

/// A persistent cache of file hashes. A file whose path, size and mtime are unchanged is not
/// read again.
#[derive(Debug, Default)]
pub struct HashCache {
    path: Option<PathBuf>,
    entries: BTreeMap<String, Entry>,
    dirty: bool,
    /// Files actually read (not answered from the cache) since load: for tests and logs.
    pub hashed_files: u64,
    /// Directories (canonical paths) that directory hashing never descends into: the
    /// artefact store, when an input directory contains it.
    exclude: Vec<PathBuf>,
}

impl HashCache {
    /// An in-memory cache that is never saved.
    pub fn ephemeral() -> Self {
        Self::default()
    }

    /// Loads the cache at `path`; a missing or unreadable cache starts empty.
    pub fn load(path: &Path) -> Self {
        let entries = super::fsafe::read_regular(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            path: Some(path.to_path_buf()),
            entries,
            dirty: false,
            hashed_files: 0,
            exclude: Vec::new(),
        }
    }

    /// Makes directory hashing skip `dir` (for example the artefact store, which an input
    /// directory such as `.` contains and which changes on every run).
    pub fn excluding(mut self, dir: &Path) -> Self {
        self.exclude
            .push(fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()));
        self
    }

    /// Writes the cache back if anything changed (atomically: temp file, then rename).
    pub fn save(&mut self) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        fs::write(&tmp, serde_json::to_vec(&self.entries)?)?;
        fs::rename(&tmp, path)?;
        self.dirty = false;
        Ok(())
    }

    /// The blake3 hex digest of a file's content.
    pub fn file(&mut self, path: &Path) -> io::Result<String> {
        let meta = fs::metadata(path)?;
        let mtime_ns = meta
            .modified()?
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let abs = fs::canonicalize(path)?;
        let key = abs.to_string_lossy().into_owned();
        if let Some(e) = self.entries.get(&key) {
            if e.size == meta.len() && e.mtime_ns == mtime_ns {
                return Ok(e.hash.clone());
            }
        }
        let hash = hash_file(path)?;
        self.hashed_files += 1;
        self.entries.insert(
            key,
            Entry {
                size: meta.len(),
                mtime_ns,
                hash: hash.clone(),
            },
        );
        self.dirty = true;
        Ok(hash)
    }

    /// A digest of a directory tree: the sorted relative paths of its files with their hashes.
    /// Hidden entries (`.git`, `.cache`), excluded directories, special files and symbolic
    /// links that resolve outside `dir` are skipped (never opened).
    pub fn dir(&mut self, dir: &Path) -> io::Result<String> {
        let mut files = Vec::new();
        let root = fs::canonicalize(dir)?;
        walk(dir, &root, &self.exclude, &mut files)?;
        files.sort();
        let mut h = blake3::Hasher::new();
        for f in &files {
            let rel = f.strip_prefix(dir).unwrap_or(f);
            h.update(rel.to_string_lossy().as_bytes());
            h.update(b"\0");
            h.update(self.file(f)?.as_bytes());
            h.update(b"\n");
        }
        Ok(h.finalize().to_hex().to_string())
    }
}

fn walk(dir: &Path, root: &Path, exclude: &[PathBuf], out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let ft = entry.file_type()?;
        let p = entry.path();
        if ft.is_dir() {
            let excluded =
                !exclude.is_empty() && fs::canonicalize(&p).is_ok_and(|c| exclude.contains(&c));
            if !excluded {
                walk(&p, root, exclude, out)?;
            }
        } else if ft.is_file()
            || (ft.is_symlink()
                && fs::canonicalize(&p).is_ok_and(|c| c.starts_with(root) && c.is_file()))
        {
            out.push(p);
        }
    }
    Ok(())
}

/// blake3 of a file's bytes (memory-mapped and multi-threaded for large files).
pub fn hash_file(path: &Path) -> io::Result<String> {
    let mut h = blake3::Hasher::new();
    let len = fs::metadata(path)?.len();
    if len > 16 << 20 {
        h.update_mmap_rayon(path)?;
    } else {
        h.update(&fs::read(path)?);
    }
    Ok(h.finalize().to_hex().to_string())
}

/// A short stable digest of arbitrary bytes (cache keys).
pub fn digest(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_answers_unchanged_files_without_reading() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.txt");
        fs::write(&f, b"hello").unwrap();
        let cache_path = dir.path().join("cache.json");
        let mut c = HashCache::load(&cache_path);
        let h1 = c.file(&f).unwrap();
        assert_eq!(c.hashed_files, 1);
        c.save().unwrap();
        let mut c = HashCache::load(&cache_path);
        assert_eq!(c.file(&f).unwrap(), h1);
        assert_eq!(c.hashed_files, 0, "unchanged file must come from the cache");
        // Change content and size: re-hashed.
        fs::write(&f, b"hello world").unwrap();
        let h2 = c.file(&f).unwrap();
        assert_ne!(h1, h2);
        assert_eq!(c.hashed_files, 1);
    }

    #[test]
    fn dir_hash_covers_names_and_contents() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("sub/x"), b"1").unwrap();
        fs::write(dir.path().join("y"), b"2").unwrap();
        let mut c = HashCache::ephemeral();
        let a = c.dir(dir.path()).unwrap();
        fs::rename(dir.path().join("y"), dir.path().join("z")).unwrap();
        let b = c.dir(dir.path()).unwrap();
        assert_ne!(a, b, "a rename changes the directory hash");
    }

    #[test]
    fn dir_hash_skips_the_store_and_hidden_entries() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("img.jpg"), b"1").unwrap();
        fs::create_dir(dir.path().join("artifacts")).unwrap();
        let mut c = HashCache::ephemeral().excluding(&dir.path().join("artifacts"));
        let a = c.dir(dir.path()).unwrap();
        fs::write(dir.path().join("artifacts/new-entry"), b"x").unwrap();
        fs::create_dir(dir.path().join(".git")).unwrap();
        fs::write(dir.path().join(".git/HEAD"), b"x").unwrap();
        assert_eq!(
            c.dir(dir.path()).unwrap(),
            a,
            "store and hidden files are not inputs"
        );
        fs::write(dir.path().join("img.jpg"), b"2").unwrap();
        assert_ne!(c.dir(dir.path()).unwrap(), a);
    }
}
