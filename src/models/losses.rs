//! FashionBERT's losses, apart from the model that produces their inputs: the original three —
//! masked LM, text–image alignment, masked patch modelling — as per-record terms
//! ([`loss_terms`], what data-parallel replicas gather) reduced to batch means and combined by
//! the original's adaptive weights or fixed ones ([`LossTerms::reduce`]); the alignment loss on
//! mined negatives; and the in-batch contrastive loss (ITC).
//!
//! Fixed relative to the original: a masked patch listed twice counts once (its weight is
//! 1/multiplicity); the adaptive weights are detached by default.

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Tensor};

use super::batch::{Batch, Output, gather_rows};

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

/// The per-record terms the three losses reduce (see [`losses`]): what data-parallel replicas
/// send to the main device, so the step's loss is the whole batch's.
#[derive(Debug, Clone)]
pub struct LossTerms {
    /// `[B·K]` each masked token slot's cross-entropy and weight (0 for padding slots).
    pub mlm_nll: Tensor<1>,
    pub mlm_weight: Tensor<1>,
    /// `[B, 1]` each record's alignment cross-entropy.
    pub tia_nll: Tensor<2>,
    /// `[B·M, 1]` each masked patch slot's KL divergence and weight.
    pub mpm_kl: Tensor<2>,
    pub mpm_weight: Tensor<2>,
}

impl LossTerms {
    pub fn to_device(self, device: &Device) -> LossTerms {
        LossTerms {
            mlm_nll: self.mlm_nll.to_device(device),
            mlm_weight: self.mlm_weight.to_device(device),
            tia_nll: self.tia_nll.to_device(device),
            mpm_kl: self.mpm_kl.to_device(device),
            mpm_weight: self.mpm_weight.to_device(device),
        }
    }

    /// The terms of several chunks of one batch, in order.
    pub fn cat(parts: Vec<LossTerms>) -> LossTerms {
        fn all<const D: usize>(
            parts: &[LossTerms],
            f: impl Fn(&LossTerms) -> Tensor<D>,
        ) -> Tensor<D> {
            Tensor::cat(parts.iter().map(f).collect(), 0)
        }
        LossTerms {
            mlm_nll: all(&parts, |p| p.mlm_nll.clone()),
            mlm_weight: all(&parts, |p| p.mlm_weight.clone()),
            tia_nll: all(&parts, |p| p.tia_nll.clone()),
            mpm_kl: all(&parts, |p| p.mpm_kl.clone()),
            mpm_weight: all(&parts, |p| p.mpm_weight.clone()),
        }
    }

    /// The three losses as the original computes them, their weights and the total.
    pub fn reduce(self, weighting: &LossWeighting) -> Losses {
        // MLM: Σ w·CE / (Σ w + 1e-5).
        let w = self.mlm_weight;
        let mlm = (self.mlm_nll * w.clone()).sum() / (w.sum() + 1e-5);
        // Alignment: mean CE, label 1 = matched.
        let tia = self.tia_nll.mean();
        // MPM: averaged over the distinct masked positions.
        let pw = self.mpm_weight;
        let mpm = (self.mpm_kl * pw.clone()).sum() / pw.sum().clamp_min(1e-12);
        let (weights, total) = combine(&mlm, &tia, &mpm, weighting);
        Losses {
            mlm,
            tia,
            mpm,
            weights,
            total,
        }
    }
}

/// The per-record loss terms of a forward pass (see [`LossTerms`]).
pub fn loss_terms(out: &Output, batch: &Batch) -> LossTerms {
    let logp = log_softmax(out.mlm_logits.clone(), 1);
    let [n, _] = logp.dims();
    let ids = batch.masked_lm_ids.clone().reshape([n, 1]);
    let mlm_nll = logp.gather(1, ids).reshape([n]).neg();
    let mlm_weight = batch.masked_lm_weights.clone().reshape([n]);

    let logp = log_softmax(out.tia_logits.clone(), 1);
    let [b, _] = logp.dims();
    let tia_nll = logp.gather(1, batch.labels.clone().reshape([b, 1])).neg();

    // KL(softmax(raw feature) ‖ softmax(prediction)), both clipped to [1e-7, 1] as Keras' KLD.
    let target = gather_rows(
        batch.image_feature.clone(),
        batch.masked_patch_positions.clone(),
    );
    let t = softmax(target, 1).clamp(1e-7, 1.0);
    let q = softmax(out.mpm_logits.clone(), 1).clamp(1e-7, 1.0);
    let mpm_kl = (t.clone() * (t.log() - q.log())).sum_dim(1); // [B·M, 1]
    let [m, _] = mpm_kl.dims();
    let mpm_weight = batch.masked_patch_weights.clone().reshape([m, 1]);
    LossTerms {
        mlm_nll,
        mlm_weight,
        tia_nll,
        mpm_kl,
        mpm_weight,
    }
}

/// The three losses as the original computes them (see the module docs for the fixes).
pub fn losses(out: &Output, batch: &Batch, weighting: &LossWeighting) -> Losses {
    loss_terms(out, batch).reduce(weighting)
}

/// The three losses' weights `[3]` and their weighted sum, as `weighting` says.
pub fn combine(
    mlm: &Tensor<1>,
    tia: &Tensor<1>,
    mpm: &Tensor<1>,
    weighting: &LossWeighting,
) -> (Tensor<1>, Tensor<1>) {
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
    (weights, total)
}

