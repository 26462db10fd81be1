//! Reading files of the store safely: only regular files, opened without following a final
//! symbolic link and without blocking (a leaf module: the store, manifests and the hash cache
//! all read through it).

use std::fs;
use std::io;
use std::path::Path;

/// Reads a file of the store only if it is a regular file: it is opened without following a
/// final symbolic link and without blocking (a FIFO or device named like a store file would
/// otherwise hang the open), then checked with `fstat` before anything is read.
pub fn read_regular(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} is a symbolic link, not a file of the store",
                        path.display()
                    ),
                )
            } else {
                e
            }
        })?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is not a regular file (a {}): refused without reading it",
                path.display(),
                file_kind(&meta)
            ),
        ));
    }
    let mut buf = Vec::with_capacity(meta.len().min(64 << 20) as usize);
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

fn file_kind(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let ft = meta.file_type();
    if ft.is_dir() {
        "directory"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() || ft.is_char_device() {
        "device"
    } else {
        "special file"
    }
}
