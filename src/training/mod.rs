//! Pretraining FashionBERT: Adam (β 0.9/0.98, ε 1e-6), linear warm-up then linear decay to 0,
//! global-norm gradient clipping, checkpoints with optimiser state for `--resume`, periodic
//! validation, and a clean stop on a non-finite loss.
//!
//! Reproducible: the record order of each epoch comes from `(seed, epoch)` and the dropout RNG
//! is re-seeded from `(seed, step)` before every step, so a run resumed from a checkpoint
//! computes exactly the steps an uninterrupted run would.

pub mod data;
pub mod schedule;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::featstore;
use crate::models::fashionbert::{
    FashionBert, LossWeighting, MaskedPatchInput, combine, losses, mined_alignment_loss,
};
use crate::progress::Progress;
use data::{HostBatch, Records};

/// Training settings (the `train` stage's params).
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// Stop after this many steps (0 = the full epochs).
    pub max_steps: usize,
    pub lr: f64,
    /// Peak learning rate of the parameters not loaded from a pretrained checkpoint (image
    /// embeddings, heads, ITC projections); `None` = `lr` for every parameter.
    pub lr_new: Option<f64>,
    /// Weight of the contrastive (ITC) loss added to the total (0 = no ITC).
    pub w_itc: f32,
    /// With ITC: the alignment head's negatives are mined from the ITC similarities (one per
    /// matched record, as ALBEF), instead of the records' negatives.
    pub itm_mined: bool,
    pub warmup: f64,
    pub clip_norm: f32,
    pub seed: u64,
    pub weighting: LossWeighting,
    pub masked_input: MaskedPatchInput,
    pub checkpoint_every: usize,
    pub validate_every: usize,
    /// Validation uses at most this many valid records (0 = all).
    pub valid_records: usize,
    /// Read losses back (and check them) every this many steps.
    pub log_every: usize,
    /// Testing aid: return right after step N (0 = never), as if the run had been killed there.
    pub stop_after: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepLog {
    pub step: u64,
    pub epoch: u32,
    pub lr: f64,
    pub loss: f32,
    pub loss_mlm: f32,
    pub loss_tia: f32,
    pub loss_mpm: f32,
    /// The contrastive loss (0 when ITC is off) and its inverse temperature.
    pub loss_itc: f32,
    pub itc_scale: f32,
    pub w_mlm: f32,
    pub w_tia: f32,
    pub w_mpm: f32,
    pub grad_norm: f32,
    pub samples_per_s: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ValidLog {
    pub step: u64,
    pub records: u64,
    pub loss_mlm: f32,
    pub loss_tia: f32,
    pub loss_mpm: f32,
    pub mlm_accuracy: f32,
    pub tia_accuracy: f32,
    /// ITC: mean loss and in-batch image→text top-1 accuracy (0 when ITC is off).
    pub loss_itc: f32,
    pub itc_accuracy: f32,
}

/// Saved next to the checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    step: u64,
    steps: Vec<StepLog>,
    valid: Vec<ValidLog>,
}

pub struct Outcome {
    pub model: FashionBert,
    pub steps: Vec<StepLog>,
    pub valid: Vec<ValidLog>,
    pub total_steps: u64,
    pub seconds: f64,
}

/// Steps per epoch and in total (a partial last batch is dropped, as the original's reader
/// repeats data; every record is still seen in the next epoch's shuffle).
pub fn step_counts(records: usize, cfg: &TrainConfig) -> (usize, usize) {
    let per_epoch = (records / cfg.batch_size.max(1)).max(1);
    let total = per_epoch * cfg.epochs.max(1);
    let total = if cfg.max_steps > 0 {
        total.min(cfg.max_steps)
    } else {
        total
    };
    (per_epoch, total)
}

/// The records of one epoch, in training order: the positives and the epoch's round of
/// negatives (round `epoch % rounds`), shuffled from `(seed, epoch)`.
fn epoch_records(recs: &Records, seed: u64, epoch: usize) -> Vec<usize> {
    let idx = recs.round_indices(epoch % recs.rounds());
    epoch_order(idx.len(), seed, epoch)
        .into_iter()
        .map(|i| idx[i])
        .collect()
}

fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
        seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64),
    );
    let mut v: Vec<usize> = (0..n).collect();
    v.shuffle(&mut rng);
    v
}

// ---- global-norm clipping (tf.clip_by_global_norm), without a host sync -------------------

struct SqNorm<'a> {
    g: &'a GradientsParams,
    seen: HashSet<ParamId>,
    parts: Vec<Tensor<1>>,
}

impl ModuleVisitor for SqNorm<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        if self.seen.insert(p.id) {
            if let Some(g) = self.g.get::<D>(p.id) {
                self.parts.push(g.square().sum());
            }
        }
    }
}

struct Scale<'a> {
    g: &'a mut GradientsParams,
    seen: HashSet<ParamId>,
    coef: Tensor<1>,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        if self.seen.insert(p.id) {
            if let Some(g) = self.g.remove::<D>(p.id) {
                let c = self.coef.clone().reshape([1usize; D]);
                self.g.register::<D>(p.id, g * c);
            }
        }
    }
}

/// Scales all gradients by `min(1, max_norm / ‖g‖)`; returns the global norm (on device).
pub fn clip_global_norm<M: Module>(
    m: &M,
    mut g: GradientsParams,
    max_norm: f32,
) -> (GradientsParams, Tensor<1>) {
    let mut v = SqNorm {
        g: &g,
        seen: HashSet::new(),
        parts: vec![],
    };
    m.visit(&mut v);
    let norm = Tensor::cat(v.parts, 0).sum().sqrt();
    let coef = (norm.clone().add_scalar(1e-6).recip() * max_norm).clamp_max(1.0);
    let mut s = Scale {
        g: &mut g,
        seen: HashSet::new(),
        coef,
    };
    m.visit(&mut s);
    (g, norm)
}

// ---- negatives mined from ITC similarities (ALBEF) ------------------------------------------

/// One unmatched pair per matched record, drawn with probability ∝ softmax of its ITC
/// similarities over the unmatched candidates: even rows get a negative text for their image,
/// odd rows a negative image for their text. Returns (batch rows of the images, ITC rows of the
/// texts). Seeded by `(seed, step)`.
fn mine_negatives(
    sim: &Tensor<2>,
    hb: &HostBatch,
    seed: u64,
    step: usize,
) -> Result<(Vec<i64>, Vec<i64>)> {
    use rand::Rng;
    let n = hb.itc_rows.len();
    let v: Vec<f32> = sim
        .clone()
        .detach()
        .try_into_vec_as::<f32>()
        .map_err(|e| Error::Model(format!("reading ITC similarities: {e:?}")))?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
        seed.wrapping_mul(0x9e37_79b9).wrapping_add(step as u64),
    );
    let (mut imgs, mut txts) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        // Row i of sim (image i → texts) or column i (text i → images).
        let cand: Vec<(usize, f32)> = (0..n)
            .filter(|&j| hb.itc_products[j] != hb.itc_products[i])
            .map(|j| {
                (
                    j,
                    if i % 2 == 0 {
                        v[i * n + j]
                    } else {
                        v[j * n + i]
                    },
                )
            })
            .collect();
        if cand.is_empty() {
            continue;
        }
        let max = cand.iter().map(|c| c.1).fold(f32::MIN, f32::max);
        let w: Vec<f64> = cand.iter().map(|c| ((c.1 - max) as f64).exp()).collect();
        let mut u = rng.random::<f64>() * w.iter().sum::<f64>();
        let mut pick = cand[cand.len() - 1].0;
        for (c, wi) in cand.iter().zip(&w) {
            if u < *wi {
                pick = c.0;
                break;
            }
            u -= wi;
        }
        let (img, txt) = if i % 2 == 0 { (i, pick) } else { (pick, i) };
        imgs.push(hb.itc_rows[img]);
        txts.push(txt as i64);
    }
    Ok((imgs, txts))
}

