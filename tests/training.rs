//! Training on tiny generated records: losses fall, a resumed run equals an uninterrupted one,
//! and a non-finite loss stops the run with an error naming the step.

mod common;

use std::path::Path;

use burn::tensor::Device;
use common::*;
use fashionbert::featstore;
use fashionbert::models::fashionbert::{FashionBertConfig, LossWeighting, MaskedPatchInput};
use fashionbert::models::fused::MatmulPrecision;
use fashionbert::models::io;
use fashionbert::training::{self, TrainConfig, data::Records};

/// The torch RNG is global: tests that train must not run at the same time, or their dropout
/// masks interleave.
static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs the tiny pipeline up to `records` and loads what training needs.
fn prepare(d: &Path) -> (Records, Records, featstore::Store, FashionBertConfig) {
    tiny_pipeline(d, 48, "tch");
    ok(d, &["run", "records"]);
    let recs = d.join("artifacts/records/latest");
    let train = Records::read(&recs.join("train.parquet"), 32, 10, 5).unwrap();
    let valid = Records::read(&recs.join("valid.parquet"), 32, 10, 5).unwrap();
    let store = featstore::Store::open(&d.join("artifacts/features/latest")).unwrap();
    let mut bert = io::read_bert_config(&d.join("bert.json")).unwrap();
    bert.max_position_embeddings = 64;
    let mut cfg = FashionBertConfig::new(bert);
    cfg.text_len = 32;
    (train, valid, store, cfg)
}

fn tcfg(store: &featstore::Store, epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 8,
        max_steps: 0,
        lr: 1e-3,
        lr_new: None,
        w_itc: 0.0,
        itm_mined: false,
        batches: fashionbert::training::batches::Composition::Random,
        itc_queue: 0,
        joint: true,
        warmup: 0.1,
        clip_norm: 1.0,
        seed: 5,
        weighting: LossWeighting::Adaptive { detach: true },
        masked_input: MaskedPatchInput::ZeroPatch(store.zero_patch().to_vec()),
        checkpoint_every: 3,
        validate_every: 0,
        valid_records: 16,
        log_every: 1,
        stop_after: 0,
        precision: MatmulPrecision::F32,
        replicas: vec![],
    }
}

#[allow(deprecated)]
fn device() -> Device {
    Device::libtorch().autodiff()
}

fn weights(m: &fashionbert::models::fashionbert::FashionBert) -> Vec<Vec<f32>> {
    vec![
        m.bert
            .embeddings
            .word_embeddings
            .weight
            .val()
            .try_into_vec_as()
            .unwrap(),
        m.bert.encoder.layer[1]
            .output
            .dense
            .weight
            .val()
            .try_into_vec_as::<f32>()
            .unwrap(),
        m.cls
            .img_predictions
            .weight
            .val()
            .try_into_vec_as::<f32>()
            .unwrap(),
        m.cls
            .predictions
            .bias
            .val()
            .try_into_vec_as::<f32>()
            .unwrap(),
    ]
}

#[test]
fn resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one() {
    let _one_at_a_time = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (train, valid, store, cfg) = prepare(dir.path());
    let dev = device();
    let init = |dev: &Device| {
        dev.seed(1);
        cfg.init(dev)
    };
    let c = tcfg(&store, 2);
    let (_, total) = training::step_counts(train.len(), &c);
    assert!(total >= 6, "need a few steps, have {total}");

    let whole = training::train(
        init(&dev),
        &dev,
        &train,
        &valid,
        &store,
        &c,
        &dir.path().join("w1"),
        false,
    )
    .unwrap();
    // Interrupted right after the checkpoint at step 3, then resumed in a fresh model.
    let mut c2 = c.clone();
    c2.stop_after = 3;
    let w2 = dir.path().join("w2");
    let part = training::train(init(&dev), &dev, &train, &valid, &store, &c2, &w2, false).unwrap();
    assert_eq!(part.steps.len(), 3);
    let dev2 = device();
    let resumed =
        training::train(init(&dev2), &dev2, &train, &valid, &store, &c, &w2, true).unwrap();
    assert_eq!(
        resumed.steps.len(),
        whole.steps.len(),
        "the log continues from the checkpoint"
    );
    let (a, b) = (weights(&whole.model), weights(&resumed.model));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let e = max_abs_diff(x, y);
        assert!(e < 1e-5, "tensor {i}: resumed weights differ by {e}");
    }
    for (x, y) in whole.steps.iter().zip(&resumed.steps) {
        assert!(
            (x.loss - y.loss).abs() < 1e-5,
            "step {}: {} vs {}",
            x.step,
            x.loss,
            y.loss
        );
    }
}

