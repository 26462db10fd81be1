//! A post-LayerNorm BERT encoder with Hugging Face module names.
//!
//! Field names mirror `BertModel`'s tensor names (`embeddings.word_embeddings`,
//! `encoder.layer.{i}.attention.self.query`, …) except two that Rust cannot spell: `self` is
//! `self_` and `LayerNorm` is `layer_norm`; [`hf_remaps`] lists the renames used when loading.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig,
    Linear, LinearConfig,
};
use burn::tensor::activation::gelu;

use super::fused;
use burn::tensor::{Device, Int, Tensor};

/// The size and behaviour of a BERT, read from a Hugging Face `config.json` (other fields are
/// ignored). Defaults are BERT-base.
#[derive(Config, Debug, PartialEq)]
pub struct BertConfig {
    #[config(default = 30522)]
    pub vocab_size: usize,
    #[config(default = 768)]
    pub hidden_size: usize,
    #[config(default = 12)]
    pub num_hidden_layers: usize,
    #[config(default = 12)]
    pub num_attention_heads: usize,
    #[config(default = 3072)]
    pub intermediate_size: usize,
    #[config(default = 512)]
    pub max_position_embeddings: usize,
    #[config(default = 2)]
    pub type_vocab_size: usize,
    #[config(default = 1e-12)]
    pub layer_norm_eps: f64,
    #[config(default = 0.1)]
    pub hidden_dropout_prob: f64,
    #[config(default = 0.1)]
    pub attention_probs_dropout_prob: f64,
    #[config(default = 0.02)]
    pub initializer_range: f64,
    /// `gelu` (erf, as Hugging Face's "gelu") or `gelu_new` (tanh approximation, as the
    /// original FashionBERT and Google's BERT code).
    #[config(default = "Activation::GeluNew")]
    pub hidden_act: Activation,
}

impl BertConfig {
    /// Reads the BERT fields of a Hugging Face `config.json` (other fields are ignored; a
    /// field it lacks keeps BERT-base's default).
    pub fn from_hf_json(text: &str) -> Result<BertConfig, BertConfigError> {
        let given: serde_json::Value = serde_json::from_str(text).map_err(BertConfigError::Json)?;
        let given = given.as_object().ok_or(BertConfigError::NotAnObject)?;
        // The defaults with each of this struct's fields the file has, checked one at a time
        // so that an error names its field.
        let mut c = BertConfig::new();
        let mut merged = serde_json::to_value(&c).expect("a config serialises");
        let fields: Vec<String> = merged
            .as_object()
            .expect("an object")
            .keys()
            .cloned()
            .collect();
        for field in fields {
            if let Some(v) = given.get(&field) {
                merged[&field] = v.clone();
                c = serde_json::from_value(merged.clone())
                    .map_err(|source| BertConfigError::Field { field, source })?;
            }
        }
        c.check_sizes()?;
        Ok(c)
    }

    /// The sizes a model can be built from: every size at least 1 and at most its bound,
    /// the heads dividing the hidden size (checked before anything is allocated: a crafted
    /// or mistyped config is an error, never an abort in the allocator or a panic in a kernel).
    pub fn check_sizes(&self) -> Result<(), BertConfigError> {
        for (field, value, max) in [
            ("vocab_size", self.vocab_size, 10_000_000),
            ("hidden_size", self.hidden_size, 16_384),
            ("num_hidden_layers", self.num_hidden_layers, 256),
            ("num_attention_heads", self.num_attention_heads, 1_024),
            ("intermediate_size", self.intermediate_size, 131_072),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                131_072,
            ),
            ("type_vocab_size", self.type_vocab_size, 1_024),
        ] {
            check_size(field, value, max)?;
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(BertConfigError::Heads {
                hidden: self.hidden_size,
                heads: self.num_attention_heads,
            });
        }
        Ok(())
    }

    /// The encoder's parameter count (embeddings and layers; heads not included).
    pub fn parameters(&self) -> u128 {
        let (h, i) = (self.hidden_size as u128, self.intermediate_size as u128);
        let emb = (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) as u128
            * h
            + 2 * h;
        let layer = 4 * (h * h + h) + 2 * h * i + i + h + 4 * h;
        emb + self.num_hidden_layers as u128 * layer
    }

    pub fn init_normal(&self) -> Initializer {
        Initializer::Normal {
            mean: 0.0,
            std: self.initializer_range,
        }
    }

    pub fn linear(&self, d_in: usize, d_out: usize, bias: bool, device: &Device) -> Linear {
        LinearConfig::new(d_in, d_out)
            .with_bias(bias)
            .with_initializer(self.init_normal())
            .init(device)
    }

    pub fn embedding(&self, n: usize, d: usize, device: &Device) -> Embedding {
        EmbeddingConfig::new(n, d)
            .with_initializer(self.init_normal())
            .init(device)
    }

    pub fn layer_norm(&self, device: &Device) -> LayerNorm {
        LayerNormConfig::new(self.hidden_size)
            .with_epsilon(self.layer_norm_eps)
            .init(device)
    }
}