// ---- separate learning rates for new parameters --------------------------------------------

/// The parameters a pretrained BERT checkpoint does not provide: image embeddings, every head
/// and the ITC and ITM-pair projections (the text backbone — embeddings, encoder, pooler — is pretrained).
fn new_param_ids(model: &FashionBert) -> HashSet<ParamId> {
    struct Ids(HashSet<ParamId>);
    impl ModuleVisitor for Ids {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0.insert(p.id);
        }
    }
    let mut ids = Ids(HashSet::new());
    model.bert.image_embeddings.visit(&mut ids);
    model.cls.visit(&mut ids);
    model.itc.visit(&mut ids);
    model.itm.visit(&mut ids);
    ids.0
}

/// Splits gradients into (pretrained, new) by parameter id.
fn split_grads(
    model: &FashionBert,
    mut grads: GradientsParams,
    new: &HashSet<ParamId>,
) -> (GradientsParams, GradientsParams) {
    struct Split<'a> {
        from: &'a mut GradientsParams,
        to: GradientsParams,
        new: &'a HashSet<ParamId>,
    }
    impl ModuleVisitor for Split<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if self.new.contains(&p.id) {
                if let Some(g) = self.from.remove::<D>(p.id) {
                    self.to.register::<D>(p.id, g);
                }
            }
        }
    }
    let mut s = Split {
        from: &mut grads,
        to: GradientsParams::new(),
        new,
    };
    model.visit(&mut s);
    let new_grads = s.to;
    (grads, new_grads)
}

// ---- the loop -----------------------------------------------------------------------------

fn ckpt_dir(work: &Path) -> PathBuf {
    work.join("checkpoint")
}

