//! FashionBERT: BERT over 64 text tokens followed by 64 image-patch tokens, with masked-LM,
//! text–image alignment and masked-patch heads, as EasyTransfer's `ImageBertPretrain`.
//!
//! Tensor names follow EasyTransfer/Hugging Face: `bert.embeddings.*`, `bert.image_embeddings.*`,
//! `bert.encoder.layer.{i}.*`, `bert.pooler.*`, `cls.predictions.*` (decoder tied to the word
//! embeddings), `cls.seq_relationship.*` (label 1 = matched), `cls.img_predictions.weight`.
//!
//! Fixed relative to the original: the image mask is boolean (a position listed twice is masked
//! once, never sign-flipped); the adaptive loss weights are detached by default.
//!
//! Beyond the original (off unless `itc_dim > 0`): an in-batch image–text contrastive head
//! (`itc.*`, as ALBEF/BLIP's ITC). Text-only and image-only passes through the same encoder are
//! mean-pooled, projected to `itc_dim`, L2-normalised and compared by cosine times a learnable
//! inverse temperature; see [`itc_loss`]. And (off unless `itm_pair_dim > 0`) a pair term in
//! the alignment head (`itm.*`, see [`ItmPairHead`]).

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Embedding, LayerNorm, Linear};
use burn::tensor::{Device, Int, Tensor};

use super::batch::gather_rows;
pub use super::batch::{Batch, ItcBatch, MaskedPatchInput, Output};
use super::fused;
pub use super::losses::{
    LossTerms, LossWeighting, Losses, combine, itc_loss, loss_terms, losses, mined_alignment_loss,
};

use super::bert::{
    Activation, BertConfig, BertEmbeddings, BertEncoder, Pooler, mask_bias, zeros_param,
};

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
    /// Width of the contrastive (ITC) projections; 0 = no ITC head (the original model).
    #[config(default = 0)]
    pub itc_dim: usize,
    /// Width of the alignment head's pair term (`itm.*`); 0 = the original head alone (the
    /// pooler's `[CLS]` through `cls.seq_relationship`).
    #[config(default = 0)]
    pub itm_pair_dim: usize,
}

/// A bilinear pair term for the alignment head (beyond the original): the joint pass's text
/// tokens and image tokens are mean-pooled, projected to `itm_pair_dim` each, multiplied
/// elementwise and mapped to 2 logits that add to `cls.seq_relationship`'s. The original head
/// must learn a text×image interaction through the `[CLS]` token's attention, a second-order
/// effect with a long plateau at ln 2 on real data (RESULTS.md); this term gives the head a
/// first-order path to the same interaction, still read from the fused sequence.
#[derive(Module, Debug)]
pub struct ItmPairHead {
    /// H → `itm_pair_dim`, on the mean of the joint pass's text tokens.
    pub text_proj: Linear,
    /// H → `itm_pair_dim`, on the mean of the joint pass's image tokens.
    pub image_proj: Linear,
    /// `itm_pair_dim` → 2, on the elementwise product (label 1 = matched).
    pub classifier: Linear,
}

/// The in-batch contrastive head: one projection per modality and the inverse temperature.
#[derive(Module, Debug)]
pub struct ItcHead {
    /// H → `itc_dim`, applied to the mean of a text-only pass.
    pub text_proj: Linear,
    /// H → `itc_dim`, applied to the mean of an image-only pass.
    pub image_proj: Linear,
    /// `[1]`: log of the inverse temperature (starts at ln(1/0.07), clamped to ≤ ln 100).
    pub logit_scale: Param<Tensor<1>>,
}

/// ITC's inverse temperature is clamped to this (as CLIP).
pub const MAX_LOGIT_SCALE: f32 = 4.605_170_2; // ln 100

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
    /// `layer_norm`'s epsilon, for the fused layer norm.
    #[module(skip)]
    pub layer_norm_eps: f64,
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
    /// `layer_norm`'s epsilon, for the fused layer norm.
    #[module(skip)]
    pub layer_norm_eps: f64,
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
    /// The contrastive head, where the config asks for one (`itc_dim > 0`).
    pub itc: Option<ItcHead>,
    /// The alignment head's pair term, where the config asks for one (`itm_pair_dim > 0`).
    pub itm: Option<ItmPairHead>,
    #[module(skip)]
    pub hidden_act: Activation,
}