/// `value` of size field `field` is within 1..=`max`.
pub fn check_size(field: &'static str, value: usize, max: usize) -> Result<(), BertConfigError> {
    if value == 0 || value > max {
        return Err(BertConfigError::Size { field, value, max });
    }
    Ok(())
}

/// The machine's memory in bytes (Linux `/proc/meminfo`), where it can be read.
pub fn machine_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Refuses a model whose parameters alone (`bytes_per_param` each: 4 to run it, about 16 to
/// train it with Adam) would not fit in the machine's memory.
pub fn check_memory(params: u128, bytes_per_param: u128) -> Result<(), BertConfigError> {
    let need = params.saturating_mul(bytes_per_param);
    match machine_memory() {
        Some(have) if need > have as u128 => Err(BertConfigError::TooLarge { params, need, have }),
        _ => Ok(()),
    }
}

/// BERT's feed-forward activation (`hidden_act` in a Hugging Face config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// The exact, erf-based GELU (Hugging Face's `gelu`).
    Gelu,
    /// The tanh approximation (the original FashionBERT's and Google's BERT code).
    GeluNew,
    /// PyTorch's name for the tanh approximation (computed as `gelu_new`).
    GeluPytorchTanh,
}

impl Activation {
    /// The name in a Hugging Face config.
    pub fn as_str(self) -> &'static str {
        match self {
            Activation::Gelu => "gelu",
            Activation::GeluNew => "gelu_new",
            Activation::GeluPytorchTanh => "gelu_pytorch_tanh",
        }
    }

    pub fn forward<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Gelu => gelu(x),
            Activation::GeluNew | Activation::GeluPytorchTanh => fused::gelu_tanh(x),
        }
    }
}

impl std::fmt::Display for Activation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `config.hidden_act == "gelu_new"` reads as the config file does.
impl PartialEq<&str> for Activation {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Why a Hugging Face `config.json` is not a BERT config this crate can build.
#[derive(Debug, thiserror::Error)]
pub enum BertConfigError {
    #[error("not JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("not a JSON object")]
    NotAnObject,
    #[error("field `{field}`: {source}")]
    Field {
        field: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("hidden_size {hidden} is not a multiple of num_attention_heads {heads}")]
    Heads { hidden: usize, heads: usize },
    #[error("`{field}` = {value}: it must be from 1 to {max}")]
    Size {
        field: &'static str,
        value: usize,
        max: usize,
    },
    #[error(
        "{params} parameters need about {} GiB, more than this machine's {} GiB of memory: choose smaller sizes (train.config, or fewer train.layers)",
        need / (1 << 30),
        have / (1 << 30)
    )]
    TooLarge { params: u128, need: u128, have: u64 },
}

/// Renames from Hugging Face tensor names to this module tree (regex, replacement).
pub fn hf_remaps() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"\.attention\.self\.", ".attention.self_."),
        (r"\.LayerNorm\.", ".layer_norm."),
        (r"\.LayerNorm$", ".layer_norm"),
    ]
}

