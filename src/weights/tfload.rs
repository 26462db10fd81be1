//! TensorFlow checkpoints into FashionBERT: the model's size, loading (training
//! initialisation), and `fashionbert convert --from tf`.
//!
//! An EasyTransfer FashionBERT checkpoint (`model.ckpt-54198`) becomes a FashionBERT folder
//! ([`crate::models::io::save`]: what `eval-tsv --model`, `evaluate --model` take); a Google
//! BERT checkpoint (`bert_model.ckpt`) becomes a Hugging Face BERT folder (what `train.init`
//! takes), without its next-sentence head.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use safetensors::tensor::{Dtype, TensorView};

use super::tf_names::{self, Flavor, Layout, Plan, Policy};
use super::tfckpt::{self, TfCheckpoint, Values};
use crate::error::{Error, IoContext, Result};
use crate::models::bert::{BertConfig, hf_remaps};
use crate::models::fashionbert::{FashionBert, FashionBertConfig};
use crate::models::io::{self, InitReport};

/// The prefix of the TensorFlow checkpoint `path` names (its prefix, `.index`, a data shard, or
/// a folder with a `checkpoint` state file), if it names one.
pub fn tf_prefix(path: &Path) -> Option<PathBuf> {
    tfckpt::resolve_prefix(path)
}

/// The files a checkpoint's content depends on: `.index`, data shards, and the config beside.
pub fn checkpoint_files(prefix: &Path) -> Result<Vec<PathBuf>> {
    let ck = TfCheckpoint::open(prefix)?;
    let mut v = ck.files();
    v.extend(config_beside(prefix));
    Ok(v)
}