#[test]
fn losses_fall_and_a_nan_stops_the_run_cleanly() {
    let _one_at_a_time = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (train, valid, store, cfg) = prepare(dir.path());
    let dev = device();
    dev.seed(2);
    let mut c = tcfg(&store, 40);
    c.lr = 2e-3;
    c.validate_every = 1000;
    let out = training::train(
        cfg.init(&dev),
        &dev,
        &train,
        &valid,
        &store,
        &c,
        &dir.path().join("w"),
        false,
    )
    .unwrap();
    let n = out.steps.len();
    let mean = |s: &[training::StepLog], f: fn(&training::StepLog) -> f32| {
        s.iter().map(f).sum::<f32>() / s.len() as f32
    };
    let (first, last) = (&out.steps[..20], &out.steps[n - 20..]);
    for (what, f) in [
        (
            "mlm",
            (|s: &training::StepLog| s.loss_mlm) as fn(&training::StepLog) -> f32,
        ),
        ("tia", |s| s.loss_tia),
        ("mpm", |s| s.loss_mpm),
    ] {
        assert!(
            mean(last, f) < mean(first, f),
            "{what} did not fall: {} → {}",
            mean(first, f),
            mean(last, f)
        );
    }
    assert!(out.valid.last().is_some());

    // Poison one image's features: the masked-patch target becomes NaN, the run must stop at
    // the first step that uses it, with an error naming the step, after saving nothing bad.
    let poisoned = dir.path().join("poisoned");
    let mut w = featstore::Writer::create(
        &poisoned,
        featstore::FeatDType::F32,
        store.meta.patches,
        store.meta.dim,
        64,
        serde_json::json!({}),
    )
    .unwrap();
    let bad = train.image_id[train.len() / 2].clone();
    for id in store.ids().cloned().collect::<Vec<_>>() {
        let mut f = store.get(&id).unwrap();
        if id == bad {
            f.iter_mut().for_each(|x| *x = f32::NAN);
        }
        w.push(&id, &f).unwrap();
    }
    w.finish(store.zero_patch()).unwrap();
    let poisoned = featstore::Store::open(&poisoned).unwrap();
    let dev = device();
    let err = training::train(
        cfg.init(&dev),
        &dev,
        &train,
        &valid,
        &poisoned,
        &tcfg(&poisoned, 3),
        &dir.path().join("w3"),
        false,
    )
    .err()
    .expect("a NaN must stop training");
    let msg = err.to_string();
    assert!(msg.contains("non-finite at step"), "{msg}");
    assert!(msg.contains("--resume"), "says how to continue: {msg}");
}

