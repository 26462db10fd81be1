//! An exclusive lock on the artefact store, so two runs cannot write it at once.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::DagError;

/// Held for as long as it lives; the OS releases it if the process dies.
pub struct StoreLock {
    file: File,
    path: PathBuf,
}

impl StoreLock {
    /// Takes the lock on `<root>/.lock`. When another process holds it: waits if `wait`, after
    /// saying who holds it, or fails with `DagError::Locked`.
    pub fn acquire(root: &Path, wait: bool) -> Result<StoreLock, DagError> {
        std::fs::create_dir_all(root).map_err(|e| DagError::io(root, e))?;
        let path = root.join(".lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| DagError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim().to_string();
                if !wait {
                    return Err(DagError::Locked { path, holder });
                }
                crate::progress::println(format!(
                    "waiting for another run to finish: {} is held by {}",
                    path.display(),
                    if holder.is_empty() {
                        "another process"
                    } else {
                        &holder
                    }
                ));
                file.lock().map_err(|e| DagError::io(&path, e))?;
            }
            Err(TryLockError::Error(e)) => return Err(DagError::io(&path, e)),
        }
        let me = format!(
            "pid {} ({}) since {}",
            std::process::id(),
            std::env::args().collect::<Vec<_>>().join(" "),
            humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        );
        let _ = file.set_len(0);
        let _ = file.seek(SeekFrom::Start(0));
        let _ = file.write_all(me.as_bytes());
        let _ = file.flush();
        Ok(StoreLock { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}
