//! Validation during training: losses and accuracies on a fixed, seeded sample of valid
//! records, without dropout.

use burn::tensor::{Device, Tensor};

use super::data::{HostBatch, Records};
use super::{TrainConfig, ValidLog, epoch_order};
use crate::error::{Error, Result};
use crate::featstore;
use crate::models::fashionbert::{FashionBert, losses};

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
                .map_err(Error::read_back("ITC targets"))?;
            let best: Vec<i64> = sim
                .argmax(1)
                .try_into_vec_as::<i64>()
                .map_err(Error::read_back("ITC predictions"))?;
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
            .map_err(Error::read_back("validation losses"))?;
        for (s, x) in sums.iter_mut().zip(&v) {
            *s += *x as f64;
        }
        batches += 1.0;
        let pred: Vec<i64> = out
            .mlm_logits
            .argmax(1)
            .try_into_vec_as::<i64>()
            .map_err(Error::read_back("MLM predictions"))?;
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
            .map_err(Error::read_back("alignment predictions"))?;
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