/// With the contrastive loss, ITC-mined negatives and a separate learning rate for the new
/// parameters, a resumed run still equals an uninterrupted one; and the new parameters'
/// learning rate really is theirs (0 leaves them untouched while the backbone trains).
#[test]
fn itc_mined_negatives_and_separate_lrs_resume_exactly() {
    let _one_at_a_time = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (train, valid, store, mut cfg) = prepare(dir.path());
    cfg.itc_dim = 16;
    let dev = device();
    let init = |dev: &Device| {
        dev.seed(1);
        cfg.init(dev)
    };
    let mut c = tcfg(&store, 2);
    c.w_itc = 1.0;
    c.itm_mined = true;
    c.lr_new = Some(5e-3);
    let whole = training::train(
        init(&dev),
        &dev,
        &train,
        &valid,
        &store,
        &c,
        &dir.path().join("w1"),
        false,
    )
    .unwrap();
    assert!(
        whole
            .steps
            .iter()
            .all(|s| s.loss_itc >= 0.0 && s.loss_itc.is_finite())
            && whole.steps.iter().filter(|s| s.loss_itc > 0.0).count() * 2 > whole.steps.len(),
        "the ITC loss is logged (0 where a batch has fewer than two matched records)"
    );
    let mut c2 = c.clone();
    c2.stop_after = 3;
    let w2 = dir.path().join("w2");
    training::train(init(&dev), &dev, &train, &valid, &store, &c2, &w2, false).unwrap();
    let dev2 = device();
    let resumed =
        training::train(init(&dev2), &dev2, &train, &valid, &store, &c, &w2, true).unwrap();
    let (a, b) = (weights(&whole.model), weights(&resumed.model));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let e = max_abs_diff(x, y);
        assert!(e < 1e-5, "tensor {i}: resumed weights differ by {e}");
    }

    // lr_new = 0: the image embeddings, heads and ITC head stay as initialised.
    let mut c3 = c.clone();
    c3.lr_new = Some(0.0);
    let start = init(&dev);
    let before_new: Vec<f32> = start
        .cls
        .seq_relationship
        .weight
        .val()
        .try_into_vec_as()
        .unwrap();
    let before_itc: Vec<f32> = start
        .itc
        .as_ref()
        .unwrap()
        .text_proj
        .weight
        .val()
        .try_into_vec_as()
        .unwrap();
    let before_enc: Vec<f32> = start.bert.encoder.layer[0]
        .attention
        .self_
        .query
        .weight
        .val()
        .try_into_vec_as()
        .unwrap();
    let frozen = training::train(
        start,
        &dev,
        &train,
        &valid,
        &store,
        &c3,
        &dir.path().join("w3"),
        false,
    )
    .unwrap();
    let m = &frozen.model;
    let after_new: Vec<f32> = m
        .cls
        .seq_relationship
        .weight
        .val()
        .try_into_vec_as()
        .unwrap();
    let after_itc: Vec<f32> = m
        .itc
        .as_ref()
        .unwrap()
        .text_proj
        .weight
        .val()
        .try_into_vec_as()
        .unwrap();
    let after_enc: Vec<f32> = m.bert.encoder.layer[0]
        .attention
        .self_
        .query
        .weight
        .val()
        .try_into_vec_as()
        .unwrap();
    assert_eq!(before_new, after_new, "alignment head moved at lr_new = 0");
    assert_eq!(before_itc, after_itc, "ITC head moved at lr_new = 0");
    assert!(
        max_abs_diff(&before_enc, &after_enc) > 1e-6,
        "the encoder must train at lr > 0"
    );
}