#[derive(Module, Debug)]
pub struct BertEmbeddings {
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    pub token_type_embeddings: Embedding,
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
    /// `layer_norm`'s epsilon (the config's `layer_norm_eps`), for the fused layer norm.
    #[module(skip)]
    pub layer_norm_eps: f64,
}

impl BertEmbeddings {
    pub fn new(c: &BertConfig, device: &Device) -> Self {
        Self {
            word_embeddings: c.embedding(c.vocab_size, c.hidden_size, device),
            position_embeddings: c.embedding(c.max_position_embeddings, c.hidden_size, device),
            token_type_embeddings: c.embedding(c.type_vocab_size, c.hidden_size, device),
            layer_norm: c.layer_norm(device),
            dropout: DropoutConfig::new(c.hidden_dropout_prob).init(),
            layer_norm_eps: c.layer_norm_eps,
        }
    }

    /// `[B, L]` ids and token types → `[B, L, H]`; positions are 0..L.
    pub fn forward(&self, input_ids: Tensor<2, Int>, token_type_ids: Tensor<2, Int>) -> Tensor<3> {
        let [b, l] = input_ids.dims();
        let device = input_ids.device();
        let pos = Tensor::<1, Int>::arange(0..l as i64, &device)
            .reshape([1, l])
            .expand([b, l]);
        let x = self.word_embeddings.forward(input_ids)
            + self.position_embeddings.forward(pos)
            + self.token_type_embeddings.forward(token_type_ids);
        fused::dropout(
            &self.dropout,
            fused::layer_norm(&self.layer_norm, x, self.layer_norm_eps),
        )
    }
}

#[derive(Module, Debug)]
pub struct SelfAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub dropout: Dropout,
    pub num_heads: usize,
}

#[derive(Module, Debug)]
pub struct DenseLayerNorm {
    pub dense: Linear,
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
    /// `layer_norm`'s epsilon, for the fused layer norm.
    #[module(skip)]
    pub layer_norm_eps: f64,
}

impl DenseLayerNorm {
    fn new(c: &BertConfig, d_in: usize, device: &Device) -> Self {
        Self {
            dense: c.linear(d_in, c.hidden_size, true, device),
            layer_norm: c.layer_norm(device),
            dropout: DropoutConfig::new(c.hidden_dropout_prob).init(),
            layer_norm_eps: c.layer_norm_eps,
        }
    }

    /// `LN(dropout(dense(x)) + residual)`.
    fn forward(&self, x: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        let y = fused::dropout(&self.dropout, fused::dense(&self.dense, x)) + residual;
        fused::layer_norm(&self.layer_norm, y, self.layer_norm_eps)
    }
}

#[derive(Module, Debug)]
pub struct Attention {
    pub self_: SelfAttention,
    pub output: DenseLayerNorm,
}

#[derive(Module, Debug)]
pub struct Intermediate {
    pub dense: Linear,
}

#[derive(Module, Debug)]
pub struct BertLayer {
    pub attention: Attention,
    pub intermediate: Intermediate,
    pub output: DenseLayerNorm,
    #[module(skip)]
    pub hidden_act: Activation,
}

impl BertLayer {
    pub fn new(c: &BertConfig, device: &Device) -> Self {
        Self {
            attention: Attention {
                self_: SelfAttention {
                    query: c.linear(c.hidden_size, c.hidden_size, true, device),
                    key: c.linear(c.hidden_size, c.hidden_size, true, device),
                    value: c.linear(c.hidden_size, c.hidden_size, true, device),
                    dropout: DropoutConfig::new(c.attention_probs_dropout_prob).init(),
                    num_heads: c.num_attention_heads,
                },
                output: DenseLayerNorm::new(c, c.hidden_size, device),
            },
            intermediate: Intermediate {
                dense: c.linear(c.hidden_size, c.intermediate_size, true, device),
            },
            output: DenseLayerNorm::new(c, c.intermediate_size, device),
            hidden_act: c.hidden_act,
        }
    }