impl FashionBertConfig {
    /// The sizes are buildable ([`BertConfig::check_sizes`] and the image side's) and the
    /// parameters, at `bytes_per_param` each (4 to run, 16 to train), fit the machine's memory.
    pub fn check(&self, bytes_per_param: u128) -> Result<(), crate::models::bert::BertConfigError> {
        use crate::models::bert::{check_memory, check_size};
        self.bert.check_sizes()?;
        check_size("patch_feature_size", self.patch_feature_size, 1 << 20)?;
        check_size("num_patches", self.num_patches, 1 << 16)?;
        check_size("text_len", self.text_len, self.bert.max_position_embeddings)?;
        if self.itc_dim > 0 {
            check_size("itc_dim", self.itc_dim, 65_536)?;
        }
        if self.itm_pair_dim > 0 {
            check_size("itm_pair_dim", self.itm_pair_dim, 65_536)?;
        }
        let h = self.bert.hidden_size as u128;
        let extra = (self.patch_feature_size + self.num_patches + 2) as u128 * h
            + self.bert.vocab_size as u128
            + 2 * h * h;
        check_memory(self.bert.parameters() + extra, bytes_per_param)
    }

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
                    layer_norm_eps: c.layer_norm_eps,
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
                        layer_norm_eps: c.layer_norm_eps,
                    },
                    bias: zeros_param(c.vocab_size, device),
                },
                seq_relationship: c.linear(h, 2, true, device),
                img_predictions: c.linear(h, self.patch_feature_size, false, device),
            },
            itc: (self.itc_dim > 0).then(|| ItcHead {
                text_proj: c.linear(h, self.itc_dim, true, device),
                image_proj: c.linear(h, self.itc_dim, true, device),
                logit_scale: Param::from_tensor(Tensor::from_floats(
                    [(1.0f32 / 0.07).ln()],
                    device,
                )),
            }),
            itm: (self.itm_pair_dim > 0).then(|| ItmPairHead {
                text_proj: c.linear(h, self.itm_pair_dim, true, device),
                image_proj: c.linear(h, self.itm_pair_dim, true, device),
                classifier: c.linear(self.itm_pair_dim, 2, true, device),
            }),
            hidden_act: c.hidden_act,
        }
    }
}

/// Mean of `seq` `[B, L, H]` over the positions where `mask` `[B, L]` is 1 → `[B, H]`.
fn masked_mean(seq: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
    let [b, l, h] = seq.dims();
    let m = mask.reshape([b, l, 1]);
    let n = m.clone().sum_dim(1).clamp_min(1.0).reshape([b, 1]);
    (seq * m).sum_dim(1).reshape([b, h]) / n
}

