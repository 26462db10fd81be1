//! Reading and writing FashionBERT weights as Hugging Face-style safetensors.
//!
//! A trained model is a folder with `model.safetensors` (tensor names as in
//! [`super::fashionbert`]'s docs, PyTorch layouts), `config.json` (a Hugging Face
//! `BertConfig`: `transformers.BertModel.from_pretrained(folder)` loads the text encoder) and
//! `fashionbert.json` (the image side and heads: the rest of the [`FashionBertConfig`]).
//! Folders written before that split hold the whole config nested in `config.json`; both are
//! read. Initialisation reads any Hugging Face BERT `model.safetensors`, with or without the
//! `bert.` prefix.

use std::path::Path;

use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use burn::tensor::Device;

use super::bert::{BertConfig, hf_remaps};
use super::fashionbert::{FashionBert, FashionBertConfig};
use crate::error::{Error, IoContext, Result};

pub const WEIGHTS: &str = "model.safetensors";
pub const CONFIG: &str = "config.json";
/// FashionBERT's parts beyond the BERT config, beside `config.json`.
pub const PARTS: &str = "fashionbert.json";

/// The Hugging Face `config.json` of a BERT config.
pub fn hf_config_json(bert: &BertConfig) -> serde_json::Value {
    let mut v = serde_json::to_value(bert).expect("a config serialises");
    v["model_type"] = "bert".into();
    v["architectures"] = serde_json::json!(["BertForPreTraining"]);
    v["pad_token_id"] = 0.into();
    v
}

/// `fashionbert.json`: every field of the config but the BERT part.
fn parts_json(config: &FashionBertConfig) -> serde_json::Value {
    let mut v = serde_json::to_value(config).expect("a config serialises");
    v.as_object_mut().expect("an object").remove("bert");
    v
}

/// Applies a Hugging Face-named safetensors file to `module`: PyTorch layouts converted,
/// `extra` renames first, then the two names Rust cannot spell ([`hf_remaps`]). Missing and
/// unexpected tensors are reported, not errors: the callers decide what they allow.
fn apply_hf<M: ModuleSnapshot>(
    module: &mut M,
    path: &Path,
    extra: &[(&str, &str)],
) -> Result<burn::store::ApplyResult> {
    let mut store = SafetensorsStore::from_file(path).with_from_adapter(PyTorchToBurnAdapter);
    for (from, to) in extra.iter().copied().chain(hf_remaps()) {
        store = store.with_key_remapping(from, to);
    }
    let mut store = store.allow_partial(true);
    module.load_from(&mut store).map_err(|source| {
        // burn reports shape mismatches as the Debug text of every one (kilobytes for a
        // model of another size): a count and a few, readably.
        match shape_mismatches(&source.to_string()) {
            Some(summary) => Error::Model(format!("{}: wrong shapes: {summary}", path.display())),
            None => Error::Weights {
                path: path.to_path_buf(),
                source: Box::new(source),
            },
        }
    })
}

/// What an initialisation from a BERT checkpoint loaded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InitReport {
    pub loaded: usize,
    /// Model tensors the checkpoint did not have (initialised randomly): the image embeddings
    /// and heads, for an encoder-only checkpoint.
    pub random: Vec<String>,
    /// Checkpoint tensors not used (layers beyond `num_hidden_layers`, NSP head, buffers).
    pub unused: Vec<String>,
}

/// Loads a Hugging Face BERT checkpoint into `model`. The backbone (`bert.embeddings`,
/// `bert.encoder`, `bert.pooler`) must be complete; heads and image embeddings may be absent.
/// A Google NSP head (`cls.seq_relationship`, label 0 = IsNext) is not loaded: its labels mean
/// the opposite of the alignment head's.
pub fn init_from_bert(model: &mut FashionBert, file: &Path) -> Result<InitReport> {
    if !file.is_file() {
        return Err(Error::Model(format!(
            "{}: BERT weights not found; run `make weights` (or `fashionbert weights minilm`)",
            file.display()
        )));
    }
    let res = apply_hf(
        model,
        file,
        &[
            (r"^(embeddings|encoder|pooler)\.", "bert.$1."),
            (r"^cls\.seq_relationship\.", "unused.nsp."),
        ],
    )?;
    let backbone_missing: Vec<&str> = res
        .missing
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| {
            !p.starts_with("cls.")
                && !p.starts_with("bert.image_embeddings.")
                && !p.starts_with("itc.")
                && !p.starts_with("itm.")
        })
        .collect();
    if !backbone_missing.is_empty() || !res.errors.is_empty() {
        let errs: Vec<String> = res.errors.iter().map(|e| e.to_string()).collect();
        return Err(Error::Model(format!(
            "{}: not a BERT checkpoint matching the configured size: missing {} {}",
            file.display(),
            backbone_missing.join(", "),
            errs.join("; ")
        )));
    }
    Ok(InitReport {
        loaded: res.applied.len(),
        random: res.missing.iter().map(|(p, _)| p.clone()).collect(),
        unused: res.unused.clone(),
    })
}

