//! FashionBERT: BERT over 64 text tokens followed by 64 image-patch tokens, with masked-LM,
//! text–image alignment and masked-patch heads, as EasyTransfer's `ImageBertPretrain`.
//!
//! Tensor names follow EasyTransfer/Hugging Face: `bert.embeddings.*`, `bert.image_embeddings.*`,
//! `bert.encoder.layer.{i}.*`, `bert.pooler.*`, `cls.predictions.*` (decoder tied to the word
//! embeddings), `cls.seq_relationship.*` (label 1 = matched), `cls.img_predictions.weight`.
//!
//! Fixed relative to the original: the image mask is boolean (a position listed twice is masked
//! once, never sign-flipped); the adaptive loss weights are detached by default.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Embedding, LayerNorm, Linear};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor};

use super::bert::{BertConfig, BertEmbeddings, BertEncoder, Pooler, act, mask_bias, zeros_param};

/// FashionBERT's size: a BERT config plus the image side.
#[derive(Config, Debug, PartialEq)]
pub struct FashionBertConfig {
    pub bert: BertConfig,
    #[config(default = 2048)]
    pub patch_feature_size: usize,
    #[config(default = 64)]
    pub num_patches: usize,
    #[config(default = 64)]
    pub text_len: usize,
    #[config(default = 5)]
    pub masked_patch_num: usize,
    #[config(default = 10)]
    pub masked_text_num: usize,
}

#[derive(Module, Debug)]
pub struct ImageEmbeddings {
    /// Bias-free 2048 → H projection.
    pub image_projector: Linear,
    /// Own type table; every patch token has type 1.
    pub patch_type_embeddings: Embedding,
    /// Own position table, 0..63.
    pub patch_position_embeddings: Embedding,
    pub layer_norm: LayerNorm,
    /// Dropout on the raw 2048-d features (training only).
    pub input_dropout: Dropout,
    pub dropout: Dropout,
}

#[derive(Module, Debug)]
pub struct Backbone {
    pub embeddings: BertEmbeddings,
    pub image_embeddings: ImageEmbeddings,
    pub encoder: BertEncoder,
    pub pooler: Pooler,
}

#[derive(Module, Debug)]
pub struct Transform {
    pub dense: Linear,
    pub layer_norm: LayerNorm,
}

#[derive(Module, Debug)]
pub struct MlmHead {
    pub transform: Transform,
    /// Output bias over the vocabulary; the decoder weight is the word embedding table.
    pub bias: Param<Tensor<1>>,
}

#[derive(Module, Debug)]
pub struct Heads {
    pub predictions: MlmHead,
    /// Text–image alignment: 2-way on the pooler, label 1 = matched.
    pub seq_relationship: Linear,
    /// Masked patch modelling: bias-free H → 2048.
    pub img_predictions: Linear,
}

#[derive(Module, Debug)]
pub struct FashionBert {
    pub bert: Backbone,
    pub cls: Heads,
    pub hidden_act: String,
}

/// One batch of records on the device.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[B, T]` (masked ids for training records).
    pub input_ids: Tensor<2, Int>,
    /// `[B, T]` 1/0 as floats.
    pub input_mask: Tensor<2>,
    pub segment_ids: Tensor<2, Int>,
    /// `[B, P, 2048]` raw, unmasked patch features.
    pub image_feature: Tensor<3>,
    /// `[B, P]` 1/0 as floats (all ones for FashionBERT).
    pub image_mask: Tensor<2>,
    /// `[B, P, 1]`: 1 where the patch is masked (boolean, from the positions).
    pub patch_masked: Tensor<3>,
    /// `[B, M]` masked patch positions, and a weight per slot (1/multiplicity, so a repeated
    /// position counts once).
    pub masked_patch_positions: Tensor<2, Int>,
    pub masked_patch_weights: Tensor<2>,
    /// `[B, K]` masked text positions, target ids, weights (0 for padding slots).
    pub masked_lm_positions: Tensor<2, Int>,
    pub masked_lm_ids: Tensor<2, Int>,
    pub masked_lm_weights: Tensor<2>,
    /// `[B]` 1 = matched.
    pub labels: Tensor<1, Int>,
}

/// What a masked patch looks like to the model.
#[derive(Debug, Clone)]
pub enum MaskedPatchInput {
    /// The feature of an all-zero patch (pixels zeroed before extraction, as the guide says).
    ZeroPatch(Vec<f32>),
    /// A zero vector (as the original's code does).
    ZeroVector,
}

