//! Keras tensors → torchvision tensors, checked against a spec of names and shapes, and the
//! safetensors writer.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use super::TfjsError;
use super::archive::TfjsTensor;
use super::names::{Transform, hwio_to_oihw, keras_to_torchvision, transpose_2d};

/// Keras conv biases larger than this (in absolute value) are not silently dropped.
pub const MAX_DROPPED_CONV_BIAS: f32 = 1e-6;

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
    crate::weights::canonicalize_safetensors(path).map_err(|source| TfjsError::Canonicalize {
        path: path.to_path_buf(),
        source: Box::new(source),
    })
}
