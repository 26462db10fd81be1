//! An image folder that a CSV's image cells are confined to, after `..` and symbolic links.

use std::path::{Component, Path, PathBuf};

use super::decode::{ImageError, check_regular_file};

/// An image folder that CSV image cells are confined to.
#[derive(Debug, Clone)]
pub struct ImageRoot {
    /// As configured (relative to the working directory or absolute).
    given: PathBuf,
    /// `given`, absolute, with `.`/`..` folded lexically (for the quick pre-check).
    absolute: PathBuf,
    /// `given` with every symbolic link resolved.
    canonical: PathBuf,
    /// Paths (canonical) that images must not be read from: the artefact store.
    excluded: Vec<PathBuf>,
}

impl ImageRoot {
    /// Opens the folder; it must exist and be a directory.
    pub fn new(root: &Path) -> Result<ImageRoot, ImageError> {
        let canonical = std::fs::canonicalize(root).map_err(|e| ImageError::Source {
            what: format!("folder {}", root.display()),
            msg: e.to_string(),
        })?;
        if !canonical.is_dir() {
            return Err(ImageError::Source {
                what: format!("folder {}", root.display()),
                msg: "not a folder".into(),
            });
        }
        let absolute = std::path::absolute(root)
            .map(|p| fold(&p).unwrap_or(p))
            .unwrap_or_else(|_| canonical.clone());
        Ok(ImageRoot {
            given: root.to_path_buf(),
            absolute,
            canonical,
            excluded: Vec::new(),
        })
    }

    /// Rejects images inside `dir` (if it exists), for example the artefact store, which the
    /// cache key's directory hash skips.
    pub fn excluding(mut self, dir: &Path) -> Self {
        if let Ok(c) = std::fs::canonicalize(dir) {
            self.excluded.push(c);
        }
        self
    }

    /// The folder with symbolic links resolved.
    pub fn canonical(&self) -> &Path {
        &self.canonical
    }

    /// Resolves a CSV image cell to its path relative to the folder, after resolving `..` and
    /// symbolic links. A cell that leads outside the folder (`../x.jpg`, an absolute path
    /// elsewhere, a link pointing out), a missing file, a directory, FIFO or device, a file over
    /// [`MAX_IMAGE_BYTES`], or a hidden name is an error. Only metadata is consulted: no file
    /// is opened, and nothing outside the folder is opened at all.
    pub fn resolve(&self, cell: &str) -> Result<PathBuf, ImageError> {
        let outside = |how: String| ImageError::Outside {
            cell: cell.to_string(),
            how,
            root: self.given.clone(),
        };
        let p = Path::new(cell);
        // Lexical pre-check: an escape visible in the text is rejected without touching the
        // file system.
        let candidate = if p.is_absolute() {
            let folded =
                fold(p).ok_or_else(|| outside("climbs above the file system root".into()))?;
            if !folded.starts_with(&self.absolute) && !folded.starts_with(&self.canonical) {
                return Err(outside("is an absolute path elsewhere".into()));
            }
            folded
        } else {
            let mut depth = 0usize;
            for c in p.components() {
                match c {
                    Component::ParentDir if depth == 0 => {
                        return Err(outside("climbs out with `..`".into()));
                    }
                    Component::ParentDir => depth -= 1,
                    Component::Normal(_) => depth += 1,
                    Component::CurDir => {}
                    Component::RootDir | Component::Prefix(_) => {
                        return Err(outside("is an absolute path".into()));
                    }
                }
            }
            self.given.join(p)
        };
        // The authority: resolve every link (realpath reads link targets and directory
        // entries, it opens no file) and require the result inside the folder.
        let real = std::fs::canonicalize(&candidate).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ImageError::Missing(candidate.clone())
            } else {
                ImageError::Source {
                    what: candidate.display().to_string(),
                    msg: e.to_string(),
                }
            }
        })?;
        let Ok(rel) = real.strip_prefix(&self.canonical) else {
            return Err(outside(format!(
                "resolves (through a symbolic link or `..`) to {}",
                real.display()
            )));
        };
        if rel.as_os_str().is_empty() {
            return Err(ImageError::NotAFile {
                path: candidate,
                kind: "directory",
            });
        }
        for c in rel.components() {
            let name = c.as_os_str().to_string_lossy();
            if name.starts_with('.') {
                return Err(ImageError::Hidden {
                    cell: cell.to_string(),
                    name: name.into_owned(),
                });
            }
        }
        if let Some(store) = self.excluded.iter().find(|x| real.starts_with(x)) {
            return Err(ImageError::InStore {
                cell: cell.to_string(),
                store: store.clone(),
            });
        }
        let meta = std::fs::metadata(&real).map_err(|e| ImageError::Source {
            what: candidate.display().to_string(),
            msg: e.to_string(),
        })?;
        check_regular_file(&candidate, &meta)?;
        Ok(rel.to_path_buf())
    }
}

/// Folds `.` and `..` lexically; `None` if `..` climbs above the start.
fn fold(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !matches!(out.components().next_back(), Some(Component::Normal(_))) {
                    return None;
                }
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    Some(out)
}