/// Writes `model.safetensors` and `config.json` into `dir`.
pub fn save(model: &FashionBert, config: &FashionBertConfig, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).at(dir)?;
    let path = dir.join(WEIGHTS);
    let mut store = SafetensorsStore::from_file(&path)
        .with_to_adapter(BurnToPyTorchAdapter)
        .with_key_remapping(r"\.self_\.", ".self.")
        .with_key_remapping(r"\.layer_norm\.", ".LayerNorm.")
        .metadata("format", "pt")
        .metadata("model", "fashionbert")
        .overwrite(true);
    model
        .save_into(&mut store)
        .map_err(|source| Error::Weights {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
    crate::weights::canonicalize_safetensors(&path)?;
    let cp = dir.join(CONFIG);
    std::fs::write(
        &cp,
        serde_json::to_string_pretty(&hf_config_json(&config.bert)).unwrap(),
    )
    .at(&cp)?;
    let pp = dir.join(PARTS);
    std::fs::write(
        &pp,
        serde_json::to_string_pretty(&parts_json(config)).unwrap(),
    )
    .at(&pp)?;
    Ok(())
}

/// The config of a model folder: `config.json` (Hugging Face) + `fashionbert.json`, or an
/// older folder's nested `config.json`.
pub fn read_config(dir: &Path) -> Result<FashionBertConfig> {
    let cp = dir.join(CONFIG);
    let pp = dir.join(PARTS);
    let c: FashionBertConfig = if pp.is_file() {
        let bert = read_bert_config(&cp)?;
        let text = std::fs::read_to_string(&pp).at(&pp)?;
        let mut v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::input(&pp, format!("not JSON: {e}")))?;
        let o = v
            .as_object_mut()
            .ok_or_else(|| Error::input(&pp, "not a JSON object"))?;
        o.insert(
            "bert".into(),
            serde_json::to_value(&bert).expect("a config serialises"),
        );
        serde_json::from_value(v)
            .map_err(|e| Error::input(&pp, format!("not FashionBERT's parts: {e}")))?
    } else {
        let text = std::fs::read_to_string(&cp).at(&cp)?;
        serde_json::from_str(&text).map_err(|e| {
            Error::input(
                &cp,
                format!("not a FashionBERT config (and no {PARTS} beside it): {e}"),
            )
        })?
    };
    c.check(4).map_err(|source| Error::BertConfig {
        path: cp.clone(),
        source,
    })?;
    Ok(c)
}

/// `n tensors, e.g. X is [12], the model needs [8]; …` from burn's
/// `ShapeMismatch { path: "X", expected: Shape { dims: [8] }, found: Shape { dims: [12] } }` list.
fn shape_mismatches(text: &str) -> Option<String> {
    let parts: Vec<&str> = text.split("ShapeMismatch {").skip(1).collect();
    if parts.is_empty() {
        return None;
    }
    let field = |part: &str, key: &str| -> Option<String> {
        let rest = &part[part.find(key)? + key.len()..];
        Some(rest[..rest.find(']')? + 1].to_string())
    };
    let each: Vec<String> = parts
        .iter()
        .filter_map(|p| {
            let name = p.split('"').nth(1)?;
            let want = field(p, "expected: Shape { dims: ")?;
            let have = field(p, "found: Shape { dims: ")?;
            Some(format!("{name} is {have}, the model needs {want}"))
        })
        .collect();
    Some(format!(
        "{} tensors, e.g. {}",
        parts.len(),
        crate::weights::first_few(each, 4, "; ")
    ))
}

/// Loads a model saved by [`save`]. Every tensor must be present with the configured shape.
pub fn load(dir: &Path, device: &Device) -> Result<(FashionBert, FashionBertConfig)> {
    let config = read_config(dir)?;
    let mut model = config.init(device);
    let path = dir.join(WEIGHTS);
    if !path.is_file() {
        return Err(Error::Model(format!(
            "{}: not a file (a model folder holds its weights as the file {WEIGHTS})",
            path.display()
        )));
    }
    // A file that cannot be read is its own error; only tensors that do not fit the config
    // ask whether the config matches.
    let mismatch = |e: Error| Error::WeightsMismatch {
        config: dir.join(CONFIG),
        source: Box::new(e),
    };
    let res = apply_hf(&mut model, &path, &[]).map_err(|e| match e {
        Error::Model(_) => mismatch(e),
        other => other,
    })?;
    crate::weights::check_apply(&path, &res, &|_| false).map_err(mismatch)?;
    Ok((model, config))
}

