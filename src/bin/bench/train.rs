//! The train benchmark: samples/s of full FashionBERT training steps (forward, three losses,
//! backward, global-norm clip, Adam) against `bench/peer.py train`, and the peak memory of a
//! BERT-base step, measured in a child process of its own (`--child-peak`). With
//! `FB_BENCH_PHASES=1` each libtorch step prints its forward, backward, clip and Adam times.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use fashionbert::models::fashionbert::{
    FashionBert, FashionBertConfig, LossWeighting, MaskedPatchInput, losses,
};
use fashionbert::models::fused::{MatmulPrecision, with_matmul_precision};
use fashionbert::training::adam::FastAdam;
use fashionbert::training::clip_global_norm;
use fashionbert::training::data::HostBatch;

use crate::report::Row;
use crate::{Args, peer};

/// The model and batch of the peak-memory row: BERT-base (12×768), batch 32.
const PEAK_CONFIG: &str = "bench/configs/fashionbert-base.json";
const PEAK_BATCH: usize = 32;
/// Untimed steps before the timed ones (as the peer's `--warmup` default).
const WARMUP_STEPS: usize = 2;
/// Learning rate and gradient-norm clip of every step, as the peer's (`--lr`, `clip_grad_norm_`).
const LR: f64 = 1e-4;
const CLIP_NORM: f32 = 1.0;
/// At most this many timed steps for the pure-Rust flex row (it is slow).
const FLEX_STEPS: usize = 3;
/// The random batch's masked text positions are 1, 1 + this, 1 + 2·this, … (after `[CLS]`).
const MLM_STRIDE: usize = 5;
/// Its masked patches are 0, this, 2·this, …
const PATCH_STRIDE: usize = 11;

/// The train rows: libtorch f32, bf16 where asked (`--bf16`), and, on CPU, flex.
pub fn rows(a: &Args) -> Vec<Row> {
    let cfg = model_config(&a.train_config);
    let name = a.model_name();
    let (ours, peer_sps, pr) = alternate(a, &cfg, MatmulPrecision::F32);
    let mut rows = vec![Row::versus(
        format!("train step ({name}, batch {}, {})", a.batch, a.libtorch()),
        ours,
        peer_sps,
        "samples/s",
        format!(
            "median of {} alternating runs each; peer: {} on {}, bf16 {}, fused AdamW {}, compile {}",
            a.rounds,
            pr["torch"].as_str().unwrap_or("torch"),
            pr["device"].as_str().unwrap_or("?"),
            pr["bf16"],
            pr["fused"],
            pr["compile"]
        ),
    )];
    if a.bf16() {
        let (ours, peer, pr) = alternate(a, &cfg, MatmulPrecision::Bf16);
        rows.push(Row::versus(
            format!(
                "train step ({name}, batch {}, {}, bf16 products)",
                a.batch,
                a.libtorch()
            ),
            ours,
            peer,
            "samples/s",
            format!(
                "median of {} alternating runs each; ours: train.precision = \"bf16\" (bf16 operands of every large product; weights, gradients, Adam f32); peer: torch.autocast bf16 on {}",
                a.rounds,
                pr["device"].as_str().unwrap_or("?"),
            ),
        ));
    }
    if !a.cuda() && a.flex {
        let ours = samples_per_s(
            &cfg,
            "flex",
            a.batch,
            a.steps.min(FLEX_STEPS),
            MatmulPrecision::F32,
        );
        rows.push(Row::versus(
            format!("train step ({name}, batch {}, flex: pure Rust)", a.batch),
            ours,
            peer_sps,
            "samples/s",
            String::new(),
        ));
    }
    rows
}