/// Rows scaled to unit L2 norm (ε 1e-12, as `torch.nn.functional.normalize`).
fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let n = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x / n
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
        let [_, _, f] = batch.image_feature.dims();
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
        let img = self.embed_image(feats);
        let x = Tensor::cat(vec![text, img], 1);
        let mask = Tensor::cat(vec![batch.input_mask.clone(), batch.image_mask.clone()], 1);
        let seq = bb.encoder.forward(x, mask_bias(mask));
        let pooled = bb.pooler.forward(seq.clone());
        (seq, pooled)
    }

    /// The image tokens `[B, P, H]` of raw patch features `[B, P, F]` (masking already applied).
    fn embed_image(&self, feats: Tensor<3>) -> Tensor<3> {
        let ie = &self.bert.image_embeddings;
        let [b, p, _] = feats.dims();
        let device = feats.device();
        let feats = fused::dropout(&ie.input_dropout, feats);
        let types = Tensor::<2, Int>::ones([b, p], &device);
        let pos = Tensor::<1, Int>::arange(0..p as i64, &device)
            .reshape([1, p])
            .expand([b, p]);
        let img = fused::dense(&ie.image_projector, feats)
            + ie.patch_type_embeddings.forward(types)
            + ie.patch_position_embeddings.forward(pos);
        fused::dropout(
            &ie.dropout,
            fused::layer_norm(&ie.layer_norm, img, ie.layer_norm_eps),
        )
    }

    fn itc_head(&self) -> &ItcHead {
        self.itc
            .as_ref()
            .expect("ITC used on a model without an ITC head (config itc_dim = 0)")
    }

    /// ITC text embeddings `[B, D]` (L2-normalised) of a text-only pass over unmasked ids.
    pub fn itc_text(
        &self,
        input_ids: Tensor<2, Int>,
        input_mask: Tensor<2>,
        segment_ids: Tensor<2, Int>,
    ) -> Tensor<2> {
        let x = self.bert.embeddings.forward(input_ids, segment_ids);
        let seq = self.bert.encoder.forward(x, mask_bias(input_mask.clone()));
        let pooled = masked_mean(seq, input_mask);
        l2_normalize(self.itc_head().text_proj.forward(pooled))
    }

    /// ITC image embeddings `[B, D]` (L2-normalised) of an image-only pass over unmasked
    /// patch features `[B, P, F]`.
    pub fn itc_image(&self, image_feature: Tensor<3>) -> Tensor<2> {
        let [b, p, _] = image_feature.dims();
        let device = image_feature.device();
        let img = self.embed_image(image_feature);
        let seq = self
            .bert
            .encoder
            .forward(img, mask_bias(Tensor::<2>::ones([b, p], &device)));
        let h = seq.dims()[2];
        l2_normalize(
            self.itc_head()
                .image_proj
                .forward(seq.mean_dim(1).reshape([b, h])),
        )
    }

    /// The inverse temperature `exp(logit_scale)`, clamped, as a `[1]` tensor.
    pub fn itc_scale(&self) -> Tensor<1> {
        self.itc_head()
            .logit_scale
            .val()
            .clamp(0.0, MAX_LOGIT_SCALE)
            .exp()
    }

    /// The ITC embeddings (image, text), `[N, D]` each, of a batch's matched records.
    pub fn itc_embeddings(
        &self,
        image_feature: &Tensor<3>,
        itc: &ItcBatch,
    ) -> (Tensor<2>, Tensor<2>) {
        let img = self.itc_image(image_feature.clone().select(0, itc.rows.clone()));
        let txt = self.itc_text(
            itc.input_ids.clone(),
            itc.input_mask.clone(),
            itc.segment_ids.clone(),
        );
        (img, txt)
    }

    /// The contrastive loss `[1]` of a batch's matched records, and their scaled
    /// image→text similarities `[N, N]`.
    pub fn itc_forward(&self, batch: &Batch, itc: &ItcBatch) -> (Tensor<1>, Tensor<2>) {
        let (img, txt) = self.itc_embeddings(&batch.image_feature, itc);
        itc_loss(img, txt, self.itc_scale(), itc.targets.clone())
    }

    /// The alignment logits `[N, 2]` of the pairs (image row `images[i]` of the batch, matched
    /// text `texts[i]` of the batch's ITC rows): unmasked joint passes, for mined negatives.
    pub fn mined_logits(
        &self,
        image_feature: &Tensor<3>,
        itc: &ItcBatch,
        images: Tensor<1, Int>,
        texts: Tensor<1, Int>,
    ) -> Tensor<2> {
        let n = images.dims()[0];
        let device = image_feature.device();
        let p = image_feature.dims()[1];
        let mined = Batch {
            input_ids: itc.input_ids.clone().select(0, texts.clone()),
            input_mask: itc.input_mask.clone().select(0, texts.clone()),
            segment_ids: itc.segment_ids.clone().select(0, texts),
            image_feature: image_feature.clone().select(0, images),
            image_mask: Tensor::<2>::ones([n, p], &device),
            patch_masked: Tensor::<3>::zeros([n, p, 1], &device),
            masked_patch_positions: Tensor::<2, Int>::zeros([n, 1], &device),
            masked_patch_weights: Tensor::<2>::zeros([n, 1], &device),
            masked_lm_positions: Tensor::<2, Int>::zeros([n, 1], &device),
            masked_lm_ids: Tensor::<2, Int>::zeros([n, 1], &device),
            masked_lm_weights: Tensor::<2>::zeros([n, 1], &device),
            labels: Tensor::<1, Int>::zeros([n], &device),
            itc: None,
        };
        self.align_logits(&mined)
    }

    /// The alignment logits `[B, 2]` of unmasked records: retrieval scoring.
    pub fn align_logits(&self, batch: &Batch) -> Tensor<2> {
        let (seq, pooled) = self.encode(batch, None);
        self.alignment_head(seq, pooled, batch)
    }

    /// The alignment logits `[B, 2]` of a joint pass: `cls.seq_relationship` on the pooler, plus
    /// the pair term where the model has one.
    fn alignment_head(&self, seq: Tensor<3>, pooled: Tensor<2>, batch: &Batch) -> Tensor<2> {
        let logits = self.cls.seq_relationship.forward(pooled);
        let Some(itm) = &self.itm else {
            return logits;
        };
        let [_, l, _] = seq.dims();
        let t = batch.input_ids.dims()[1];
        let text = masked_mean(seq.clone().narrow(1, 0, t), batch.input_mask.clone());
        let image = masked_mean(seq.narrow(1, t, l - t), batch.image_mask.clone());
        let pair = itm.text_proj.forward(text) * itm.image_proj.forward(image);
        logits + itm.classifier.forward(pair)
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
        let x = self
            .hidden_act
            .forward(fused::dense(&pr.transform.dense, x));
        let x = fused::layer_norm(&pr.transform.layer_norm, x, pr.transform.layer_norm_eps);
        let decoder = self.bert.embeddings.word_embeddings.weight.val(); // [V, H]
        let v = decoder.dims()[0];
        let mlm_logits = fused::matmul(x, decoder.transpose()) + pr.bias.val().reshape([1, v]);

        let tia_logits = self.alignment_head(seq.clone(), pooled.clone(), batch);
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
