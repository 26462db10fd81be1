//! `train`: pretrains FashionBERT on the records (see [`crate::training`] for the loop).

use std::path::{Path, PathBuf};

use burn::module::Module;

use crate::dag::params::Choice;
use crate::dag::{
    Input, ParamDefault as D, ParamKind as K, Params, RawInput, RunContext, Stage, StageError,
    StageParams, StageSpec,
};
use crate::error::{Error, Result};
use crate::featstore;
use crate::models::bert::BertConfig;
use crate::models::fashionbert::{FashionBertConfig, LossWeighting, MaskedPatchInput};
use crate::models::fused::MatmulPrecision;
use crate::models::io;
use crate::table::{self, col_f32, col_f64, col_i64, col_u32};
use crate::training::batches::Composition;
use crate::training::{self, TrainConfig, data::Records};
use crate::weights::tfload;

crate::param_choice! {
    /// Where the alignment head's negatives come from (`itm_negatives`).
    pub enum ItmNegatives {
        /// The records' own (from `negatives`).
        Records = "records",
        /// Mined from the ITC similarities, one per matched record (ALBEF).
        Itc = "itc",
    }
}

crate::param_choice! {
    /// What the model sees at a masked patch (`masked_patch_input`; see [`MaskedPatchInput`]).
    pub enum MaskedInputName {
        ZeroPatch = "zero_patch",
        ZeroVector = "zero_vector",
    }
}

crate::param_choice! {
    /// The matrix products' precision (`precision`; see [`MatmulPrecision`]).
    pub enum PrecisionName {
        F32 = "f32",
        Bf16 = "bf16",
        Auto = "auto",
    }
}

crate::param_choice! {
    /// How the three losses combine (`loss_weights`; see [`LossWeighting`]).
    pub enum Weighting {
        Adaptive = "adaptive",
        Fixed = "fixed",
    }
}