/// The outputs of a forward pass.
#[derive(Debug, Clone)]
pub struct Output {
    /// `[B, T + P, H]`
    pub sequence: Tensor<3>,
    /// `[B, H]`
    pub pooled: Tensor<2>,
    /// `[B·K, V]`
    pub mlm_logits: Tensor<2>,
    /// `[B, 2]`
    pub tia_logits: Tensor<2>,
    /// `[B·M, 2048]`
    pub mpm_logits: Tensor<2>,
}

/// The three losses, their weights and the total.
#[derive(Debug, Clone)]
pub struct Losses {
    pub mlm: Tensor<1>,
    pub tia: Tensor<1>,
    pub mpm: Tensor<1>,
    /// `[3]`: weights of (mlm, tia, mpm).
    pub weights: Tensor<1>,
    pub total: Tensor<1>,
}

/// How the three losses combine.
#[derive(Debug, Clone, PartialEq)]
pub enum LossWeighting {
    /// EasyTransfer's: `w_i ∝ 1 / (3 − softmax(L)_i²)`, normalised; `detach` stops gradients
    /// through the weights (the original does not).
    Adaptive {
        detach: bool,
    },
    Fixed([f32; 3]),
}

impl FashionBertConfig {
    pub fn init(&self, device: &Device) -> FashionBert {
        let c = &self.bert;
        let h = c.hidden_size;
        FashionBert {
            bert: Backbone {
                embeddings: BertEmbeddings::new(c, device),
                image_embeddings: ImageEmbeddings {
                    image_projector: c.linear(self.patch_feature_size, h, false, device),
                    patch_type_embeddings: c.embedding(2, h, device),
                    patch_position_embeddings: c.embedding(self.num_patches, h, device),
                    layer_norm: c.layer_norm(device),
                    input_dropout: DropoutConfig::new(c.hidden_dropout_prob).init(),
                    dropout: DropoutConfig::new(c.hidden_dropout_prob).init(),
                },
                encoder: BertEncoder::new(c, device),
                pooler: Pooler {
                    dense: c.linear(h, h, true, device),
                },
            },
            cls: Heads {
                predictions: MlmHead {
                    transform: Transform {
                        dense: c.linear(h, h, true, device),
                        layer_norm: c.layer_norm(device),
                    },
                    bias: zeros_param(c.vocab_size, device),
                },
                seq_relationship: c.linear(h, 2, true, device),
                img_predictions: c.linear(h, self.patch_feature_size, false, device),
            },
            hidden_act: c.hidden_act.clone(),
        }
    }
}

/// Gathers rows of `seq` `[B, L, H]` at `pos` `[B, K]` → `[B·K, H]`.
fn gather_rows(seq: Tensor<3>, pos: Tensor<2, Int>) -> Tensor<2> {
    let [b, _, h] = seq.dims();
    let [_, k] = pos.dims();
    let idx = pos.reshape([b, k, 1]).expand([b, k, h]);
    seq.gather(1, idx).reshape([b * k, h])
}

impl FashionBert {
    /// The backbone: `[B, T + P, H]` sequence and `[B, H]` pooled output. `masked` chooses
    /// whether masked patches are replaced (training/validation) or not (retrieval scoring).
    pub fn encode(
        &self,
        batch: &Batch,
        masked: Option<&MaskedPatchInput>,
    ) -> (Tensor<3>, Tensor<2>) {
        let bb = &self.bert;
        let text = bb
            .embeddings
            .forward(batch.input_ids.clone(), batch.segment_ids.clone());
        let [b, p, f] = batch.image_feature.dims();
        let device = batch.image_feature.device();
        let mut feats = batch.image_feature.clone();
        if let Some(m) = masked {
            let keep = batch.patch_masked.clone().neg() + 1.0; // [B, P, 1]
            feats = feats * keep;
            if let MaskedPatchInput::ZeroPatch(z) = m {
                let z = Tensor::<1>::from_floats(z.as_slice(), &device).reshape([1, 1, f]);
                feats = feats + batch.patch_masked.clone() * z;
            }
        }
        let ie = &bb.image_embeddings;
        let feats = ie.input_dropout.forward(feats);
        let types = Tensor::<2, Int>::ones([b, p], &device);
        let pos = Tensor::<1, Int>::arange(0..p as i64, &device)
            .reshape([1, p])
            .expand([b, p]);
        let img = ie.image_projector.forward(feats)
            + ie.patch_type_embeddings.forward(types)
            + ie.patch_position_embeddings.forward(pos);
        let img = ie.dropout.forward(ie.layer_norm.forward(img));
        let x = Tensor::cat(vec![text, img], 1);
        let mask = Tensor::cat(vec![batch.input_mask.clone(), batch.image_mask.clone()], 1);
        let seq = bb.encoder.forward(x, mask_bias(mask));
        let pooled = bb.pooler.forward(seq.clone());
        (seq, pooled)
    }