/// `bert_config.json` (Google) or `config.json` (EasyTransfer) beside the checkpoint.
pub fn config_beside(prefix: &Path) -> Option<PathBuf> {
    let dir = prefix.parent().unwrap_or(Path::new("."));
    ["bert_config.json", "config.json"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

/// A BERT config written for TensorFlow (Google's `bert_config.json`, EasyTransfer's
/// `config.json`): their `gelu` is the tanh approximation (`gelu_new` here).
pub fn read_tf_bert_config(path: &Path) -> Result<(BertConfig, serde_json::Value)> {
    let text = std::fs::read_to_string(path).at(path)?;
    let mut v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::input(path, format!("not a JSON config: {e}")))?;
    for k in ["vocab_size", "hidden_size", "num_hidden_layers"] {
        if v.get(k).is_none() {
            return Err(Error::input(
                path,
                format!(
                    "no `{k}`: not a BERT config; pass the model's bert_config.json with --config (or train.config)"
                ),
            ));
        }
    }
    if v.get("hidden_act").and_then(|a| a.as_str()) == Some("gelu") {
        v["hidden_act"] = "gelu_new".into();
    }
    let c = BertConfig::from_hf_json(&v.to_string()).map_err(|source| Error::BertConfig {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((c, v))
}

/// A tensor in our name and PyTorch layout: name, shape, values.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// An opened checkpoint with its variables' TensorFlow shapes.
pub struct Source {
    pub ckpt: TfCheckpoint,
    pub flavor: Flavor,
    pub vars: BTreeMap<String, Vec<usize>>,
    pub scope: String,
}

impl Source {
    pub fn open(path: &Path) -> Result<Source> {
        let prefix = tf_prefix(path).ok_or_else(|| {
            Error::input(
                path,
                "no TensorFlow checkpoint here: name its prefix (`dir/model.ckpt-54198`, beside `.index` and `.data-*` files)",
            )
        })?;
        let ckpt = TfCheckpoint::open(&prefix)?;
        let vars: BTreeMap<String, Vec<usize>> = ckpt
            .variables()
            .map(|(n, e)| (n.to_string(), e.shape.clone()))
            .collect();
        let flavor = tf_names::flavor(vars.keys().map(String::as_str));
        let scope = tf_names::outer_scope(vars.keys().map(String::as_str)).ok_or_else(|| {
            Error::input(
                &tfckpt::index_path(&prefix),
                "no `bert/embeddings/word_embeddings`: not a BERT or FashionBERT checkpoint",
            )
        })?;
        Ok(Source {
            ckpt,
            flavor,
            vars,
            scope,
        })
    }

    fn shape(&self, name: &str) -> Option<&Vec<usize>> {
        self.vars.get(&format!("{}{name}", self.scope))
    }

    fn dim(&self, name: &str, axis: usize) -> Result<usize> {
        self.shape(name).and_then(|s| s.get(axis).copied()).ok_or_else(|| {
            Error::input(
                &tfckpt::index_path(self.ckpt.prefix()),
                format!("no `{}{name}` to read the model's size from; pass the config with --config", self.scope),
            )
        })
    }

    /// The model's size: from `config` (explicit, else beside the checkpoint), the image side
    /// from the shapes where the config does not say; with no (readable) config beside it,
    /// everything from the shapes, with 64-wide attention heads (as every Google BERT).
    pub fn model_config(
        &self,
        config: Option<&Path>,
    ) -> Result<(FashionBertConfig, Option<PathBuf>)> {
        let mut path = config.map(Path::to_path_buf);
        let read = match (&path, config_beside(self.ckpt.prefix())) {
            (Some(p), _) => Some(read_tf_bert_config(p)?),
            (None, Some(beside)) => match read_tf_bert_config(&beside) {
                Ok(r) => {
                    path = Some(beside);
                    Some(r)
                }
                Err(e) => {
                    tracing::warn!("{e}; using the checkpoint's shapes instead");
                    None
                }
            },
            (None, None) => None,
        };
        let (bert, json) = match read {
            Some(r) => r,
            None => (self.bert_from_shapes()?, serde_json::Value::Null),
        };
        let mut c = FashionBertConfig::new(bert);
        let get = |k: &str| json.get(k).and_then(|v| v.as_u64()).map(|v| v as usize);
        if self.flavor == Flavor::EasyTransfer {
            c.patch_feature_size = match get("patch_feature_size") {
                Some(v) => v,
                None => self.dim("bert/image_embeddings/image_projector", 0)?,
            };
            c.num_patches = match get("max_patch_position_embeddings") {
                Some(v) => v,
                None => self.dim("bert/image_embeddings/patch_position_embeddings", 0)?,
            };
        }
        // Sizes from a config file or the tensors' shapes: buildable, and small enough to run.
        c.check(4).map_err(|source| Error::BertConfig {
            path: path
                .clone()
                .unwrap_or_else(|| tfckpt::index_path(self.ckpt.prefix())),
            source,
        })?;
        Ok((c, path))
    }

    fn bert_from_shapes(&self) -> Result<BertConfig> {
        let mut b = BertConfig::new();
        b.vocab_size = self.dim("bert/embeddings/word_embeddings", 0)?;
        b.hidden_size = self.dim("bert/embeddings/word_embeddings", 1)?;
        b.max_position_embeddings = self.dim("bert/embeddings/position_embeddings", 0)?;
        b.type_vocab_size = self.dim("bert/embeddings/token_type_embeddings", 0)?;
        b.intermediate_size = self.dim("bert/encoder/layer_0/intermediate/dense/kernel", 1)?;
        b.num_hidden_layers = self
            .vars
            .keys()
            .filter_map(|n| n.strip_prefix(&format!("{}bert/encoder/layer_", self.scope)))
            .filter_map(|r| r.split('/').next()?.parse::<usize>().ok())
            .max()
            .map_or(0, |m| m + 1);
        if !b.hidden_size.is_multiple_of(64) {
            return Err(Error::input(
                &tfckpt::index_path(self.ckpt.prefix()),
                format!(
                    "hidden size {} is not a multiple of 64, so the number of attention heads is unknown; pass the config with --config",
                    b.hidden_size
                ),
            ));
        }
        b.num_attention_heads = b.hidden_size / 64;
        tracing::warn!(
            "no config beside {}: sizes read from the shapes, {} attention heads assumed (64 wide)",
            self.ckpt.prefix().display(),
            b.num_attention_heads
        );
        Ok(b)
    }

    /// Matches the variables to a model of `cfg`'s size (`image`: a FashionBERT, else a text
    /// BERT); a mismatch names every variable.
    pub fn plan(&self, cfg: &FashionBertConfig, image: bool, policy: Policy) -> Result<Plan> {
        tf_names::plan(&self.vars, cfg, self.flavor, image, policy).map_err(|m| {
            Error::Model(format!(
                "{}: does not match the model ({} layers × {} hidden, vocabulary {}): {m}",
                self.ckpt.prefix().display(),
                cfg.bert.num_hidden_layers,
                cfg.bert.hidden_size,
                cfg.bert.vocab_size
            ))
        })
    }

    /// The planned tensors in our names and layouts (f32, crc32c checked).
    pub fn read(&self, plan: &Plan) -> Result<Vec<NamedTensor>> {
        plan.load
            .iter()
            .map(|m| {
                let (shape, v) = self.ckpt.read_f32(&m.tf)?;
                Ok(match m.layout {
                    Layout::AsIs => (m.ours.clone(), shape, v),
                    Layout::Transpose => {
                        let (r, c) = (shape[0], shape[1]);
                        (m.ours.clone(), vec![c, r], transpose(&v, r, c))
                    }
                })
            })
            .collect()
    }

    /// `global_step`'s value, when the checkpoint has one.
    pub fn global_step(&self) -> Option<i64> {
        let name = self
            .vars
            .keys()
            .find(|n| n.rsplit('/').next() == Some("global_step"))?;
        match self.ckpt.read(name).ok()?.1 {
            Values::I64(v) => v.first().copied(),
            Values::I32(v) => v.first().map(|&x| x as i64),
            Values::F32(_) => None,
        }
    }

    /// One line on the optimizer state not loaded.
    pub fn training_state_note(&self, plan: &Plan) -> Option<String> {
        if plan.training_state.is_empty() {
            return None;
        }
        let step = self
            .global_step()
            .map(|s| format!(", global_step {s}"))
            .unwrap_or_default();
        Some(format!(
            "training state not loaded: {} variables (optimizer slots, counters{step})",
            plan.training_state.len()
        ))
    }
}

fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = v[r * cols + c];
        }
    }
    out
}