/// `--rounds` runs of the peer and of our step, alternating (peer, ours, peer, ours, …) so
/// that both sides see the same drift of a noisy machine: the median samples/s of ours and of
/// the peer, and the peer's last JSON. Under bf16 the peer runs under `torch.autocast`.
fn alternate(
    a: &Args,
    cfg: &FashionBertConfig,
    precision: MatmulPrecision,
) -> (f64, f64, serde_json::Value) {
    let (batch, steps) = (a.batch.to_string(), a.steps.to_string());
    let mut args = vec![
        "--config",
        a.train_config_arg(),
        "--batch",
        &batch,
        "--steps",
        &steps,
    ];
    if precision == MatmulPrecision::Bf16 {
        args.push("--bf16");
    }
    let (mut ours, mut theirs, mut last) = (vec![], vec![], serde_json::Value::Null);
    for _ in 0..a.rounds.max(1) {
        last = peer::run(a, "train", &args);
        theirs.push(last["samples_per_s"].as_f64().unwrap());
        ours.push(samples_per_s(
            cfg,
            a.tch_kind(),
            a.batch,
            a.steps,
            precision,
        ));
    }
    eprintln!("train ({precision:?}): ours {ours:?}, peer {theirs:?} samples/s");
    (median(ours), median(theirs), last)
}

/// The median (the upper one of an even count).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|x, y| x.total_cmp(y));
    v[v.len() / 2]
}

/// The peak-memory row: runs this binary with `--child-peak`, so the peak is that of one
/// training run alone.
pub fn memory_row(a: &Args) -> Row {
    let mut child = Command::new(std::env::current_exe().unwrap());
    child.args(["--child-peak", "--device", &a.device]);
    let v = peer::last_json_line(child);
    Row::alone(
        format!(
            "peak memory of a BERT-base (12×768) FashionBERT training step, batch {PEAK_BATCH}, {}{}",
            a.libtorch(),
            if a.cuda() { " (host memory)" } else { "" }
        ),
        format!("{:.0}", v["peak_rss_mib"].as_f64().unwrap()),
        "MiB resident (VmHWM)",
        format!(
            "{:.2} samples/s in that run",
            v["samples_per_s"].as_f64().unwrap()
        ),
    )
}

/// `--child-peak`: one timed BERT-base step (after the warm-up), then the peak resident memory
/// and the speed as JSON.
pub fn child_peak(a: &Args) {
    let cfg = model_config(Path::new(PEAK_CONFIG));
    let sps = samples_per_s(&cfg, a.tch_kind(), PEAK_BATCH, 1, MatmulPrecision::F32);
    let peak = fashionbert::dag::runner::peak_rss_mib().unwrap_or(f64::NAN);
    println!("{{\"peak_rss_mib\": {peak}, \"samples_per_s\": {sps}}}");
}

/// The FashionBERT config of a BERT `config.json` (the peer reads the same file), with the
/// tanh GELU the peer uses; the text and patch shapes are the model's defaults.
pub fn model_config(path: &Path) -> FashionBertConfig {
    let mut bert =
        fashionbert::models::io::read_bert_config(path).unwrap_or_else(|e| panic!("{e}"));
    bert.hidden_act = fashionbert::models::bert::Activation::GeluNew;
    FashionBertConfig::new(bert)
}

/// `FB_BENCH_PHASES`: print each phase of a step (after waiting for its result) to stderr.
struct Phases(bool);

impl Phases {
    /// Where on, waits with `sync` and prints the time since `t0`; a new line after Adam's.
    fn lap(&self, name: &str, t0: Instant, sync: impl FnOnce()) {
        if self.0 {
            sync();
            let end = if name == "adam" { "\n" } else { " " };
            eprint!("{name} {:.0} ms{end}", t0.elapsed().as_secs_f64() * 1e3);
        }
    }
}