    /// The alignment logits `[B, 2]` of unmasked records: retrieval scoring.
    pub fn align_logits(&self, batch: &Batch) -> Tensor<2> {
        let (_, pooled) = self.encode(batch, None);
        self.cls.seq_relationship.forward(pooled)
    }

    /// Every head, on masked records.
    pub fn forward(&self, batch: &Batch, masked: &MaskedPatchInput) -> Output {
        let (seq, pooled) = self.encode(batch, Some(masked));
        let [_, l, _] = seq.dims();
        let t = batch.input_ids.dims()[1];
        let text = seq.clone().narrow(1, 0, t);
        let image = seq.clone().narrow(1, t, l - t);

        let pr = &self.cls.predictions;
        let x = gather_rows(text, batch.masked_lm_positions.clone());
        let x = act(&self.hidden_act, pr.transform.dense.forward(x));
        let x = pr.transform.layer_norm.forward(x);
        let decoder = self.bert.embeddings.word_embeddings.weight.val(); // [V, H]
        let v = decoder.dims()[0];
        let mlm_logits = x.matmul(decoder.transpose()) + pr.bias.val().reshape([1, v]);

        let tia_logits = self.cls.seq_relationship.forward(pooled.clone());
        let mpm_logits = self
            .cls
            .img_predictions
            .forward(gather_rows(image, batch.masked_patch_positions.clone()));
        Output {
            sequence: seq,
            pooled,
            mlm_logits,
            tia_logits,
            mpm_logits,
        }
    }
}

/// The three losses as the original computes them (see the module docs for the fixes).
pub fn losses(out: &Output, batch: &Batch, weighting: &LossWeighting) -> Losses {
    // MLM: Σ w·CE / (Σ w + 1e-5).
    let logp = log_softmax(out.mlm_logits.clone(), 1);
    let [n, _] = logp.dims();
    let ids = batch.masked_lm_ids.clone().reshape([n, 1]);
    let nll = logp.gather(1, ids).reshape([n]).neg();
    let w = batch.masked_lm_weights.clone().reshape([n]);
    let mlm = (nll * w.clone()).sum() / (w.sum() + 1e-5);

    // Alignment: mean CE, label 1 = matched.
    let logp = log_softmax(out.tia_logits.clone(), 1);
    let [b, _] = logp.dims();
    let tia = logp
        .gather(1, batch.labels.clone().reshape([b, 1]))
        .neg()
        .mean();

    // MPM: KL(softmax(raw feature) ‖ softmax(prediction)), both clipped to [1e-7, 1] as Keras'
    // KLD, averaged over the distinct masked positions.
    let [_, p, f] = batch.image_feature.dims();
    let target = gather_rows(
        batch.image_feature.clone(),
        batch.masked_patch_positions.clone(),
    );
    let t = softmax(target, 1).clamp(1e-7, 1.0);
    let q = softmax(out.mpm_logits.clone(), 1).clamp(1e-7, 1.0);
    let kl = (t.clone() * (t.log() - q.log())).sum_dim(1); // [B·M, 1]
    let [m, _] = kl.dims();
    let pw = batch.masked_patch_weights.clone().reshape([m, 1]);
    let mpm = (kl * pw.clone()).sum() / pw.sum().clamp_min(1e-12);
    let _ = (p, f);

    let g = Tensor::cat(vec![mlm.clone(), tia.clone(), mpm.clone()], 0); // [3]
    let weights = match weighting {
        LossWeighting::Adaptive { detach } => {
            let src = if *detach {
                g.clone().detach()
            } else {
                g.clone()
            };
            let s = softmax(src, 0);
            let inv = (s.powf_scalar(2.0).neg() + 3.0).recip();
            inv.clone() / inv.sum()
        }
        LossWeighting::Fixed(w) => Tensor::<1>::from_floats(w.as_slice(), &g.device()),
    };
    let total = (g * weights.clone()).sum();
    Losses {
        mlm,
        tia,
        mpm,
        weights,
        total,
    }
}