/// Loads FashionBERT weights (names as [`save`] writes them) into `model`; every tensor must
/// be present with the right shape, and no other tensor may be in the file.
pub fn load_weights(model: &mut FashionBert, path: &Path) -> Result<()> {
    let res = apply_hf(model, path, &[])?;
    crate::weights::check_apply(path, &res, &|_| false)
}

/// A plain text BERT from a Hugging Face `model.safetensors` (for checking the encoder).
pub fn load_bert(
    path: &Path,
    config: &BertConfig,
    device: &Device,
) -> Result<super::bert::BertModel> {
    let mut model = super::bert::BertModel::new(config, device);
    let res = apply_hf(&mut model, path, &[(r"^bert\.", "")])?;
    // Layers beyond the config's, heads and buffers of the checkpoint are not part of a BertModel.
    let layers = config.num_hidden_layers;
    crate::weights::check_apply(path, &res, &|u| {
        let beyond = u
            .strip_prefix("encoder.layer.")
            .and_then(|r| r.split('.').next())
            .and_then(|i| i.parse::<usize>().ok())
            .is_some_and(|i| i >= layers);
        // FashionBERT's image side and heads beside the text encoder.
        let fashionbert = ["image_embeddings.", "itc.", "itm."]
            .iter()
            .any(|p| u.starts_with(p));
        beyond || fashionbert || u.starts_with("cls.") || u.contains("position_ids")
    })?;
    Ok(model)
}

/// A BERT config from a Hugging Face `config.json`.
pub fn read_bert_config(path: &Path) -> Result<BertConfig> {
    let text = std::fs::read_to_string(path).at(path)?;
    BertConfig::from_hf_json(&text).map_err(|source| Error::BertConfig {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FashionBERT small enough to save and load in milliseconds.
    fn tiny() -> FashionBertConfig {
        let mut bert = BertConfig::new();
        bert.vocab_size = 50;
        bert.hidden_size = 8;
        bert.num_hidden_layers = 1;
        bert.num_attention_heads = 2;
        bert.intermediate_size = 16;
        bert.max_position_embeddings = 80;
        let mut cfg = FashionBertConfig::new(bert);
        cfg.patch_feature_size = 4;
        cfg.num_patches = 4;
        cfg
    }

    /// Issue 31: a folder named `model.safetensors` is "not a file" (not the OS's "No such
    /// device"); a file that is not safetensors is its own error, without asking whether the
    /// config matches; only tensors that do not fit the config ask that.
    #[test]
    fn weight_errors_say_what_is_wrong() {
        let cfg = tiny();
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        save(&cfg.init(&device), &cfg, d).unwrap();
        let good = std::fs::read(d.join(WEIGHTS)).unwrap();
        std::fs::remove_file(d.join(WEIGHTS)).unwrap();
        std::fs::create_dir(d.join(WEIGHTS)).unwrap();
        let e = load(d, &device).err().unwrap().to_string();
        assert!(
            e.contains("not a file") && !e.contains("No such device"),
            "{e}"
        );
        std::fs::remove_dir(d.join(WEIGHTS)).unwrap();
        std::fs::write(d.join(WEIGHTS), b"not safetensors at all").unwrap();
        let e = load(d, &device).err().unwrap().to_string();
        assert!(!e.contains("match these weights"), "{e}");
        // Weights of another size: the config is questioned, in a few hundred bytes.
        let mut other = tiny();
        other.bert.hidden_size = 12;
        other.bert.num_attention_heads = 3;
        save(&other.init(&device), &other, &d.join("o")).unwrap();
        std::fs::copy(d.join("o").join(WEIGHTS), d.join(WEIGHTS)).unwrap();
        let e = load(d, &device).err().unwrap().to_string();
        assert!(e.contains("match these weights"), "{e}");
        assert!(e.len() < 3000, "{} bytes: {e}", e.len());
        std::fs::write(d.join(WEIGHTS), good).unwrap();
        load(d, &device).unwrap();
    }

    /// Saving the same weights twice gives the same bytes (the header's metadata used to come
    /// out in `HashMap` order, different from one save to the next).
    #[test]
    fn saved_weights_are_byte_reproducible() {
        let cfg = tiny();
        let device = Device::flex();
        let model = cfg.init(&device);
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for i in 0..6 {
            let d = dir.path().join(i.to_string());
            save(&model, &cfg, &d).unwrap();
            files.push(std::fs::read(d.join(WEIGHTS)).unwrap());
        }
        assert!(files.windows(2).all(|w| w[0] == w[1]), "saves differ");
        // Still a valid file: it loads back.
        let (back, _) = load(&dir.path().join("0"), &device).unwrap();
        let head = |m: &FashionBert| -> Vec<f32> {
            m.cls
                .seq_relationship
                .weight
                .val()
                .try_into_vec_as()
                .unwrap()
        };
        let (a, b) = (head(&model), head(&back));
        assert_eq!(a, b);
    }
}