/// A safetensors file (in memory) of f32 tensors.
fn safetensors_bytes(tensors: &[NamedTensor]) -> Result<Vec<u8>> {
    let views = tensors
        .iter()
        .map(|(n, s, v)| {
            TensorView::new(Dtype::F32, s.clone(), bytemuck::cast_slice(v)).map(|t| (n.clone(), t))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(safetensors::serialize(views, None)?)
}

/// Puts tensors (our names, PyTorch layouts) into `model`; every one must land.
pub fn apply(model: &mut FashionBert, tensors: &[NamedTensor]) -> Result<usize> {
    let bytes = safetensors_bytes(tensors)?;
    let mut store =
        SafetensorsStore::from_bytes(Some(bytes)).with_from_adapter(PyTorchToBurnAdapter);
    for (from, to) in hf_remaps() {
        store = store.with_key_remapping(from, to);
    }
    let mut store = store.allow_partial(true);
    let res = model
        .load_from(&mut store)
        .map_err(|source| Error::Weights {
            path: "converted tensors".into(),
            source: Box::new(source),
        })?;
    if !res.errors.is_empty() || !res.unused.is_empty() || res.applied.len() != tensors.len() {
        let errs: Vec<String> = res.errors.iter().map(|e| e.to_string()).collect();
        return Err(Error::Model(format!(
            "converted tensors do not fit the model: unused {:?}; {}",
            res.unused,
            errs.join("; ")
        )));
    }
    Ok(res.applied.len())
}

/// Initialises `model` from a TensorFlow checkpoint (train.init): the backbone must be there;
/// EasyTransfer's heads and image embeddings load too, Google BERT's next-sentence head never.
pub fn init_from_tf(
    model: &mut FashionBert,
    cfg: &FashionBertConfig,
    path: &Path,
) -> Result<InitReport> {
    let t = Instant::now();
    let src = Source::open(path)?;
    let plan = src.plan(cfg, true, Policy::Init)?;
    let tensors = src.read(&plan)?;
    let read = t.elapsed().as_secs_f64();
    let loaded = apply(model, &tensors)?;
    let mut unused = plan.unused.clone();
    unused.extend(src.training_state_note(&plan));
    tracing::info!(
        "{} ({:?}{}): {loaded} tensors, read in {read:.2}s, into the model in {:.2}s",
        src.ckpt.prefix().display(),
        src.flavor,
        if plan.scope.is_empty() {
            String::new()
        } else {
            format!(", scope `{}`", plan.scope)
        },
        t.elapsed().as_secs_f64() - read
    );
    Ok(InitReport {
        loaded,
        random: plan.missing,
        unused,
    })
}

/// A trained FashionBERT for scoring (`eval-tsv --model`): a model folder ([`io::load`]) or an
/// EasyTransfer checkpoint (`dir/model.ckpt-54198`, its prefix, `.index` or folder), every
/// weight of which must be present and of the right shape, as `convert` requires. A Google
/// BERT checkpoint has no image side or alignment head, so it cannot score pairs: it is refused
/// with what to do instead.
pub fn load_model(
    path: &Path,
    device: &burn::tensor::Device,
) -> Result<(FashionBert, FashionBertConfig)> {
    let Some(prefix) = tf_prefix(path) else {
        return io::load(path, device);
    };
    let t = Instant::now();
    let src = Source::open(&prefix)?;
    if src.flavor != Flavor::EasyTransfer {
        return Err(Error::input(
            &tfckpt::index_path(&prefix),
            "a Google BERT checkpoint (text only: no image embeddings, no alignment head) cannot score image-text pairs; train from it with `train.init`, then score the trained model",
        ));
    }
    let (cfg, _) = src.model_config(None)?;
    let plan = src.plan(&cfg, true, Policy::Exact)?;
    let tensors = src.read(&plan)?;
    let mut model = cfg.init(device);
    let loaded = apply(&mut model, &tensors)?;
    tracing::info!(
        "{}: {loaded} tensors in {:.2}s",
        prefix.display(),
        t.elapsed().as_secs_f64()
    );
    Ok((model, cfg))
}

/// What `convert` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConvertReport {
    pub source: PathBuf,
    pub flavor: Flavor,
    pub config: Option<PathBuf>,
    pub scope: String,
    pub loaded: usize,
    pub missing: Vec<String>,
    pub unused: Vec<String>,
    pub training_state: Option<String>,
    #[serde(skip)]
    pub seconds: f64,
}

/// Writes a TensorFlow checkpoint as a model folder in `out`: FashionBERT (config.json +
/// model.safetensors as [`io::save`] writes them) for EasyTransfer's, a Hugging Face BERT for
/// Google's. `partial`: variables that do not fit are listed instead of failing.
pub fn convert(
    path: &Path,
    config: Option<&Path>,
    out: &Path,
    partial: bool,
) -> Result<ConvertReport> {
    let t = Instant::now();
    let src = Source::open(path)?;
    let (cfg, cfg_path) = src.model_config(config)?;
    let policy = if partial {
        Policy::Partial
    } else {
        Policy::Exact
    };
    let plan = src.plan(&cfg, src.flavor == Flavor::EasyTransfer, policy)?;
    let tensors = src.read(&plan)?;
    let loaded = tensors.len();
    match src.flavor {
        Flavor::EasyTransfer => {
            let device = burn::tensor::Device::flex();
            let mut model = cfg.init(&device);
            let t0 = Instant::now();
            apply(&mut model, &tensors)?;
            drop(tensors);
            let t1 = Instant::now();
            io::save(&model, &cfg, out)?;
            tracing::info!(
                "read {:.2}s, into the model {:.2}s, saved {:.2}s",
                (t0 - t).as_secs_f64(),
                (t1 - t0).as_secs_f64(),
                t1.elapsed().as_secs_f64()
            );
        }
        Flavor::GoogleBert => write_hf_bert(&cfg.bert, &tensors, out)?,
    }
    Ok(ConvertReport {
        source: src.ckpt.prefix().to_path_buf(),
        flavor: src.flavor,
        config: cfg_path,
        scope: plan.scope.clone(),
        loaded,
        missing: plan.missing.clone(),
        unused: plan.unused.clone(),
        training_state: src.training_state_note(&plan),
        seconds: t.elapsed().as_secs_f64(),
    })
}

/// A Hugging Face `BertForPreTraining`-named folder (without the next-sentence head).
fn write_hf_bert(c: &BertConfig, tensors: &[NamedTensor], out: &Path) -> Result<()> {
    crate::error::create_out_dir(out)?;
    let path = out.join(io::WEIGHTS);
    let bytes = safetensors_bytes(tensors)?;
    std::fs::write(&path, bytes).at(&path)?;
    crate::weights::canonicalize_safetensors(&path)?;
    let json = serde_json::json!({
        "architectures": ["BertForPreTraining"],
        "model_type": "bert",
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads,
        "intermediate_size": c.intermediate_size,
        "max_position_embeddings": c.max_position_embeddings,
        "type_vocab_size": c.type_vocab_size,
        "layer_norm_eps": c.layer_norm_eps,
        "hidden_act": c.hidden_act,
        "hidden_dropout_prob": c.hidden_dropout_prob,
        "attention_probs_dropout_prob": c.attention_probs_dropout_prob,
        "initializer_range": c.initializer_range,
    });
    let cp = out.join(io::CONFIG);
    std::fs::write(&cp, serde_json::to_string_pretty(&json).unwrap()).at(&cp)?;
    Ok(())
}

/// `fashionbert convert --from tf`: converts and prints what was and was not loaded.
pub fn convert_cli(path: &Path, config: Option<&Path>, out: &Path, partial: bool) -> Result<()> {
    let r = convert(path, config, out, partial)?;
    let say = crate::progress::println;
    say(format!(
        "{}: {:?} checkpoint{}, {} tensors → {} ({:.1}s)",
        r.source.display(),
        r.flavor,
        if r.scope.is_empty() {
            String::new()
        } else {
            format!(" (scope `{}`)", r.scope)
        },
        r.loaded,
        out.display(),
        r.seconds
    ));
    match &r.config {
        Some(c) => say(format!("config: {}", c.display())),
        None => say("config: none found; sizes read from the shapes".to_string()),
    }
    if let Some(t) = &r.training_state {
        say(t.clone());
    }
    for u in &r.unused {
        say(format!("not loaded: {u}"));
    }
    for m in &r.missing {
        say(format!("not in the checkpoint (initialised randomly): {m}"));
    }
    let p = out.join("conversion.json");
    std::fs::write(&p, serde_json::to_string_pretty(&r).unwrap()).at(&p)?;
    Ok(())
}