crate::stage_params! {
    /// The params of `train`.
    pub struct TrainParams {
        init: String = (
            K::Path,
            D::Str("weights/minilm"),
            "a Hugging Face BERT folder (config.json + model.safetensors) to start from, a TensorFlow checkpoint prefix (EasyTransfer's `dir/model.ckpt-54198`, Google's `dir/bert_model.ckpt`; its bert_config.json beside it), or `random`",
        );
        config: Option<String> = (
            K::Path,
            D::None,
            "a Hugging Face BERT config.json for the size (default: the init folder's; BERT-base for random)",
        );
        layers: usize = (
            K::Int,
            D::Int(0),
            "keep only the first N encoder layers (0 = all)",
        )
        .min(0.0);
        dropout: f64 = (
            K::Float,
            D::Float(-1.0),
            "hidden and attention dropout (-1 = the config's)",
        )
        .range(-1.0, 0.99);
        init_range: f64 = (
            K::Float,
            D::Float(-1.0),
            "std of the random initialisation of every parameter not loaded from `init` (-1 = the config's initializer_range)",
        )
        .range(-1.0, 10.0);
        epochs: usize = (K::Int, D::Int(2), "passes over the training records").min(1.0);
        max_steps: usize = (
            K::Int,
            D::Int(0),
            "stop after this many steps (0 = all epochs)",
        )
        .min(0.0);
        batch_size: usize = (K::Int, D::Int(32), "records per step").min(1.0);
        lr: f64 = (K::Float, D::Float(1e-4), "peak learning rate").range(0.0, 10.0);
        lr_new: f64 = (
            K::Float,
            D::Float(0.0),
            "peak learning rate of the parameters `init` does not provide (image embeddings, heads, ITC projections); 0 = `lr`",
        )
        .range(0.0, 10.0);
        w_itc: f64 = (
            K::Float,
            D::Float(0.0),
            "weight of the in-batch image–text contrastive loss (ITC, beyond the original) added to the total; 0 = off",
        )
        .min(0.0);
        joint: bool = (
            K::Bool,
            D::Bool(true),
            "run the joint text+image pass and its losses (masked LM, alignment, masked patches; the original's pretraining); false = the contrastive loss (ITC) alone on the matched records, ~3x faster a record (needs w_itc > 0; then evaluate with score = \"itc\")",
        );
        batches: Composition = (
            K::Choice(Composition::CHOICES),
            D::Str("random"),
            "how an epoch's records are cut into batches: `random`; `subcategory` (each batch from one subcategory, so the contrastive loss's in-batch negatives share the positive's subcategory as the evaluation's candidates do); `mixed` (half of each batch from one subcategory, half random)",
        );
        itc_queue: usize = (
            K::Int,
            D::Int(0),
            "a memory of the last N matched records' ITC embeddings, added to each step's in-batch negatives (XBM / MoCo's queue; same-product entries stay positives); 0 = in-batch negatives only",
        )
        .range(0.0, 1048576.0);
        itm_negatives: ItmNegatives = (
            K::Choice(ItmNegatives::CHOICES),
            D::Str("records"),
            "the alignment head's negatives: the records' (from `negatives`), or one per matched record mined from the ITC similarities (ALBEF; needs w_itc > 0)",
        );
        itc_dim: usize = (
            K::Int,
            D::Int(256),
            "width of the ITC projections (used when w_itc > 0)",
        )
        .range(1.0, 65536.0);
        itm_pair_dim: usize = (
            K::Int,
            D::Int(0),
            "width of the alignment head's pair term (mean text token × mean image token of the joint pass, projected; beyond the original); 0 = the original head on the pooler alone",
        )
        .range(0.0, 65536.0);
        warmup: f64 = (K::Float, D::Float(0.1), "share of steps of linear warm-up").range(0.0, 1.0);
        clip_norm: f64 = (K::Float, D::Float(1.0), "global gradient norm clip").min(0.0);
        seed: u64 = (K::Int, D::Int(17), "initialisation, order and dropout seed").min(0.0);
        masked_patch_input: MaskedInputName = (
            K::Choice(MaskedInputName::CHOICES),
            D::Str("zero_patch"),
            "what the model sees at a masked patch: the all-zero patch's feature (the guide) or a zero vector (the original's code)",
        );
        loss_weights: Weighting = (
            K::Choice(Weighting::CHOICES),
            D::Str("adaptive"),
            "the original's adaptive weights, or fixed w_mlm/w_tia/w_mpm",
        );
        detach_weights: bool = (
            K::Bool,
            D::Bool(true),
            "adaptive: no gradient through the weights",
        );
        w_mlm: f64 = (K::Float, D::Float(1.0), "fixed weight of the masked-LM loss").min(0.0);
        w_tia: f64 = (K::Float, D::Float(1.0), "fixed weight of the alignment loss").min(0.0);
        w_mpm: f64 = (
            K::Float,
            D::Float(1.0),
            "fixed weight of the masked-patch loss (0 = no MPM)",
        )
        .min(0.0);
        checkpoint_every: usize = (
            K::Int,
            D::Int(200),
            "steps between checkpoints (for --resume)",
        )
        .min(0.0);
        validate_every: usize = (K::Int, D::Int(200), "steps between validations").min(0.0);
        valid_records: usize = (
            K::Int,
            D::Int(1024),
            "valid records per validation (0 = all)",
        )
        .min(0.0);
        log_every: usize = (K::Int, D::Int(1), "read losses back every N steps").min(1.0);
        precision: PrecisionName = (
            K::Choice(PrecisionName::CHOICES),
            D::Str("f32"),
            "matrix products: f32, or bf16 operands with f32 weights, gradients and optimiser (PyTorch autocast-style; libtorch only, fast on CPUs with AVX-512 BF16 or AMX), or auto: bf16 where native (CUDA, AVX-512 BF16, AMX), f32 elsewhere, said in the log and summary.json (the key holds `auto`, not the choice)",
        );
    }
}

pub const SPEC: StageSpec = StageSpec {
    name: "train",
    version: 2,
    about: "pretrain FashionBERT (masked LM, text–image alignment, masked patch modelling)",
    inputs: &[Input::all("records"), Input::all("features")],
    params: TrainParams::SPECS,
    outputs: &[
        "model.safetensors",
        "config.json",
        "fashionbert.json",
        "train_log.parquet",
        "valid_log.parquet",
        "summary.json",
        "recipe.json",
    ],
};

