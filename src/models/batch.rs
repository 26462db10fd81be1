//! What the model reads and writes: a batch of records on the device, its ITC part, what a
//! masked patch looks like, and the outputs of a forward pass (shared by the model and its
//! losses).

use burn::tensor::{Int, Tensor};

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
    /// The matched records' unmasked texts, for the contrastive loss (None when the batch has
    /// fewer than two).
    pub itc: Option<ItcBatch>,
}

/// The matched records of a batch, for ITC.
#[derive(Debug, Clone)]
pub struct ItcBatch {
    /// `[N]` their rows in the batch (their images are `image_feature[rows]`).
    pub rows: Tensor<1, Int>,
    /// `[N, T]` unmasked ids, mask (1/0 floats) and segment ids of their texts.
    pub input_ids: Tensor<2, Int>,
    pub input_mask: Tensor<2>,
    pub segment_ids: Tensor<2, Int>,
    /// `[N, N]` 1 where image i and text j are of the same product.
    pub targets: Tensor<2>,
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

/// Gathers rows of `seq` `[B, L, H]` at `pos` `[B, K]` → `[B·K, H]`.
pub(crate) fn gather_rows(seq: Tensor<3>, pos: Tensor<2, Int>) -> Tensor<2> {
    let [b, _, h] = seq.dims();
    let [_, k] = pos.dims();
    let idx = pos.reshape([b, k, 1]).expand([b, k, h]);
    seq.gather(1, idx).reshape([b * k, h])
}
