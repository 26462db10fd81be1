//! The scoring benchmark: pairs/s of retrieval scoring as `evaluate` runs it (the alignment
//! logits of unmasked records, no autodiff, `evaluate.batch_size` pairs per forward pass, read
//! back to the host) against `bench/peer.py score` (the same model under
//! `torch.inference_mode`).

use std::time::Instant;

use fashionbert::eval::scoring::align_logits;

use crate::report::Row;
use crate::train::{model_config, random_batch};
use crate::{Args, peer};

/// Pairs per forward pass: `evaluate`'s default `batch_size`.
pub const BATCH: usize = 256;
/// Pairs scored in the timed part (after one warm-up batch).
const PAIRS: usize = 1024;

pub fn rows(a: &Args) -> Vec<Row> {
    let cfg = model_config(&a.train_config);
    let pr = peer::run(
        a,
        "score",
        &[
            "--config",
            a.train_config_arg(),
            "--batch",
            &BATCH.to_string(),
            "--pairs",
            &PAIRS.to_string(),
        ],
    );
    let peer_pps = pr["pairs_per_s"].as_f64().unwrap();
    let name = a.model_name();
    let dev = fashionbert::device::select(a.tch_kind(), 0)
        .unwrap_or_else(|e| panic!("{e}"))
        .device;
    dev.seed(0);
    let model = cfg.init(&dev);
    let hb = random_batch(&cfg, BATCH);
    let score = || align_logits(&model, &hb, &dev).unwrap_or_else(|e| panic!("{e}"));
    let _ = score();
    let t0 = Instant::now();
    let mut n = 0;
    while n < PAIRS {
        n += score().len();
    }
    let ours = n as f64 / t0.elapsed().as_secs_f64();
    vec![Row::versus(
        format!(
            "scoring ({name}, ITM logits, batch {BATCH}, {})",
            a.libtorch()
        ),
        ours,
        peer_pps,
        "pairs/s",
        format!(
            "as evaluate: unmasked records, no autodiff; peer: {} under inference_mode",
            pr["torch"].as_str().unwrap_or("torch")
        ),
    )]
}