/// How this model's inputs were made (`recipe.json` in the model folder): the ingest text mode,
/// the tokenizer, the patch grid and the feature extractor, with paths made absolute, so
/// `fashionbert evaluate --model DIR --csv FILE` can prepare another catalogue the same way.
fn data_recipe(ctx: &RunContext) -> Result<serde_json::Value, StageError> {
    let store_root = ctx
        .input_dir("records")?
        .parent()
        .and_then(|p| p.parent())
        .ok_or_else(|| Error::msg("records entry outside a store"))?
        .to_path_buf();
    let upstream =
        |m: &crate::dag::Manifest, stage: &str| -> Result<crate::dag::Manifest, StageError> {
            let key = m.upstream.get(stage).ok_or_else(|| {
                Error::msg(format!(
                    "the {} entry does not name its `{stage}` input",
                    m.stage
                ))
            })?;
            let dir = store_root.join(stage).join(key);
            Ok(crate::dag::Manifest::read(&dir).map_err(|e| Error::io(&dir, e))?)
        };
    let records = ctx.input_manifest("records")?.clone();
    let features = ctx.input_manifest("features")?.clone();
    let tokenize = upstream(&records, "tokenize")?;
    let patches = upstream(&records, "patches")?;
    let ingest = upstream(&tokenize, "ingest")?;
    let abs = |v: &str| {
        let p = crate::dag::stage::resolve_path(&ctx.base_dir, v);
        std::path::absolute(&p)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    };
    // Params serialise as {"values": {name: value}}; the recipe keeps the inner map.
    let values = |p: &crate::dag::Params| serde_json::to_value(p).unwrap()["values"].clone();
    let mut tok = values(&tokenize.params);
    if let Some(v) = tokenize.params.opt_str("vocab")? {
        tok["vocab"] = serde_json::json!(abs(v));
    }
    let mut feat = values(&features.params);
    let w = features.params.str("weights")?;
    if !w.starts_with("random") {
        feat["weights"] = serde_json::json!(abs(w));
    }
    Ok(serde_json::json!({
        "ingest": {"text": ingest.params.str("text")?},
        "tokenize": tok,
        "patches": values(&patches.params),
        "features": feat,
    }))
}

pub struct Train;

/// What `init` names: nothing (`random`), a Hugging Face folder or `.safetensors` file (with the
/// `config.json` beside it), or a TensorFlow checkpoint prefix.
enum Init {
    Random,
    Hf { weights: PathBuf, config: PathBuf },
    Tf(PathBuf),
}

fn init_source(p: &TrainParams, base: &Path) -> Result<Init> {
    let init = p.init.as_str();
    if init == "random" {
        return Ok(Init::Random);
    }
    let path = crate::dag::stage::resolve_path(base, init);
    if let Some(prefix) = tfload::tf_prefix(&path) {
        return Ok(Init::Tf(prefix));
    }
    Ok(if path.extension().is_some_and(|e| e == "safetensors") {
        let config = path.with_file_name("config.json");
        Init::Hf {
            weights: path,
            config,
        }
    } else {
        Init::Hf {
            weights: path.join("model.safetensors"),
            config: path.join("config.json"),
        }
    })
}

fn model_config(p: &TrainParams, base: &Path) -> Result<FashionBertConfig> {
    let explicit = p
        .config
        .as_deref()
        .map(|c| crate::dag::stage::resolve_path(base, c));
    let mut bert = match (init_source(p, base)?, explicit) {
        // A TensorFlow checkpoint: `config`, else the one beside it, else its shapes.
        (Init::Tf(prefix), explicit) => {
            let src = tfload::Source::open(&prefix)?;
            src.model_config(explicit.as_deref())?.0.bert
        }
        (_, Some(c)) | (Init::Hf { config: c, .. }, None) => io::read_bert_config(&c)?,
        (Init::Random, None) => BertConfig::new(),
    };
    let layers = p.layers;
    if layers > 0 {
        if layers > bert.num_hidden_layers {
            return Err(Error::msg(format!(
                "layers = {layers}, but the config has only {}",
                bert.num_hidden_layers
            )));
        }
        bert.num_hidden_layers = layers;
    }
    let range = p.init_range;
    if range > 0.0 {
        bert.initializer_range = range;
    }
    let dropout = p.dropout;
    if dropout >= 0.0 {
        bert.hidden_dropout_prob = dropout;
        bert.attention_probs_dropout_prob = dropout;
    }
    let mut c = FashionBertConfig::new(bert);
    if p.w_itc > 0.0 {
        c.itc_dim = p.itc_dim.max(1);
    }
    c.itm_pair_dim = p.itm_pair_dim;
    Ok(c)
}

