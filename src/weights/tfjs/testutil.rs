//! Test fixtures shared by the unit tests of this module's files: tiny TF.js archives.

use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Writes a gzipped tarball with the given (path, bytes) entries.
pub(super) fn write_tgz(path: &Path, entries: &[(&str, Vec<u8>)]) {
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

pub(super) fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(super) fn model_json(paths: &[&str], weights: &[(&str, Vec<usize>)]) -> Vec<u8> {
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

pub(super) const PKG: &str = r#"{"name":"fake_resnet","version":"0.0.1"}"#;