    /// `x`: `[B, L, H]`; `mask_bias`: `[B, 1, 1, L]` additive (0 keep, −10000 masked).
    pub fn forward(&self, x: Tensor<3>, mask_bias: Tensor<4>) -> Tensor<3> {
        let sa = &self.attention.self_;
        let [b, l, h] = x.dims();
        let nh = sa.num_heads;
        let split = |t: Tensor<3>| t.reshape([b, l, nh, h / nh]).swap_dims(1, 2); // [B, nh, L, dh]
        let q = split(fused::dense(&sa.query, x.clone()));
        let k = split(fused::dense(&sa.key, x.clone()));
        let v = split(fused::dense(&sa.value, x.clone()));
        let ctx = fused::attention(q, k, v, mask_bias, &sa.dropout)
            .swap_dims(1, 2)
            .reshape([b, l, h]);
        let attn = self.attention.output.forward(ctx, x);
        let inter = self
            .hidden_act
            .forward(fused::dense(&self.intermediate.dense, attn.clone()));
        self.output.forward(inter, attn)
    }
}

#[derive(Module, Debug)]
pub struct BertEncoder {
    pub layer: Vec<BertLayer>,
}

impl BertEncoder {
    pub fn new(c: &BertConfig, device: &Device) -> Self {
        Self {
            layer: (0..c.num_hidden_layers)
                .map(|_| BertLayer::new(c, device))
                .collect(),
        }
    }

    /// All hidden states: the input, then each layer's output.
    pub fn forward_all(&self, mut x: Tensor<3>, mask_bias: Tensor<4>) -> Vec<Tensor<3>> {
        let mut out = vec![x.clone()];
        for l in &self.layer {
            x = l.forward(x, mask_bias.clone());
            out.push(x.clone());
        }
        out
    }

    pub fn forward(&self, mut x: Tensor<3>, mask_bias: Tensor<4>) -> Tensor<3> {
        for l in &self.layer {
            x = l.forward(x, mask_bias.clone());
        }
        x
    }
}

#[derive(Module, Debug)]
pub struct Pooler {
    pub dense: Linear,
}

impl Pooler {
    /// `tanh(dense(h[:, 0]))`.
    pub fn forward(&self, seq: Tensor<3>) -> Tensor<2> {
        let [b, _, h] = seq.dims();
        self.dense
            .forward(seq.narrow(1, 0, 1).reshape([b, h]))
            .tanh()
    }
}

/// `(1 − mask) · −10000`, shaped `[B, 1, 1, L]` to broadcast over heads and queries.
pub fn mask_bias(mask: Tensor<2>) -> Tensor<4> {
    let [b, l] = mask.dims();
    ((mask.neg() + 1.0) * -10000.0).reshape([b, 1, 1, l])
}

/// A plain BERT (text only) with the same modules: for checking the encoder against
/// Hugging Face's `BertModel`.
#[derive(Module, Debug)]
pub struct BertModel {
    pub embeddings: BertEmbeddings,
    pub encoder: BertEncoder,
    pub pooler: Pooler,
}

impl BertModel {
    pub fn new(c: &BertConfig, device: &Device) -> Self {
        Self {
            embeddings: BertEmbeddings::new(c, device),
            encoder: BertEncoder::new(c, device),
            pooler: Pooler {
                dense: c.linear(c.hidden_size, c.hidden_size, true, device),
            },
        }
    }

    /// Hidden states (embeddings output, then each layer) and the pooled output.
    pub fn forward(
        &self,
        ids: Tensor<2, Int>,
        mask: Tensor<2>,
        types: Tensor<2, Int>,
    ) -> (Vec<Tensor<3>>, Tensor<2>) {
        let x = self.embeddings.forward(ids, types);
        let hs = self.encoder.forward_all(x, mask_bias(mask));
        let pooled = self.pooler.forward(hs.last().unwrap().clone());
        (hs, pooled)
    }
}

/// A `[n]` parameter filled with zeros (biases outside `Linear`).
pub fn zeros_param(n: usize, device: &Device) -> Param<Tensor<1>> {
    Param::from_tensor(Tensor::zeros([n], device))
}