/// Data parallel over replicas (here on the one CPU device) computes the whole batch's loss and
/// gradients: without dropout, the same run as one device up to float rounding — also with the
/// contrastive loss, whose in-batch negatives span the replicas, and negatives mined from it.
#[test]
fn data_parallel_replicas_train_as_one_device() {
    let _one_at_a_time = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (train, valid, store, mut cfg) = prepare(dir.path());
    cfg.bert.hidden_dropout_prob = 0.0;
    cfg.bert.attention_probs_dropout_prob = 0.0;
    cfg.itc_dim = 16;
    let dev = device();
    let init = || {
        dev.seed(3);
        cfg.init(&dev)
    };
    let mut c = tcfg(&store, 1);
    c.w_itc = 1.0;
    c.itm_mined = true;
    c.max_steps = 4;
    c.checkpoint_every = 0;
    let run = |c: &TrainConfig, name: &str| {
        training::train(
            init(),
            &dev,
            &train,
            &valid,
            &store,
            c,
            &dir.path().join(name),
            false,
        )
        .unwrap()
    };
    let one = run(&c, "one");
    let differs = |m: &training::Outcome| -> f32 {
        weights(&m.model)
            .iter()
            .zip(&weights(&one.model))
            .map(|(a, b)| max_abs_diff(a, b))
            .fold(0.0, f32::max)
    };
    // The yardstick: a 5 % larger learning rate on one device, a different run.
    let mut lr = c.clone();
    lr.lr *= 1.05;
    let control = differs(&run(&lr, "lr"));
    eprintln!("lr × 1.05 on one device: weights differ by {control:.2e}");
    assert!(control > 1e-4, "the control run hardly differs ({control})");
    // 2 replicas (4 + 4 records) and 3 (3 + 3 + 2).
    for n in [2, 3] {
        let mut cn = c.clone();
        cn.replicas = vec![dev.clone(); n - 1];
        let dp = run(&cn, &format!("dp{n}"));
        assert_eq!(dp.steps.len(), one.steps.len());
        for (x, y) in one.steps.iter().zip(&dp.steps) {
            for (what, a, b) in [
                ("loss", x.loss, y.loss),
                ("mlm", x.loss_mlm, y.loss_mlm),
                ("alignment", x.loss_tia, y.loss_tia),
                ("mpm", x.loss_mpm, y.loss_mpm),
                ("itc", x.loss_itc, y.loss_itc),
                ("grad norm", x.grad_norm, y.grad_norm),
            ] {
                assert!(
                    (a - b).abs() <= 1e-4 * a.abs().max(1.0),
                    "{n} replicas, step {}: {what} {b} vs one device {a}",
                    x.step
                );
            }
        }
        let e = differs(&dp);
        eprintln!("{n} replicas: weights within {e:.2e} of one device's");
        assert!(
            e <= control / 100.0,
            "{n} replicas: weights differ from one device's by {e}, not far below a 5 % learning-rate change ({control})"
        );
    }
}

