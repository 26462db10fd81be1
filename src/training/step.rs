//! The loss and gradients of one training step: on one device, or data parallel over replicas
//! of the model on several devices (`train.replicas`).
//!
//! Data parallel here means: the step's batch is cut into one contiguous chunk of records per
//! replica; chunk r's forward passes (the joint pass, and ITC's text-only and image-only passes)
//! run on replica r's device; what the losses need per record — each masked token's
//! cross-entropy, each record's alignment logits, each masked patch's KL, the ITC embeddings —
//! moves to the main device, and the step's loss is computed there exactly as on one device over
//! the whole batch (the in-batch contrastive loss sees every replica's pairs, as ALBEF's
//! all-gather; the adaptive loss weights see the whole batch's losses). One backward pass runs
//! through every replica's graph; each replica's gradients move to the main device and are
//! summed — the gradient of the whole batch's mean loss, so nothing is divided by the number of
//! replicas. The optimiser steps the main model; the next step forks the replicas from it anew.
//! Without dropout the parameters after a step equal one device's up to float rounding
//! (`tests/training.rs`); with dropout each replica draws its own masks.
//!
//! Kernel launches are asynchronous on CUDA, so the replicas' devices compute at the same time
//! although one thread issues their work.

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::TrainConfig;
use super::data::HostBatch;
use super::mining::mine_negatives;
use super::queue::EmbeddingQueue;
use crate::error::Result;
use crate::models::fashionbert::{
    FashionBert, ItcBatch, LossTerms, Losses, combine, loss_terms, mined_alignment_loss,
};
use crate::models::losses::{ItcMemory, itc_loss_with_memory};

/// A step's loss: the total to differentiate, the three losses with their weights, the ITC
/// loss with its inverse temperature (`[2]`, zeros without ITC), the replicas whose graphs
/// the total spans (for [`gradients`]), and the step's ITC embeddings (image, text; detached)
/// for the memory of negatives.
pub(super) struct StepLoss {
    pub total: Tensor<1>,
    pub losses: Losses,
    pub itc_stats: Tensor<1>,
    pub replicas: Vec<FashionBert>,
    pub itc_embeddings: Option<(Tensor<2>, Tensor<2>)>,
}

/// The contrastive loss of a batch's matched records, with the memory's entries as further
/// candidates where it holds any.
fn itc_with_memory(
    model: &FashionBert,
    img: Tensor<2>,
    txt: Tensor<2>,
    itc: &ItcBatch,
    hb: &HostBatch,
    queue: &EmbeddingQueue,
) -> (Tensor<1>, Tensor<2>) {
    let device = img.device();
    let view = queue.view(&hb.itc_products, &device);
    itc_loss_with_memory(
        img,
        txt,
        model.itc_scale(),
        itc.targets.clone(),
        view.as_ref().map(|v| ItcMemory {
            image: &v.image,
            text: &v.text,
            positives: &v.positives,
        }),
    )
}

/// The dropout seed of replica `r` at `step` (replica 0's is the single-device seed).
fn dropout_seed(seed: u64, step: usize, r: usize) -> u64 {
    seed.wrapping_mul(7919)
        .wrapping_add(step as u64)
        .wrapping_add((r as u64) << 40)
}

/// What the losses need from the forward passes, on the main device.
struct Gathered {
    terms: LossTerms,
    /// `[B, 2]` every record's alignment logits.
    tia_logits: Tensor<2>,
    /// ITC embeddings `[N, D]` of the batch's matched records (image, text), where ITC is on.
    itc: Option<(Tensor<2>, Tensor<2>)>,
}

/// The loss of one step. `model` lives on `devices[0]`; with more devices, replica r is forked
/// to `devices[r]` for this step — after the main model's own passes, so that parameters still
/// waiting for their lazy initialisation are initialised exactly where one device would.
pub(super) fn step_loss(
    model: &FashionBert,
    devices: &[Device],
    hb: &HostBatch,
    cfg: &TrainConfig,
    step: usize,
    queue: &EmbeddingQueue,
) -> Result<StepLoss> {
    let main = &devices[0];
    let with_itc = cfg.w_itc > 0.0;
    if !cfg.joint {
        return contrastive_only(model, main, hb, cfg, step, queue);
    }
    if devices.len() == 1 {
        main.seed(dropout_seed(cfg.seed, step, 0));
        let batch = hb.to_device(main);
        let out = model.forward(&batch, &cfg.masked_input);
        let itc = match (&batch.itc, with_itc) {
            (Some(itc), true) => Some(model.itc_embeddings(&batch.image_feature, itc)),
            _ => None,
        };
        let gathered = Gathered {
            terms: loss_terms(&out, &batch),
            tia_logits: out.tia_logits,
            itc,
        };
        return finish(
            model,
            gathered,
            batch.itc.as_ref(),
            &batch.image_feature,
            hb,
            cfg,
            step,
            vec![],
            queue,
        );
    }

    let chunks = hb.split(devices.len());
    let mut replicas: Vec<FashionBert> = Vec::with_capacity(devices.len() - 1);
    let (mut terms, mut tia, mut imgs, mut txts) = (vec![], vec![], vec![], vec![]);
    for (r, chunk) in chunks.iter().enumerate() {
        let dev = &devices[r];
        if r > 0 {
            replicas.push(model.clone().fork(dev));
        }
        let m = if r == 0 { model } else { &replicas[r - 1] };
        dev.seed(dropout_seed(cfg.seed, step, r));
        let batch = chunk.to_device(dev);
        let out = m.forward(&batch, &cfg.masked_input);
        terms.push(loss_terms(&out, &batch).to_device(main));
        tia.push(out.tia_logits.to_device(main));
        if with_itc {
            // The chunk's batch has its ITC part from two matched records on; one needs its own.
            let single = match batch.itc {
                None => chunk.itc_batch(dev, 1),
                Some(_) => None,
            };
            if let Some(itc) = batch.itc.as_ref().or(single.as_ref()) {
                let (i, t) = m.itc_embeddings(&batch.image_feature, itc);
                imgs.push(i.to_device(main));
                txts.push(t.to_device(main));
            }
        }
    }
    // The whole batch's ITC rows, texts and targets (small), for the loss and the mining.
    let itc = if with_itc {
        hb.itc_batch(main, 2)
    } else {
        None
    };
    let gathered = Gathered {
        terms: LossTerms::cat(terms),
        tia_logits: Tensor::cat(tia, 0),
        itc: itc
            .as_ref()
            .map(|_| (Tensor::cat(imgs, 0), Tensor::cat(txts, 0))),
    };
    // Mining runs its joint passes on the main device and needs the whole batch's images there.
    let images = if cfg.itm_mined && itc.is_some() {
        hb.image_features(main)
    } else {
        Tensor::<3>::zeros([1, 1, 1], main)
    };
    finish(
        model,
        gathered,
        itc.as_ref(),
        &images,
        hb,
        cfg,
        step,
        replicas,
        queue,
    )
}