/// The model can be built and trained here: its sizes, and its parameters with gradients and
/// Adam's two moments (16 bytes each) within the machine's memory.
fn check_trainable(c: &FashionBertConfig) -> Result<()> {
    c.check(16)
        .map_err(|e| Error::msg(format!("train: the model config: {e}")))
}

impl Stage for Train {
    fn spec(&self) -> &'static StageSpec {
        &SPEC
    }

    fn raw_inputs(&self, p: &Params, base: &Path) -> Result<Vec<RawInput>, StageError> {
        let p = TrainParams::from_params(p)?;
        let mut v = Vec::new();
        match init_source(&p, base)? {
            Init::Tf(prefix) => v.extend(
                tfload::checkpoint_files(&prefix)?
                    .into_iter()
                    .map(RawInput::File),
            ),
            Init::Hf { weights, config } => {
                v.extend([RawInput::File(weights), RawInput::File(config)])
            }
            Init::Random => {}
        }
        if let Some(c) = p.config.as_deref() {
            v.push(RawInput::File(crate::dag::stage::resolve_path(base, c)));
        }
        // The model's sizes, checked when the run is planned (and by `status`): a config that
        // cannot be built, or would not fit in memory to train, fails here, not hours in.
        check_trainable(&model_config(&p, base)?)?;
        Ok(v)
    }

    fn run(&self, ctx: &mut RunContext) -> Result<(), StageError> {
        let p: TrainParams = ctx.typed_params()?;
        let mut config = model_config(&p, &ctx.base_dir)?;
        let store = featstore::Store::open(ctx.input_dir("features")?)?;
        let recs_dir = ctx.input_dir("records")?;
        let train_recs = Records::read_inferring_widths(&recs_dir.join("train.parquet"))?;
        if train_recs.is_empty() {
            return Err(format!(
                "no training records in {}: every product is in the valid split (or was rejected); give the source train rows (ingest.split_column / ingest.valid_fraction), or evaluate another catalogue with ingest.eval_split",
                recs_dir.join("train.parquet").display()
            )
            .into());
        }
        let (t, k, m) = (train_recs.t, train_recs.k, train_recs.m);
        let valid_recs = Records::read(&recs_dir.join("valid.parquet"), t, k, m)?;
        config.text_len = t;
        config.masked_text_num = k;
        config.masked_patch_num = m;
        config.num_patches = store.meta.patches;
        config.patch_feature_size = store.meta.dim;
        if t > config.bert.max_position_embeddings {
            return Err(format!(
                "text length {t} exceeds the model's {} positions",
                config.bert.max_position_embeddings
            )
            .into());
        }
        let max_id = train_recs.input_ids.iter().copied().max().unwrap_or(0);
        if max_id as usize >= config.bert.vocab_size {
            return Err(format!(
                "token id {max_id} is outside the model's vocabulary ({}): the tokenizer's vocab and the model do not match",
                config.bert.vocab_size
            )
            .into());
        }

        let compute = crate::device::from_runtime(ctx.runtime())?;
        if p.precision == PrecisionName::Bf16 && compute.kind == "flex" {
            return Err("train.precision = \"bf16\" needs the libtorch backend: run with --device tch (or tch-cuda), or set train.precision = \"f32\"".into());
        }
        let precision = match p.precision {
            PrecisionName::F32 => MatmulPrecision::F32,
            PrecisionName::Bf16 => MatmulPrecision::Bf16,
            PrecisionName::Auto => {
                let (bf16, why) =
                    crate::device::auto_bf16(compute.kind, crate::device::cpu_has_native_bf16());
                tracing::info!(
                    "train.precision = \"auto\": {} ({why})",
                    if bf16 { "bf16" } else { "f32" }
                );
                if bf16 {
                    MatmulPrecision::Bf16
                } else {
                    MatmulPrecision::F32
                }
            }
        };
        check_trainable(&config)?;
        let device = compute.device.clone().autodiff();
        let seed = p.seed;
        device.seed(seed);
        let mut model = config.init(&device);
        let loaded = match init_source(&p, &ctx.base_dir)? {
            Init::Random => None,
            Init::Tf(prefix) => Some((tfload::init_from_tf(&mut model, &config, &prefix)?, prefix)),
            Init::Hf { weights, .. } => Some((io::init_from_bert(&mut model, &weights)?, weights)),
        };
        let init_report = loaded.map(|(r, from)| {
            tracing::info!(
                "initialised {} tensors from {}; random: {}",
                r.loaded,
                from.display(),
                if r.random.is_empty() {
                    "none".to_string()
                } else {
                    r.random.join(", ")
                }
            );
            r
        });
        let cfg = TrainConfig {
            epochs: p.epochs,
            batch_size: p.batch_size.max(1),
            max_steps: p.max_steps,
            lr: p.lr,
            lr_new: match p.lr_new {
                x if x > 0.0 && init_report.is_some() => Some(x),
                _ => None,
            },
            w_itc: p.w_itc as f32,
            itm_mined: p.itm_negatives == ItmNegatives::Itc,
            batches: p.batches,
            itc_queue: p.itc_queue,
            joint: p.joint,
            warmup: p.warmup,
            clip_norm: p.clip_norm as f32,
            seed,
            weighting: match p.loss_weights {
                Weighting::Fixed => {
                    LossWeighting::Fixed([p.w_mlm as f32, p.w_tia as f32, p.w_mpm as f32])
                }
                Weighting::Adaptive => LossWeighting::Adaptive {
                    detach: p.detach_weights,
                },
            },
            masked_input: match p.masked_patch_input {
                MaskedInputName::ZeroVector => MaskedPatchInput::ZeroVector,
                MaskedInputName::ZeroPatch => {
                    MaskedPatchInput::ZeroPatch(store.zero_patch().to_vec())
                }
            },
            checkpoint_every: p.checkpoint_every,
            validate_every: p.validate_every,
            valid_records: p.valid_records,
            log_every: p.log_every.max(1),
            stop_after: 0,
            precision,
            replicas: crate::device::replica_devices(&compute, ctx.runtime().usize("replicas")?)?
                .into_iter()
                .map(|d| d.autodiff())
                .collect(),
        };
        if cfg.itm_mined && cfg.w_itc <= 0.0 {
            return Err("train.itm_negatives = \"itc\" mines from the contrastive similarities: set train.w_itc > 0".into());
        }
        if cfg.itc_queue > 0 && cfg.w_itc <= 0.0 {
            return Err("train.itc_queue is a memory of negatives for the contrastive loss: set train.w_itc > 0 (or train.itc_queue = 0)".into());
        }
        if !cfg.joint && cfg.w_itc <= 0.0 {
            return Err("train.joint = false leaves only the contrastive loss: set train.w_itc > 0 (or train.joint = true)".into());
        }
        if !cfg.joint && (cfg.itm_mined || !cfg.replicas.is_empty()) {
            return Err("train.joint = false trains the contrastive loss alone, on one device: set train.itm_negatives = \"records\" and runtime.replicas = 1 (or train.joint = true)".into());
        }
        let (per_epoch, total) =
            training::step_counts(train_recs.epoch_indices(0, cfg.joint).len(), &cfg);
        tracing::info!(
            "training {} layers × {} hidden on {} records ({} valid): {total} steps of {} ({per_epoch}/epoch) on {}",
            config.bert.num_hidden_layers,
            config.bert.hidden_size,
            train_recs.len(),
            valid_recs.len(),
            cfg.batch_size,
            compute.kind
        );
        let work = ctx.work_dir().to_path_buf();
        let outcome = training::train(
            model,
            &device,
            &train_recs,
            &valid_recs,
            &store,
            &cfg,
            &work,
            ctx.resume(),
        )?;

        io::save(&outcome.model.valid(), &config, ctx.out_dir())?;
        std::fs::write(
            ctx.out("recipe.json"),
            serde_json::to_string_pretty(&data_recipe(ctx)?).unwrap(),
        )?;
        write_logs(ctx, &outcome)?;
        let first = mean_first(&outcome.steps, 20);
        let last = mean_last(&outcome.steps, 20);
        let sps = outcome.steps.len() as f64 * cfg.batch_size as f64 / outcome.seconds.max(1e-9);
        let summary = serde_json::json!({
            "device": compute.kind,
            "precision": if cfg.precision == MatmulPrecision::Bf16 { "bf16" } else { "f32" },
            "steps": outcome.total_steps,
            "seconds": outcome.seconds,
            "samples_per_second": sps,
            "train_records": train_recs.len(),
            "valid_records": valid_recs.len(),
            "loss_first_20_steps": first,
            "loss_last_20_steps": last,
            "valid": outcome.valid.last(),
            "init": init_report,
            "config": config,
        });
        std::fs::write(
            ctx.out("summary.json"),
            serde_json::to_string_pretty(&summary).unwrap(),
        )?;
        ctx.count("steps", outcome.total_steps);
        ctx.note("samples_per_second", serde_json::json!(sps));
        if let Some(v) = outcome.valid.last() {
            ctx.note("valid", serde_json::to_value(v).unwrap());
        }
        Ok(())
    }
}