/// `runtime.replicas` reaches training through the CLI: the `train` stage runs data parallel
/// and says so; too many replicas for the batch is an error that says what to change.
#[test]
fn replicas_from_the_runtime_section() {
    let _one_at_a_time = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tiny_pipeline(d, 48, "tch");
    let out = ok(d, &["run", "train", "--set", "runtime.replicas=2"]);
    assert!(out.contains("data parallel: 2 replicas"), "{out}");
    assert!(d.join("artifacts/train/latest/model.safetensors").is_file());
    let out = run(
        d,
        &[
            "run",
            "train",
            "--set",
            "runtime.replicas=64",
            "--set",
            "train.batch_size=6",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(
            "64 data-parallel replicas need a batch of at least as many records (batch_size = 6)"
        ),
        "{err}"
    );
}

/// `precision: Bf16` trains through the whole loop (step, clip, Adam, checkpoint): its losses
/// follow f32's to bf16 rounding (not equal: the products do round), and its weights stay f32.
#[test]
fn bf16_products_follow_the_f32_losses() {
    let _one_at_a_time = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (train, valid, store, cfg) = prepare(dir.path());
    let dev = device();
    let run = |precision: MatmulPrecision, out: &str| {
        dev.seed(1);
        let mut c = tcfg(&store, 2);
        c.precision = precision;
        training::train(
            cfg.init(&dev),
            &dev,
            &train,
            &valid,
            &store,
            &c,
            &dir.path().join(out),
            false,
        )
        .unwrap()
    };
    let (full, half) = (
        run(MatmulPrecision::F32, "f32"),
        run(MatmulPrecision::Bf16, "bf16"),
    );
    assert_eq!(full.steps.len(), half.steps.len());
    let mut worst = 0f32;
    for (a, b) in full.steps.iter().zip(&half.steps) {
        assert!(b.loss.is_finite());
        worst = worst.max((a.loss - b.loss).abs() / a.loss.abs());
    }
    assert!(
        worst < 2e-2,
        "bf16 losses differ from f32 by up to {worst} (relative)"
    );
    assert!(worst > 0.0, "bf16 products should round");
    let w = half.model.cls.predictions.bias.val();
    assert_eq!(w.dtype(), burn::tensor::DType::F32, "parameters stay f32");
}

/// `joint = false`: steps on the matched records alone (half the records, so half the steps
/// an epoch), the contrastive loss falls, the three joint losses stay 0, and subcategory
/// batches train too.
#[test]
fn contrastive_only_training_steps_on_matched_records_and_learns() {
    let _guard = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (train, valid, store, mut cfg) = prepare(dir.path());
    cfg.itc_dim = 16;
    let dev = device();
    let positives = train.label.iter().filter(|&&l| l == 1).count();
    assert!(positives * 2 <= train.len() + 1 && positives > 8);
    for batches in [
        fashionbert::training::batches::Composition::Random,
        fashionbert::training::batches::Composition::Subcategory,
    ] {
        dev.seed(4);
        let model = cfg.init(&dev);
        let mut c = tcfg(&store, 40);
        c.w_itc = 1.0;
        c.joint = false;
        c.batches = batches;
        c.lr = 3e-3;
        c.checkpoint_every = 0;
        let out = training::train(
            model,
            &dev,
            &train,
            &valid,
            &store,
            &c,
            &dir.path().join(format!("{batches:?}")),
            false,
        )
        .unwrap();
        assert_eq!(
            out.steps.len(),
            positives / 8 * 40,
            "{batches:?}: steps over the matched records only"
        );
        assert!(
            out.steps
                .iter()
                .all(|s| s.loss_mlm == 0.0 && s.loss_tia == 0.0 && s.loss_mpm == 0.0)
        );
        let n = out.steps.len() / 4;
        let mean =
            |s: &[training::StepLog]| s.iter().map(|x| x.loss_itc).sum::<f32>() / s.len() as f32;
        let (first, last) = (
            mean(&out.steps[..n]),
            mean(&out.steps[out.steps.len() - n..]),
        );
        assert!(last < first * 0.9, "{batches:?}: ITC loss {first} → {last}");
    }
}

/// `itc_queue`: a memory of negatives enters the loss (more candidates, a larger loss than the
/// in-batch loss on the same weights) and is saved with the checkpoint, so a resumed run ends
/// with the weights of an uninterrupted one.
#[test]
fn a_memory_of_itc_negatives_learns_and_resumes_exactly() {
    let _guard = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (train, valid, store, mut cfg) = prepare(dir.path());
    cfg.itc_dim = 16;
    let dev = device();
    let init = |dev: &Device| {
        dev.seed(4);
        cfg.init(dev)
    };
    let mut c = tcfg(&store, 40);
    c.w_itc = 1.0;
    c.joint = false;
    c.lr = 3e-3;
    c.itc_queue = 8;
    c.checkpoint_every = 4;
    let run = |c: &TrainConfig, dev: &Device, w: &str, resume: bool| {
        training::train(
            init(dev),
            dev,
            &train,
            &valid,
            &store,
            c,
            &dir.path().join(w),
            resume,
        )
        .unwrap()
    };
    let whole = run(&c, &dev, "q1", false);
    let mut no_queue = c.clone();
    no_queue.itc_queue = 0;
    no_queue.max_steps = 2;
    let plain = run(&no_queue, &dev, "q0", false);
    // The first step sees an empty memory: the same loss and update. The second starts from
    // the same weights and ranks each pair against the first step's records as well: a larger
    // loss. From there the runs part.
    assert_eq!(whole.steps[0].loss_itc, plain.steps[0].loss_itc);
    assert!(
        whole.steps[1].loss_itc > plain.steps[1].loss_itc + 1e-3,
        "{} vs {}",
        whole.steps[1].loss_itc,
        plain.steps[1].loss_itc
    );
    // Whether it helps is measured, not assumed: on the fashion-real proxy a memory of 1,024 at
    // lr 3e-4 / 3e-3 diverged (RESULTS.md), and here the loss does not fall either; the mechanism
    // (candidates, positives, resume) is what this test holds.

    let mut stop = c.clone();
    stop.stop_after = 8;
    run(&stop, &dev, "q2", false);
    assert!(dir.path().join("q2/checkpoint/queue.bin").is_file());
    let dev2 = device();
    let resumed = run(&c, &dev2, "q2", true);
    for (i, (x, y)) in weights(&whole.model)
        .iter()
        .zip(&weights(&resumed.model))
        .enumerate()
    {
        let e = max_abs_diff(x, y);
        assert!(e < 1e-5, "tensor {i}: resumed weights differ by {e}");
    }
}