/// Samples/s of `steps` training steps at batch `b` on device `kind` with matrix products in
/// `precision`, after the warm-up.
fn samples_per_s(
    cfg: &FashionBertConfig,
    kind: &str,
    b: usize,
    steps: usize,
    precision: MatmulPrecision,
) -> f64 {
    let dev = fashionbert::device::select(kind, 0)
        .unwrap_or_else(|e| panic!("{e}"))
        .device
        .autodiff();
    dev.seed(0);
    let mut model = cfg.init(&dev);
    let mut optim = FastAdam::for_training().init();
    let host = random_batch(cfg, b);
    let masked_input = MaskedPatchInput::ZeroPatch(vec![0.1; cfg.patch_feature_size]);
    let weighting = LossWeighting::Adaptive { detach: true };
    let phases = Phases(std::env::var_os("FB_BENCH_PHASES").is_some());
    let mut step = |model: FashionBert| {
        let t = Instant::now();
        let batch = host.to_device(&dev);
        let l = with_matmul_precision(precision, || {
            losses(&model.forward(&batch, &masked_input), &batch, &weighting)
        });
        phases.lap("fwd", t, || {
            let _: f32 = l.total.clone().detach().into_scalar();
        });
        let t = Instant::now();
        let grads = GradientsParams::from_grads(l.total.backward(), &model);
        phases.lap("bwd", t, || {});
        let t = Instant::now();
        let (grads, norm) = clip_global_norm(&model, grads, CLIP_NORM);
        phases.lap("clip", t, || {
            let _: f32 = norm.clone().into_scalar();
        });
        let t = Instant::now();
        let model = optim.step(LR, model, grads);
        phases.lap("adam", t, || {
            let _ = model.cls.seq_relationship.weight.val().into_data();
        });
        let _: f32 = (l.total.detach() + norm * 0.0).into_scalar(); // one sync per step, as training does
        model
    };
    for _ in 0..WARMUP_STEPS {
        model = step(model);
    }
    let t0 = Instant::now();
    for _ in 0..steps {
        model = step(model);
    }
    let secs = t0.elapsed().as_secs_f64();
    let _ = model.num_params();
    (b * steps) as f64 / secs
}

/// A random batch of `b` records in the model's shapes, built as training builds its batches
/// (a [`HostBatch`], moved to the device every step): uniform token ids, features in [0, 4),
/// full text masks, segment 0, masked-LM targets at 1, 6, 11, … (record `r`'s targets are ids
/// `r·k .. (r+1)·k` of the batch), masked patches 0, 11, 22, …, labels 0, 1, 0, 1, …
pub fn random_batch(cfg: &FashionBertConfig, b: usize) -> HostBatch {
    let (t, p, f) = (cfg.text_len, cfg.num_patches, cfg.patch_feature_size);
    let (k, m) = (cfg.masked_text_num, cfg.masked_patch_num);
    assert!(
        1 + (k - 1) * MLM_STRIDE < t && (m - 1) * PATCH_STRIDE < p,
        "the bench's masked positions do not fit {t} tokens and {p} patches"
    );
    let mut rng = 7u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let vocab = cfg.bert.vocab_size as u64;
    let ids: Vec<i32> = (0..b * t).map(|_| (next() % vocab) as i32).collect();
    let feats: Vec<f32> = (0..b * p * f)
        .map(|_| (next() % 1000) as f32 / 250.0)
        .collect();
    let mlm_positions: Vec<i32> = (0..k).map(|j| (1 + j * MLM_STRIDE) as i32).collect();
    let mlm_weights = vec![1.0; k];
    let patch_positions: Vec<i32> = (0..m).map(|j| (j * PATCH_STRIDE) as i32).collect();
    let (mask, segments) = (vec![1; t], vec![0; t]);
    let mut hb = HostBatch::new(t, p, f, k, m);
    for r in 0..b {
        hb.push_with_features(
            &ids[r * t..(r + 1) * t],
            &mask,
            &segments,
            &feats[r * p * f..(r + 1) * p * f],
            Some((&mlm_positions, &ids[r * k..(r + 1) * k], &mlm_weights)),
            Some(&patch_positions),
            (r % 2) as i32,
        );
    }
    hb
}