/// The loss of a step without the joint pass (`train.joint = false`): the text-only and
/// image-only passes and the contrastive loss; the three original losses are reported as 0.
fn contrastive_only(
    model: &FashionBert,
    main: &Device,
    hb: &HostBatch,
    cfg: &TrainConfig,
    step: usize,
    queue: &EmbeddingQueue,
) -> Result<StepLoss> {
    main.seed(dropout_seed(cfg.seed, step, 0));
    let itc = hb.itc_batch(main, 2).ok_or_else(|| {
        crate::error::Error::msg(format!(
            "step {step}: the batch holds fewer than 2 matched records, so there is no contrastive loss; raise train.batch_size"
        ))
    })?;
    let (img, txt) = model.itc_embeddings(&hb.image_features(main), &itc);
    let embeddings = (img.clone().detach(), txt.clone().detach());
    let (li, _) = itc_with_memory(model, img, txt, &itc, hb, queue);
    let zero = Tensor::<1>::zeros([1], main);
    let losses = Losses {
        mlm: zero.clone(),
        tia: zero.clone(),
        mpm: zero.clone(),
        weights: Tensor::<1>::zeros([3], main),
        total: zero,
    };
    let itc_stats = Tensor::cat(vec![li.clone().detach(), model.itc_scale().detach()], 0);
    Ok(StepLoss {
        total: li * cfg.w_itc,
        losses,
        itc_stats,
        replicas: vec![],
        itc_embeddings: Some(embeddings),
    })
}

/// The step's losses from the gathered terms, on the main device: the three losses and their
/// weights, ITC, and the alignment loss on mined negatives where asked.
#[allow(clippy::too_many_arguments)]
fn finish(
    model: &FashionBert,
    g: Gathered,
    itc: Option<&ItcBatch>,
    image_feature: &Tensor<3>,
    hb: &HostBatch,
    cfg: &TrainConfig,
    step: usize,
    replicas: Vec<FashionBert>,
    queue: &EmbeddingQueue,
) -> Result<StepLoss> {
    let mut l = g.terms.reduce(&cfg.weighting);
    let (Some(itc), Some((img, txt))) = (itc, g.itc) else {
        let device = l.total.device();
        return Ok(StepLoss {
            total: l.total.clone(),
            losses: l,
            itc_stats: Tensor::<1>::zeros([2], &device),
            replicas,
            itc_embeddings: None,
        });
    };
    let embeddings = (img.clone().detach(), txt.clone().detach());
    let (li, sim) = itc_with_memory(model, img, txt, itc, hb, queue);
    if cfg.itm_mined {
        let (imgs, txts) = mine_negatives(&sim, hb, cfg.seed, step)?;
        if !imgs.is_empty() {
            let n = imgs.len();
            let device = sim.device();
            let mined = model.mined_logits(
                image_feature,
                itc,
                Tensor::<1, Int>::from_data(TensorData::new(imgs, [n]), &device),
                Tensor::<1, Int>::from_data(TensorData::new(txts, [n]), &device),
            );
            let pos = g.tia_logits.select(0, itc.rows.clone());
            l.tia = mined_alignment_loss(pos, mined);
            let (w, t) = combine(&l.mlm, &l.tia, &l.mpm, &cfg.weighting);
            l.weights = w;
            l.total = t;
        }
    }
    let itc_stats = Tensor::cat(vec![li.clone().detach(), model.itc_scale().detach()], 0);
    Ok(StepLoss {
        total: l.total.clone() + li * cfg.w_itc,
        losses: l,
        itc_stats,
        replicas,
        itc_embeddings: Some(embeddings),
    })
}

/// The gradients of `total` for the main model's parameters: with replicas, each replica's
/// gradients moved to the main device and summed.
pub(super) fn gradients(
    total: Tensor<1>,
    model: &FashionBert,
    replicas: &[FashionBert],
    main: &Device,
) -> GradientsParams {
    let grads = total.backward();
    if replicas.is_empty() {
        return GradientsParams::from_grads(grads, model);
    }
    let mut grads = grads;
    let mut acc = GradientsAccumulator::new();
    acc.accumulate(model, GradientsParams::from_module(&mut grads, model));
    for r in replicas {
        let g = GradientsParams::from_module(&mut grads, r).to_device(main, model);
        acc.accumulate(model, g);
    }
    acc.grads()
}