/// Runs training. `device` must be an autodiff device.
#[allow(clippy::too_many_arguments)]
pub fn train(
    mut model: FashionBert,
    device: &Device,
    train_recs: &Records,
    valid_recs: &Records,
    store: &featstore::Store,
    cfg: &TrainConfig,
    work: &Path,
    resume: bool,
) -> Result<Outcome> {
    if train_recs.is_empty() {
        return Err(Error::msg("no training records"));
    }
    let (per_epoch, total) = step_counts(train_recs.round_indices(0).len(), cfg);
    let mut optim = AdamConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.98)
        .with_epsilon(1e-6)
        .init();
    let mut state = State {
        step: 0,
        steps: vec![],
        valid: vec![],
    };
    let ck = ckpt_dir(work);
    if resume && ck.join("state.json").is_file() {
        let text = std::fs::read_to_string(ck.join("state.json")).at(&ck)?;
        state = serde_json::from_str(&text).map_err(|e| Error::input(&ck, e.to_string()))?;
        model = model
            .try_load_file(ck.join("model.bpk"))
            .map_err(|e| Error::Model(format!("{}: {e}", ck.display())))?;
        optim = optim
            .load(ck.join("optim.bpk"))
            .map_err(|e| Error::Model(format!("{}: {e}", ck.display())))?;
        crate::progress::println(format!(
            "resuming from the checkpoint at step {} ({})",
            state.step,
            ck.display()
        ));
    } else if resume {
        tracing::warn!(
            "--resume: no checkpoint in {}; starting from step 0",
            ck.display()
        );
    }

    // After any checkpoint is loaded: loading a record can give the parameters its ids.
    let new_params = new_param_ids(&model);
    let bar = Progress::new(total as u64, "steps");
    bar.set_position(state.step);
    let start_step = state.step as usize;
    let t0 = Instant::now();
    let mut last_log = (Instant::now(), start_step);
    let b = cfg.batch_size;
    let p = store.meta.patches;
    let f = store.meta.dim;

    let result: Result<FashionBert> = std::thread::scope(|scope| {
        let mut model = model;
        let (tx, rx) = crossbeam_channel::bounded::<Result<HostBatch>>(2);
        scope.spawn(move || {
            let mut order_epoch = usize::MAX;
            let mut order = Vec::new();
            for step in start_step..total {
                let epoch = step / per_epoch;
                if epoch != order_epoch {
                    order = epoch_records(train_recs, cfg.seed, epoch);
                    order_epoch = epoch;
                }
                let i0 = (step % per_epoch) * b;
                let mut hb = HostBatch::new(train_recs.t, p, f, train_recs.k, train_recs.m);
                hb.with_itc = cfg.w_itc > 0.0;
                let r = order[i0..(i0 + b).min(order.len())]
                    .iter()
                    .try_for_each(|&i| hb.push_record(train_recs, i, store))
                    .map(|_| hb);
                if tx.send(r).is_err() {
                    return;
                }
            }
        });

        let mut pending: Vec<(usize, Tensor<1>, f64)> = Vec::new();
        for (step, hb) in (start_step..total).zip(rx.iter()) {
            let hb = hb?;
            device.seed(cfg.seed.wrapping_mul(7919).wrapping_add(step as u64));
            let batch = hb.to_device(device);
            let out = model.forward(&batch, &cfg.masked_input);
            let mut l = losses(&out, &batch, &cfg.weighting);
            let (total_loss, itc_stats) = match (&batch.itc, cfg.w_itc > 0.0) {
                (Some(itc), true) => {
                    let (li, sim) = model.itc_forward(&batch, itc);
                    if cfg.itm_mined {
                        let (imgs, txts) = mine_negatives(&sim, &hb, cfg.seed, step)?;
                        if !imgs.is_empty() {
                            let n = imgs.len();
                            let mined = model.mined_logits(
                                &batch,
                                itc,
                                Tensor::<1, burn::tensor::Int>::from_data(
                                    burn::tensor::TensorData::new(imgs, [n]),
                                    device,
                                ),
                                Tensor::<1, burn::tensor::Int>::from_data(
                                    burn::tensor::TensorData::new(txts, [n]),
                                    device,
                                ),
                            );
                            let pos = out.tia_logits.clone().select(0, itc.rows.clone());
                            l.tia = mined_alignment_loss(pos, mined);
                            let (w, t) = combine(&l.mlm, &l.tia, &l.mpm, &cfg.weighting);
                            l.weights = w;
                            l.total = t;
                        }
                    }
                    let stats =
                        Tensor::cat(vec![li.clone().detach(), model.itc_scale().detach()], 0);
                    (l.total.clone() + li * cfg.w_itc, stats)
                }
                _ => (l.total.clone(), Tensor::<1>::zeros([2], device)),
            };
            let grads = GradientsParams::from_grads(total_loss.backward(), &model);
            let (grads, norm) = clip_global_norm(&model, grads, cfg.clip_norm);
            let lr = schedule::learning_rate(cfg.lr, cfg.warmup, step, total);
            model = match cfg.lr_new {
                Some(lr_new) => {
                    let (pre, new) = split_grads(&model, grads, &new_params);
                    let lr_n = schedule::learning_rate(lr_new, cfg.warmup, step, total);
                    let model = optim.step(lr, model, pre);
                    optim.step(lr_n, model, new)
                }
                None => optim.step(lr, model, grads),
            };
            let stats = Tensor::cat(
                vec![
                    total_loss.detach(),
                    l.mlm.detach(),
                    l.tia.detach(),
                    l.mpm.detach(),
                    l.weights.detach(),
                    norm,
                    itc_stats,
                ],
                0,
            );
            pending.push((step, stats, lr));
            let done = step + 1;
            if pending.len() >= cfg.log_every.max(1)
                || done == total
                || done % cfg.checkpoint_every.max(1) == 0
            {
                let elapsed = last_log.0.elapsed().as_secs_f64();
                let sps = ((done - last_log.1) * b) as f64 / elapsed.max(1e-9);
                last_log = (Instant::now(), done);
                for (s, stats, lr) in pending.drain(..) {
                    let v: Vec<f32> = stats
                        .try_into_vec_as::<f32>()
                        .map_err(|e| Error::Model(format!("reading losses: {e:?}")))?;
                    if v.iter().any(|x| !x.is_finite()) {
                        return Err(Error::Model(format!(
                            "a loss became non-finite at step {} (total {}, mlm {}, alignment {}, mpm {}, grad norm {}); the last good checkpoint (step {}) is in {} — lower the learning rate and run again with --resume",
                            s + 1,
                            v[0],
                            v[1],
                            v[2],
                            v[3],
                            v[7],
                            state.step,
                            ck.display()
                        )));
                    }
                    let log = StepLog {
                        step: s as u64 + 1,
                        epoch: (s / per_epoch) as u32,
                        lr,
                        loss: v[0],
                        loss_mlm: v[1],
                        loss_tia: v[2],
                        loss_mpm: v[3],
                        loss_itc: v[8],
                        itc_scale: v[9],
                        w_mlm: v[4],
                        w_tia: v[5],
                        w_mpm: v[6],
                        grad_norm: v[7],
                        samples_per_s: sps as f32,
                    };
                    tracing::debug!("step {}: {:?}", log.step, log);
                    bar.set_message(format!(
                        "loss {:.3} (mlm {:.2} tia {:.3} mpm {:.3} itc {:.3})",
                        log.loss, log.loss_mlm, log.loss_tia, log.loss_mpm, log.loss_itc
                    ));
                    state.steps.push(log);
                }
            }
            bar.inc(1);
            if cfg.validate_every > 0
                && (done % cfg.validate_every == 0 || done == total)
                && !valid_recs.is_empty()
            {
                let v = validate(&model.valid(), device, valid_recs, store, cfg, done as u64)?;
                tracing::info!(
                    "step {done}: valid mlm acc {:.3}, alignment acc {:.3}, itc acc {:.3}, losses mlm {:.3} tia {:.3} mpm {:.4} itc {:.3}",
                    v.mlm_accuracy,
                    v.tia_accuracy,
                    v.itc_accuracy,
                    v.loss_mlm,
                    v.loss_tia,
                    v.loss_mpm,
                    v.loss_itc
                );
                state.valid.push(v);
            }
            if cfg.checkpoint_every > 0 && done % cfg.checkpoint_every == 0 && done < total {
                state.step = done as u64;
                save_checkpoint(&model, &optim, &state, &ck)?;
            }
            if cfg.stop_after == done {
                break;
            }
        }
        Ok(model)
    });
    bar.finish();
    let model = result?;
    Ok(Outcome {
        model,
        steps: state.steps,
        valid: state.valid,
        total_steps: total as u64,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

fn save_checkpoint<O: Saveable>(
    model: &FashionBert,
    optim: &O,
    state: &State,
    ck: &Path,
) -> Result<()> {
    let tmp = ck.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).at(&tmp)?;
    model
        .clone()
        .save_file(tmp.join("model.bpk"))
        .map_err(|e| Error::Model(format!("saving checkpoint: {e}")))?;
    optim.save_to(&tmp.join("optim.bpk"))?;
    std::fs::write(tmp.join("state.json"), serde_json::to_vec(state).unwrap()).at(&tmp)?;
    let _ = std::fs::remove_dir_all(ck);
    std::fs::rename(&tmp, ck).at(ck)?;
    tracing::info!("checkpoint at step {} → {}", state.step, ck.display());
    Ok(())
}

/// Saving an optimiser's state (the optimiser types differ in how they expose it).
pub trait Saveable {
    fn save_to(&self, path: &Path) -> Result<()>;
}

impl Saveable for burn::optim::ModuleOptimizer {
    fn save_to(&self, path: &Path) -> Result<()> {
        self.save(path)
            .map_err(|e| Error::Model(format!("saving optimiser state: {e}")))
    }
}

/// Validation on (up to `valid_records`) valid records: losses and accuracies, no dropout.
pub fn validate(
    model: &FashionBert,
    device: &Device,
    recs: &Records,
    store: &featstore::Store,
    cfg: &TrainConfig,
    step: u64,
) -> Result<ValidLog> {
    let device = device.clone().without_autodiff();
    let round0 = recs.round_indices(0);
    let n = if cfg.valid_records > 0 {
        round0.len().min(cfg.valid_records)
    } else {
        round0.len()
    };
    // A fixed, seeded sample: the table lists positives before negatives, so a prefix would not do.
    let mut pick: Vec<usize> = epoch_order(round0.len(), 0x5eed, 0)
        .into_iter()
        .map(|i| round0[i])
        .collect();
    pick.truncate(n);
    pick.sort_unstable();
    let (mut itc_sum, mut itc_hit, mut itc_n, mut itc_batches) = (0f64, 0f64, 0f64, 0f64);
    let (p, f) = (store.meta.patches, store.meta.dim);
    let mut sums = [0f64; 3];
    let (mut mlm_hit, mut mlm_w, mut tia_hit) = (0f64, 0f64, 0f64);
    let mut batches = 0f64;
    for start in (0..n).step_by(cfg.batch_size.max(1)) {
        let end = (start + cfg.batch_size).min(n);
        let mut hb = HostBatch::new(recs.t, p, f, recs.k, recs.m);
        hb.with_itc = cfg.w_itc > 0.0;
        for &i in &pick[start..end] {
            hb.push_record(recs, i, store)?;
        }
        let batch = hb.to_device(&device);
        let out = model.forward(&batch, &cfg.masked_input);
        let l = losses(&out, &batch, &cfg.weighting);
        if let (Some(itc), true) = (&batch.itc, cfg.w_itc > 0.0) {
            let (li, sim) = model.itc_forward(&batch, itc);
            let [nn, _] = sim.dims();
            let targets: Vec<f32> = itc
                .targets
                .clone()
                .try_into_vec_as::<f32>()
                .map_err(|e| Error::Model(format!("{e:?}")))?;
            let best: Vec<i64> = sim
                .argmax(1)
                .try_into_vec_as::<i64>()
                .map_err(|e| Error::Model(format!("{e:?}")))?;
            itc_hit += best
                .iter()
                .enumerate()
                .filter(|&(i, &j)| targets[i * nn + j as usize] > 0.0)
                .count() as f64;
            itc_n += nn as f64;
            itc_sum += li.into_scalar::<f32>() as f64;
            itc_batches += 1.0;
        }
        let v: Vec<f32> = Tensor::cat(vec![l.mlm, l.tia, l.mpm], 0)
            .try_into_vec_as::<f32>()
            .map_err(|e| Error::Model(format!("{e:?}")))?;
        for (s, x) in sums.iter_mut().zip(&v) {
            *s += *x as f64;
        }
        batches += 1.0;
        let pred: Vec<i64> = out
            .mlm_logits
            .argmax(1)
            .try_into_vec_as::<i64>()
            .map_err(|e| Error::Model(format!("{e:?}")))?;
        for (j, &pr) in pred.iter().enumerate() {
            let w = hb.masked_lm_weights[j] as f64;
            mlm_w += w;
            if pr == hb.masked_lm_ids[j] {
                mlm_hit += w;
            }
        }
        let pred: Vec<i64> = out
            .tia_logits
            .argmax(1)
            .try_into_vec_as::<i64>()
            .map_err(|e| Error::Model(format!("{e:?}")))?;
        tia_hit += pred.iter().zip(&hb.labels).filter(|(a, b)| a == b).count() as f64;
    }
    Ok(ValidLog {
        step,
        records: n as u64,
        loss_mlm: (sums[0] / batches) as f32,
        loss_tia: (sums[1] / batches) as f32,
        loss_mpm: (sums[2] / batches) as f32,
        mlm_accuracy: (mlm_hit / mlm_w.max(1e-9)) as f32,
        tia_accuracy: (tia_hit / n.max(1) as f64) as f32,
        loss_itc: (itc_sum / itc_batches.max(1.0)) as f32,
        itc_accuracy: (itc_hit / itc_n.max(1.0)) as f32,
    })
}