/// The alignment loss with negatives mined from ITC (as ALBEF): the matched records' logits
/// `pos` `[N, 2]` (label 1) and the logits of the mined unmatched pairs `neg` `[M, 2]` (label 0),
/// mean cross-entropy over all N + M.
pub fn mined_alignment_loss(pos: Tensor<2>, neg: Tensor<2>) -> Tensor<1> {
    let [n, _] = pos.dims();
    let [m, _] = neg.dims();
    let lp = log_softmax(pos, 1).narrow(1, 1, 1).sum();
    let ln = log_softmax(neg, 1).narrow(1, 0, 1).sum();
    (lp + ln).neg() / (n + m) as f64
}

/// The in-batch contrastive loss (InfoNCE both ways, averaged) of ITC embeddings `image` and
/// `text` (`[N, D]`, row i of each from the same matched pair) at inverse temperature `scale`
/// `[1]`. `targets` `[N, N]` is 1 where image i and text j match (at least the diagonal; also
/// where two pairs share a product, so a duplicate is never pushed away), each direction's
/// target distribution being its row (column) normalised. Returns the loss `[1]` and the
/// image→text similarities `[N, N]` (scaled).
pub fn itc_loss(
    image: Tensor<2>,
    text: Tensor<2>,
    scale: Tensor<1>,
    targets: Tensor<2>,
) -> (Tensor<1>, Tensor<2>) {
    itc_loss_with_memory(image, text, scale, targets, None)
}

/// Extra candidates for [`itc_loss_with_memory`]: a memory's image and text embeddings
/// (`[Q, D]`, detached) and `positives` `[N, Q]`, 1 where entry q is of batch row i's product.
pub struct ItcMemory<'a> {
    pub image: &'a Tensor<2>,
    pub text: &'a Tensor<2>,
    pub positives: &'a Tensor<2>,
}

/// [`itc_loss`] with, where given, a memory's entries as further candidates: image i is
/// ranked against the batch's texts and the memory's texts, text i against the batch's images
/// and the memory's images (XBM / MoCo). An entry of row i's product is a positive (its target
/// mass shared with the batch's positives), never a negative. The similarities returned are
/// the batch's own `[N, N]`.
pub fn itc_loss_with_memory(
    image: Tensor<2>,
    text: Tensor<2>,
    scale: Tensor<1>,
    targets: Tensor<2>,
    memory: Option<ItcMemory>,
) -> (Tensor<1>, Tensor<2>) {
    let scale = scale.reshape([1, 1]);
    let sim = image.clone().matmul(text.clone().transpose()) * scale.clone();
    let (mut l_i2t, mut l_t2i) = (sim.clone(), sim.clone().transpose());
    let (mut t_i2t, mut t_t2i) = (targets.clone(), targets.transpose());
    if let Some(m) = memory {
        l_i2t = Tensor::cat(
            vec![
                l_i2t,
                image.matmul(m.text.clone().transpose()) * scale.clone(),
            ],
            1,
        );
        l_t2i = Tensor::cat(
            vec![l_t2i, text.matmul(m.image.clone().transpose()) * scale],
            1,
        );
        t_i2t = Tensor::cat(vec![t_i2t, m.positives.clone()], 1);
        t_t2i = Tensor::cat(vec![t_t2i, m.positives.clone()], 1);
    }
    let t_i2t = t_i2t.clone() / t_i2t.sum_dim(1);
    let t_t2i = t_t2i.clone() / t_t2i.sum_dim(1);
    let [n, _] = sim.dims();
    let i2t = (log_softmax(l_i2t, 1) * t_i2t).sum().neg() / n as f64;
    let t2i = (log_softmax(l_t2i, 1) * t_t2i).sum().neg() / n as f64;
    ((i2t + t2i) / 2.0, sim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn t2(v: &[f32], cols: usize) -> Tensor<2> {
        Tensor::<2>::from_data(
            TensorData::new(v.to_vec(), [v.len() / cols, cols]),
            &Device::flex(),
        )
    }

    #[test]
    fn itc_with_memory_ranks_against_the_memory_and_keeps_same_product_entries_positive() {
        let eye = t2(&[1., 0., 0., 1.], 2);
        let scale = Tensor::<1>::from_floats([1.0], &Device::flex());
        let targets = eye.clone();
        // One memory entry, of row 0's product: its text is row 0's, its image row 1's.
        let (mi, mt, pos) = (t2(&[0., 1.], 2), t2(&[1., 0.], 2), t2(&[1., 0.], 1));
        let (l, sim) = itc_loss_with_memory(
            eye.clone(),
            eye.clone(),
            scale.clone(),
            targets.clone(),
            Some(ItcMemory {
                image: &mi,
                text: &mt,
                positives: &pos,
            }),
        );
        let e = std::f64::consts::E;
        let (a, b) = ((2.0 * e + 1.0).ln(), (e + 2.0).ln());
        // image→text: row 0 [1, 0 | 1] targets ½,0,½; row 1 [0, 1 | 0] target 1 at 1.
        // text→image: row 0 [1, 0 | 0] targets ½,0,½; row 1 [0, 1 | 1] target 1 at 1.
        let want = ((a - 1.0 + b - 1.0) / 2.0 + (b - 0.5 + a - 1.0) / 2.0) / 2.0;
        let got = l.try_into_vec_as::<f32>().unwrap()[0] as f64;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        assert_eq!(sim.dims(), [2, 2]);
        // Without a memory it is the in-batch loss.
        let (l0, _) = itc_loss(eye.clone(), eye.clone(), scale, targets);
        let got0 = l0.try_into_vec_as::<f32>().unwrap()[0] as f64;
        let want0 = (1.0 + e).ln() - 1.0;
        assert!((got0 - want0).abs() < 1e-5, "{got0} vs {want0}");
    }
}