fn mean_of(steps: &[training::StepLog]) -> serde_json::Value {
    let n = steps.len().max(1) as f32;
    let m = |f: fn(&training::StepLog) -> f32| steps.iter().map(f).sum::<f32>() / n;
    serde_json::json!({"loss": m(|s| s.loss), "mlm": m(|s| s.loss_mlm), "tia": m(|s| s.loss_tia), "mpm": m(|s| s.loss_mpm), "itc": m(|s| s.loss_itc)})
}

fn mean_first(steps: &[training::StepLog], n: usize) -> serde_json::Value {
    mean_of(&steps[..n.min(steps.len())])
}

fn mean_last(steps: &[training::StepLog], n: usize) -> serde_json::Value {
    mean_of(&steps[steps.len().saturating_sub(n)..])
}

fn write_logs(ctx: &RunContext, o: &training::Outcome) -> Result<()> {
    let s = &o.steps;
    let col = |name: &str, f: fn(&training::StepLog) -> f32| {
        col_f32(name, &s.iter().map(f).collect::<Vec<_>>())
    };
    let mut df = table::frame(vec![
        col_i64("step", &s.iter().map(|x| x.step as i64).collect::<Vec<_>>()),
        col_u32("epoch", &s.iter().map(|x| x.epoch).collect::<Vec<_>>()),
        col_f64("lr", &s.iter().map(|x| x.lr).collect::<Vec<_>>()),
        col("loss", |x| x.loss),
        col("loss_mlm", |x| x.loss_mlm),
        col("loss_tia", |x| x.loss_tia),
        col("loss_mpm", |x| x.loss_mpm),
        col("loss_itc", |x| x.loss_itc),
        col("itc_scale", |x| x.itc_scale),
        col("w_mlm", |x| x.w_mlm),
        col("w_tia", |x| x.w_tia),
        col("w_mpm", |x| x.w_mpm),
        col("grad_norm", |x| x.grad_norm),
        col("samples_per_s", |x| x.samples_per_s),
    ])?;
    table::write_parquet(&mut df, &ctx.out("train_log.parquet"))?;
    let v = &o.valid;
    let vc = |name: &str, f: fn(&training::ValidLog) -> f32| {
        col_f32(name, &v.iter().map(f).collect::<Vec<_>>())
    };
    let mut df = table::frame(vec![
        col_i64("step", &v.iter().map(|x| x.step as i64).collect::<Vec<_>>()),
        col_i64(
            "records",
            &v.iter().map(|x| x.records as i64).collect::<Vec<_>>(),
        ),
        vc("loss_mlm", |x| x.loss_mlm),
        vc("loss_tia", |x| x.loss_tia),
        vc("loss_mpm", |x| x.loss_mpm),
        vc("mlm_accuracy", |x| x.mlm_accuracy),
        vc("tia_accuracy", |x| x.tia_accuracy),
        vc("loss_itc", |x| x.loss_itc),
        vc("itc_accuracy", |x| x.itc_accuracy),
    ])?;
    table::write_parquet(&mut df, &ctx.out("valid_log.parquet"))?;
    Ok(())
}
