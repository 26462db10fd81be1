//! The one streaming file hasher of the weights code: sha256 checks of downloads and npm's
//! subresource-integrity strings ([`super::fetch`], [`super::tfjs`]).

use std::io::{self, Read};
use std::path::Path;

use sha2::Digest;

/// `D`'s digest of the file at `path`, read in 1 MiB chunks; callers add the path to the error.
pub(crate) fn hash_file<D: Digest>(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = D::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Sha256;

    #[test]
    fn hashes_a_file_and_reports_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc.txt");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            hex::encode(hash_file::<Sha256>(&p).unwrap()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let err = hash_file::<Sha256>(&dir.path().join("missing")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
