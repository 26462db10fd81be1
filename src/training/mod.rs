//! Pretraining FashionBERT: Adam (β 0.9/0.98, ε 1e-6), linear warm-up then linear decay to 0,
//! global-norm gradient clipping, checkpoints with optimiser state for `--resume`, periodic
//! validation, and a clean stop on a non-finite loss.
//!
//! Reproducible: the record order of each epoch comes from `(seed, epoch)` and the dropout RNG
//! is re-seeded from `(seed, step)` before every step, so a run resumed from a checkpoint
//! computes exactly the steps an uninterrupted run would.

pub mod adam;
pub mod batches;
pub mod data;
mod grads;
mod mining;
pub mod queue;
pub mod schedule;
mod step;
mod validate;

pub use grads::clip_global_norm;
use grads::{new_param_ids, split_grads};
use step::{StepLoss, gradients, step_loss};
pub use validate::validate;

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::featstore;
use crate::models::fashionbert::{FashionBert, LossWeighting, MaskedPatchInput};
use crate::models::fused::{MatmulPrecision, with_matmul_precision};
use crate::progress::Progress;
use data::{HostBatch, Records};
use queue::EmbeddingQueue;

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
    /// The matrix products' precision in the forward and backward passes (bf16: autocast-style,
    /// the parameters and optimiser stay f32; see `models::fused::MatmulPrecision`).
    pub precision: MatmulPrecision,
    /// Run the joint (text + image) pass and its losses (masked LM, alignment, masked patches);
    /// `false` trains the contrastive loss alone on the matched records (needs `w_itc > 0`).
    pub joint: bool,
    /// How an epoch's records are cut into batches (see [`batches`]).
    pub batches: batches::Composition,
    /// Records in the memory of ITC negatives (0 = in-batch negatives only; see [`queue`]).
    pub itc_queue: usize,
    /// Data parallelism: the devices of the model's replicas besides the main one (empty = the
    /// whole batch on one device). Each replica computes a contiguous chunk of every batch; the
    /// loss is the whole batch's (see `step.rs`).
    pub replicas: Vec<Device>,
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
fn epoch_records(recs: &Records, cfg: &TrainConfig, epoch: usize) -> Vec<usize> {
    let idx = recs.epoch_indices(epoch % recs.rounds(), cfg.joint);
    batches::order(
        &idx,
        |i| recs.subcategory[i].clone(),
        cfg.batch_size,
        cfg.batches,
        cfg.seed,
        epoch,
    )
}

fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
        seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64),
    );
    let mut v: Vec<usize> = (0..n).collect();
    v.shuffle(&mut rng);
    v
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
    let devices: Vec<Device> = std::iter::once(device.clone())
        .chain(cfg.replicas.iter().cloned())
        .collect();
    if devices.len() > cfg.batch_size {
        return Err(Error::msg(format!(
            "{} data-parallel replicas need a batch of at least as many records (batch_size = {})",
            devices.len(),
            cfg.batch_size
        )));
    }
    let (per_epoch, total) = step_counts(train_recs.epoch_indices(0, cfg.joint).len(), cfg);
    let mut optim = adam::FastAdam::for_training().init();
    let mut state = State {
        step: 0,
        steps: vec![],
        valid: vec![],
    };
    let ck = ckpt_dir(work);
    let mut queue = EmbeddingQueue::new(cfg.itc_queue);
    if resume && ck.join("state.json").is_file() {
        let text = std::fs::read_to_string(ck.join("state.json")).at(&ck)?;
        state = serde_json::from_str(&text).map_err(|e| Error::input(&ck, e.to_string()))?;
        model = model
            .try_load_file(ck.join("model.bpk"))
            .map_err(|source| Error::Checkpoint {
                path: ck.join("model.bpk"),
                source,
            })?;
        optim = optim
            .load(ck.join("optim.bpk"))
            .map_err(|source| Error::Checkpoint {
                path: ck.join("optim.bpk"),
                source,
            })?;
        if cfg.itc_queue > 0 {
            queue = EmbeddingQueue::load(&ck.join(QUEUE_FILE), cfg.itc_queue, device)?;
        }
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
        if devices.len() > 1 {
            tracing::info!("data parallel: {} replicas", devices.len());
        }
        let (tx, rx) = crossbeam_channel::bounded::<Result<HostBatch>>(2);
        scope.spawn(move || {
            let mut order_epoch = usize::MAX;
            let mut order = Vec::new();
            for step in start_step..total {
                let epoch = step / per_epoch;
                if epoch != order_epoch {
                    order = epoch_records(train_recs, cfg, epoch);
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

        // Owned by this closure: an error below drops the receiver before the scope joins the
        // loader, whose next `send` then fails (no deadlock on a failed step or a full disk).
        let rx = rx;
        let mut pending: Vec<(usize, Tensor<1>, f64)> = Vec::new();
        for (step, hb) in (start_step..total).zip(rx.iter()) {
            let hb = hb?;
            let StepLoss {
                total: total_loss,
                losses: l,
                itc_stats,
                replicas,
                itc_embeddings,
            } = with_matmul_precision(cfg.precision, || {
                step_loss(&model, &devices, &hb, cfg, step, &queue)
            })?;
            if let Some((img, txt)) = itc_embeddings {
                queue.push(img, txt, &hb.itc_products);
            }
            let grads = gradients(total_loss.clone(), &model, &replicas, device);
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
                        .map_err(Error::read_back("losses"))?;
                    if v.iter().any(|x| !x.is_finite()) {
                        return Err(Error::NonFiniteLoss {
                            step: s + 1,
                            total: v[0],
                            mlm: v[1],
                            alignment: v[2],
                            mpm: v[3],
                            grad_norm: v[7],
                            last_good: state.step,
                            checkpoint: ck.clone(),
                        });
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
                save_checkpoint(&model, &optim, &state, &queue, &ck)?;
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

/// The memory of ITC negatives in a checkpoint (where `train.itc_queue > 0`).
const QUEUE_FILE: &str = "queue.bin";

fn save_checkpoint<O: Saveable>(
    model: &FashionBert,
    optim: &O,
    state: &State,
    queue: &EmbeddingQueue,
    ck: &Path,
) -> Result<()> {
    let tmp = ck.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).at(&tmp)?;
    model
        .clone()
        .save_file(tmp.join("model.bpk"))
        .map_err(|source| Error::Checkpoint {
            path: tmp.join("model.bpk"),
            source,
        })?;
    optim.save_to(&tmp.join("optim.bpk"))?;
    queue.save(&tmp.join(QUEUE_FILE))?;
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
        self.save(path).map_err(|source| Error::Checkpoint {
            path: path.to_path_buf(),
            source,
        })
    }
}
