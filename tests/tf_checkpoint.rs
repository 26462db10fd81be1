//! TensorFlow checkpoints written by TensorFlow itself (`tests/python/tf_checkpoint.py`, run by
//! the Python of `make venv-tf`: FB_TF_PYTHON): EasyTransfer FashionBERT and Google BERT names
//! and shapes, sharded, with optimizer slots, float16/bfloat16, an outer scope, and one
//! BERT-base-sized checkpoint. What we read must equal what `tf.train.load_checkpoint` reads,
//! bit for bit; FashionBERT's outputs on a converted checkpoint must equal the PyTorch
//! reference's on the same weights; damaged checkpoints must fail saying what is wrong.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use burn::tensor::{Device, Int, Tensor, TensorData};
use common::*;
use fashionbert::models::fashionbert::{Batch, FashionBertConfig, MaskedPatchInput};
use fashionbert::models::io;
use fashionbert::weights::tfckpt::{DType, TfCheckpoint, Values};
use fashionbert::weights::tfload;
use sha2::{Digest, Sha256};

/// TensorFlow's Python (its own venv: tensorflow-cpu must not change the torch venv's packages).
fn tf_python() -> String {
    if let Ok(p) = std::env::var("FB_TF_PYTHON") {
        return p;
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let p = PathBuf::from(home).join(".cache/fashionbert/venv-tf/bin/python");
    assert!(
        p.is_file(),
        "TensorFlow's Python not found: run `make venv-tf` (or set FB_TF_PYTHON)"
    );
    p.to_string_lossy().into_owned()
}

fn tf(args: &[&str]) {
    let out = Command::new(tf_python())
        .arg(script("tf_checkpoint.py"))
        .args(args)
        .output()
        .expect("run TensorFlow's python");
    assert!(
        out.status.success(),
        "tf_checkpoint.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A small FashionBERT (TF-style config: EasyTransfer's keys, `gelu` meaning tanh-GELU).
fn small_config() -> serde_json::Value {
    serde_json::json!({
        "vocab_size": 200, "hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 96, "max_position_embeddings": 64, "type_vocab_size": 2,
        "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02, "patch_feature_size": 32, "max_patch_position_embeddings": 64,
        "num_patches": 64,
    })
}

/// Writes a checkpoint `dir/name` with the config beside it (as `config_name`); returns the
/// prefix, the reference-named weights and the digest file.
fn write_ckpt(
    dir: &Path,
    name: &str,
    config: &serde_json::Value,
    config_name: &str,
    extra: &[&str],
) -> (PathBuf, PathBuf, PathBuf) {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let cfg = d.join(config_name);
    std::fs::write(&cfg, config.to_string()).unwrap();
    let prefix = d.join(if extra.contains(&"google") {
        "bert_model.ckpt"
    } else {
        "model.ckpt-54198"
    });
    let (hf, digest) = (
        dir.join(format!("{name}-hf.safetensors")),
        dir.join(format!("{name}-digest.json")),
    );
    let mut args: Vec<String> = vec![
        "write".into(),
        "--config".into(),
        s(&cfg),
        "--prefix".into(),
        s(&prefix),
    ];
    args.extend(["--hf".into(), s(&hf), "--digest".into(), s(&digest)]);
    args.extend(extra.iter().map(|a| a.to_string()));
    tf(&args.iter().map(String::as_str).collect::<Vec<_>>());
    (prefix, hf, digest)
}

fn sha256_le<T: Copy>(v: &[T], to_bytes: impl Fn(T) -> Vec<u8>) -> String {
    let mut h = Sha256::new();
    for &x in v {
        h.update(to_bytes(x));
    }
    hex::encode(h.finalize())
}

/// Every variable read back equals, bit for bit, what TensorFlow's reader read (its digest).
fn assert_matches_tensorflow(prefix: &Path, digest: &Path) -> usize {
    let want: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(digest).unwrap()).unwrap();
    let ck = TfCheckpoint::open(prefix).unwrap();
    let names: Vec<&str> = ck.variables().map(|(n, _)| n).collect();
    assert_eq!(names, want.keys().map(String::as_str).collect::<Vec<_>>());
    for (name, w) in &want {
        let e = ck.entry(name).unwrap();
        let dtype = match e.dtype {
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::Other(c) => panic!("{name}: dtype {c}"),
        };
        assert_eq!(dtype, w["dtype"], "{name}");
        let (shape, values) = ck.read(name).unwrap();
        assert_eq!(serde_json::json!(shape), w["shape"], "{name}");
        let got = match values {
            Values::F32(v) => sha256_le(&v, |x| x.to_le_bytes().to_vec()),
            Values::I32(v) => sha256_le(&v, |x| (x as i64).to_le_bytes().to_vec()),
            Values::I64(v) => sha256_le(&v, |x| x.to_le_bytes().to_vec()),
        };
        assert_eq!(
            got,
            w["sha256"].as_str().unwrap(),
            "{name} differs from TensorFlow's"
        );
    }
    want.len()
}

#[test]
fn checkpoints_tensorflow_wrote_read_back_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config();
    let variants: [(&str, &[&str]); 4] = [
        (
            "et-sharded-adamw",
            &[
                "--flavor",
                "easytransfer",
                "--shards",
                "2",
                "--slots",
                "adamw",
            ],
        ),
        (
            "et-scoped-adam-f16",
            &[
                "--flavor",
                "easytransfer",
                "--slots",
                "adam",
                "--scope",
                "pretrain/",
                "--dtype",
                "float16",
                "--seed",
                "1",
            ],
        ),
        (
            "google-bf16",
            &["--flavor", "google", "--dtype", "bfloat16", "--seed", "2"],
        ),
        (
            "google-sharded",
            &[
                "--flavor", "google", "--shards", "2", "--slots", "adamw", "--seed", "3",
            ],
        ),
    ];
    for (name, args) in variants {
        let (prefix, _, digest) = write_ckpt(dir.path(), name, &cfg, "config.json", args);
        let n = assert_matches_tensorflow(&prefix, &digest);
        let ck = TfCheckpoint::open(&prefix).unwrap();
        let shards = if args.windows(2).any(|w| w == ["--shards", "2"]) {
            2
        } else {
            1
        };
        assert_eq!(ck.num_shards(), shards, "{name}");
        assert_eq!(ck.files().len(), 1 + shards);
        eprintln!("{name}: {n} variables in {shards} shard(s) equal TensorFlow's");
    }
}

fn batch_from(
    inputs: &std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>,
    device: &Device,
) -> Batch {
    let f2 = |n: &str| {
        let (s, v) = &inputs[n];
        Tensor::<2>::from_data(TensorData::new(v.clone(), [s[0], s[1]]), device)
    };
    let i2 = |n: &str| {
        let (s, v) = &inputs[n];
        let v: Vec<i64> = v.iter().map(|&x| x as i64).collect();
        Tensor::<2, Int>::from_data(TensorData::new(v, [s[0], s[1]]), device)
    };
    let (fs, fv) = &inputs["image_feature"];
    let (ps, pv) = &inputs["masked_patch_positions"];
    let (b, p) = (fs[0], fs[1]);
    let mut masked = vec![0f32; b * p];
    let mut weights = vec![0f32; pv.len()];
    for r in 0..b {
        let row = &pv[r * ps[1]..(r + 1) * ps[1]];
        for (j, &q) in row.iter().enumerate() {
            masked[r * p + q as usize] = 1.0;
            weights[r * ps[1] + j] = 1.0 / row.iter().filter(|&&x| x == q).count() as f32;
        }
    }
    let labels: Vec<i64> = inputs["labels"].1.iter().map(|&x| x as i64).collect();
    Batch {
        input_ids: i2("input_ids"),
        input_mask: f2("input_mask"),
        segment_ids: i2("segment_ids"),
        image_feature: Tensor::<3>::from_data(TensorData::new(fv.clone(), [b, p, fs[2]]), device),
        image_mask: f2("image_mask"),
        patch_masked: Tensor::<3>::from_data(TensorData::new(masked, [b, p, 1]), device),
        masked_patch_positions: i2("masked_patch_positions"),
        masked_patch_weights: Tensor::<2>::from_data(
            TensorData::new(weights, [ps[0], ps[1]]),
            device,
        ),
        masked_lm_positions: i2("masked_lm_positions"),
        masked_lm_ids: i2("masked_lm_ids"),
        masked_lm_weights: f2("masked_lm_weights"),
        labels: Tensor::<1, Int>::from_data(TensorData::new(labels, [b]), device),
        itc: None,
    }
}

/// `fashionbert convert --from tf` on an EasyTransfer checkpoint (two shards, Adam slots,
/// global_step): the folder holds exactly the checkpoint's weights, byte-reproducibly, and
/// FashionBERT's outputs on it equal the PyTorch reference's on the same weights.
#[test]
fn converted_fashionbert_matches_the_pytorch_reference() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = small_config();
    let args = [
        "--flavor",
        "easytransfer",
        "--shards",
        "2",
        "--slots",
        "adamw",
        "--seed",
        "5",
    ];
    let (prefix, hf, digest) = write_ckpt(d, "et", &cfg, "config.json", &args);
    assert_matches_tensorflow(&prefix, &digest);
    let out = d.join("converted");
    let text = ok(
        d,
        &["convert", "--from", "tf", &s(&prefix), "--out", &s(&out)],
    );
    assert!(
        text.contains("EasyTransfer checkpoint, 52 tensors"),
        "{text}"
    );
    assert!(text.contains("global_step 54198"), "{text}");
    let again = d.join("again");
    ok(
        d,
        &[
            "convert",
            "--from",
            "tf",
            &format!("{}.index", prefix.display()),
            "--out",
            &s(&again),
        ],
    );
    assert_eq!(
        std::fs::read(out.join("model.safetensors")).unwrap(),
        std::fs::read(again.join("model.safetensors")).unwrap(),
        "conversion is not byte-reproducible"
    );
    // The same tensors as the Python side's own mapping, bit for bit.
    let ours = load_st(&out.join("model.safetensors"));
    let theirs = load_st(&hf);
    assert_eq!(
        ours.keys().collect::<std::collections::BTreeSet<_>>(),
        theirs.keys().collect::<std::collections::BTreeSet<_>>()
    );
    for (k, (shape, v)) in &theirs {
        assert_eq!(&ours[k].0, shape, "{k}");
        let bits = |x: &[f32]| x.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&ours[k].1), bits(v), "{k}");
    }
    // Outputs against the reference.
    let c = d.join("ref-config.json");
    std::fs::write(&c, cfg.to_string()).unwrap();
    let (inp, o) = (d.join("inputs.st"), d.join("ref-out.st"));
    let r = script("fashionbert_reference.py");
    py(&[
        &r,
        "make-inputs",
        "--config",
        &s(&c),
        "--batch",
        "3",
        "--seed",
        "4",
        "--output",
        &s(&inp),
    ]);
    py(&[
        &r,
        "forward",
        "--config",
        &s(&c),
        "--weights",
        &s(&hf),
        "--inputs",
        &s(&inp),
        "--output",
        &s(&o),
    ]);
    let (inputs, want) = (load_st(&inp), load_st(&o));
    let device = Device::flex();
    let (model, mcfg): (_, FashionBertConfig) = io::load(&out, &device).unwrap();
    assert_eq!(
        mcfg.bert.hidden_act, "gelu_new",
        "TensorFlow's `gelu` is the tanh form"
    );
    let batch = batch_from(&inputs, &device);
    let res = model.forward(&batch, &MaskedPatchInput::ZeroVector);
    let v = |t: Tensor<2>| -> Vec<f32> { t.try_into_vec_as().unwrap() };
    for (what, got) in [
        ("tia_logits", v(res.tia_logits)),
        ("mlm_logits", v(res.mlm_logits)),
        ("mpm_logits", v(res.mpm_logits)),
        ("pooled_output", v(res.pooled)),
    ] {
        let e = max_abs_diff(&got, &want[what].1);
        assert!(
            e < 1e-4,
            "{what}: max abs error {e} against the PyTorch reference"
        );
        eprintln!("{what}: max abs error {e:.2e}");
    }
    // The folder is what `eval-tsv --model` takes: the original's predict mode on eval files
    // in its format (2 images × 3 texts here).
    let mut lines = Vec::new();
    for img in 0..2 {
        let feat: Vec<String> = (0..64 * 32)
            .map(|i| format!("{:.5}", ((i * 7 + img * 13) % 17) as f32 / 9.0))
            .collect();
        for txt in 0..3 {
            let n = 5 + txt;
            let ids: Vec<String> = (0..64)
                .map(|i| match i {
                    0 => "101".into(),
                    i if i == n - 1 => "102".into(),
                    i if i < n => (110 + i + 3 * txt).to_string(),
                    _ => "0".into(),
                })
                .collect();
            let mask: Vec<&str> = (0..64).map(|i| if i < n { "1" } else { "0" }).collect();
            let label = if img == txt { 1 } else { 0 };
            lines.push(format!(
                "{}\t{}\t{}\t{}\t{}\t{label}\ttext {txt}\tt{txt}\ti{img}\t{img}",
                feat.join(","),
                vec!["1"; 64].join(","),
                ids.join(","),
                mask.join(","),
                vec!["0"; 64].join(","),
            ));
        }
    }
    let eval_file = d.join("eval-img2txt.tsv");
    std::fs::write(&eval_file, lines.join("\n") + "\n").unwrap();
    let eval_out = d.join("eval-out");
    ok(
        d,
        &[
            "eval-tsv",
            &s(&eval_file),
            "--model",
            &s(&out),
            "--type",
            "img2txt",
            "--batch",
            "4",
            "--out",
            &s(&eval_out),
        ],
    );
    let pred = std::fs::read_to_string(eval_out.join("eval_img2txt_results.txt")).unwrap();
    assert_eq!(pred.lines().count(), 2, "one line per batch of 4: {pred}");
    assert!(eval_out.join("metrics.json").is_file());
}

/// Google BERT: `convert` writes a Hugging Face BERT folder without the next-sentence head, and
/// `train.init`'s loader puts the same backbone and MLM head into a FashionBERT, leaving the
/// image side and the alignment head random.
#[test]
fn google_bert_converts_and_initialises_fashionbert() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut cfg = small_config();
    for k in [
        "patch_feature_size",
        "max_patch_position_embeddings",
        "num_patches",
    ] {
        cfg.as_object_mut().unwrap().remove(k);
    }
    let args = ["--flavor", "google", "--slots", "adamw", "--seed", "7"];
    let (prefix, hf, _) = write_ckpt(d, "google", &cfg, "bert_config.json", &args);
    let out = d.join("bert");
    let text = ok(
        d,
        &["convert", "--from", "tf", &s(&prefix), "--out", &s(&out)],
    );
    assert!(text.contains("GoogleBert checkpoint"), "{text}");
    assert!(
        text.contains("not loaded: cls/seq_relationship/output_weights (next-sentence head"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(json["hidden_act"], "gelu_new");
    let ours = load_st(&out.join("model.safetensors"));
    let theirs = load_st(&hf);
    for (k, (_, v)) in &theirs {
        if k.starts_with("cls.seq_relationship") {
            assert!(!ours.contains_key(k), "{k} written");
        } else {
            assert_eq!(&ours[k].1, v, "{k}");
        }
    }
    assert_eq!(ours.len(), theirs.len() - 2);
    // Without a config beside it, the sizes come from the shapes, with 64-wide heads: hidden
    // 48 gives no head count, so the error says to pass the config.
    let moved = d.join("elsewhere.json");
    std::fs::rename(prefix.with_file_name("bert_config.json"), &moved).unwrap();
    let out2 = d.join("bert2");
    let res = run(
        d,
        &["convert", "--from", "tf", &s(&prefix), "--out", &s(&out2)],
    );
    let text =
        String::from_utf8_lossy(&res.stdout).to_string() + &String::from_utf8_lossy(&res.stderr);
    assert!(
        !res.status.success() && text.contains("pass the config with --config"),
        "{text}"
    );
    ok(
        d,
        &[
            "convert",
            "--from",
            "tf",
            &s(&prefix),
            "--config",
            &s(&moved),
            "--out",
            &s(&out2),
        ],
    );
    assert_eq!(
        std::fs::read(out.join("model.safetensors")).unwrap(),
        std::fs::read(out2.join("model.safetensors")).unwrap()
    );
    std::fs::rename(&moved, prefix.with_file_name("bert_config.json")).unwrap();

    // Initialise a FashionBERT both ways: from the checkpoint, from the converted folder.
    let bert = io::read_bert_config(&out.join("config.json")).unwrap();
    let mut fcfg = FashionBertConfig::new(bert);
    fcfg.patch_feature_size = 32;
    let device = Device::flex();
    device.seed(1);
    let mut a = fcfg.init(&device);
    let report = tfload::init_from_tf(&mut a, &fcfg, &prefix).unwrap();
    assert_eq!(report.loaded, theirs.len() - 2);
    assert!(
        report
            .random
            .contains(&"bert.image_embeddings.image_projector.weight".to_string())
    );
    assert!(
        report
            .random
            .contains(&"cls.seq_relationship.weight".to_string())
    );
    assert!(
        report
            .unused
            .iter()
            .any(|u| u.contains("training state not loaded")),
        "{:?}",
        report.unused
    );
    device.seed(1);
    let mut b = fcfg.init(&device);
    io::init_from_bert(&mut b, &out.join("model.safetensors")).unwrap();
    let (sa, sb) = (d.join("a"), d.join("b"));
    io::save(&a, &fcfg, &sa).unwrap();
    io::save(&b, &fcfg, &sb).unwrap();
    let (ta, tb) = (
        load_st(&sa.join("model.safetensors")),
        load_st(&sb.join("model.safetensors")),
    );
    for (k, (_, v)) in &theirs {
        if k.starts_with("cls.seq_relationship") {
            assert_ne!(
                &ta[k].1, v,
                "{k}: the NSP head must not become the alignment head"
            );
        } else {
            assert_eq!(&ta[k].1, v, "{k}");
            assert_eq!(&tb[k].1, v, "{k}");
        }
    }
}

/// A corrupted data shard, a truncated index, a missing shard and a config of the wrong size
/// each stop `convert` with an error that says what is wrong and where.
#[test]
fn damaged_checkpoints_fail_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = ["--flavor", "easytransfer", "--shards", "2", "--seed", "9"];
    let (prefix, _, _) = write_ckpt(d, "et", &small_config(), "config.json", &args);
    let fail = |what: &str, want: &[&str]| {
        let out = run(
            d,
            &[
                "convert",
                "--from",
                "tf",
                &s(&prefix),
                "--out",
                &s(&d.join("out")),
            ],
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{what}: convert succeeded");
        for w in want {
            assert!(text.contains(w), "{what}: no `{w}` in:\n{text}");
        }
        eprintln!("{what}: {}", text.trim());
    };
    let shard1 = PathBuf::from(format!("{}.data-00001-of-00002", prefix.display()));
    let index = PathBuf::from(format!("{}.index", prefix.display()));
    // Corrupted: one bit of a tensor in shard 1.
    let (name, off) = {
        let ck = TfCheckpoint::open(&prefix).unwrap();
        let (n, e) = ck
            .variables()
            .find(|(_, e)| e.shard == 1 && e.size > 8)
            .unwrap();
        (n.to_string(), e.offset)
    };
    let good = std::fs::read(&shard1).unwrap();
    let mut bad = good.clone();
    bad[off as usize + 3] ^= 0x10;
    std::fs::write(&shard1, &bad).unwrap();
    fail(
        "corrupted shard",
        &["data-00001-of-00002", &name, "crc32c", "corrupted"],
    );
    std::fs::write(&shard1, &good).unwrap();
    // Truncated index.
    let idx = std::fs::read(&index).unwrap();
    std::fs::write(&index, &idx[..idx.len() / 2]).unwrap();
    fail(
        "truncated index",
        &[".index", "not a TensorFlow checkpoint index"],
    );
    std::fs::write(&index, &idx).unwrap();
    // Missing shard.
    std::fs::remove_file(&shard1).unwrap();
    fail(
        "missing shard",
        &["data shard 1 of 2 is missing", "data-00001-of-00002"],
    );
    std::fs::write(&shard1, &good).unwrap();
    // A config of another size: the variables that do not fit are named.
    let mut cfg = small_config();
    cfg["hidden_size"] = 64.into();
    std::fs::write(
        prefix.parent().unwrap().join("config.json"),
        cfg.to_string(),
    )
    .unwrap();
    fail(
        "wrong config",
        &[
            "wrong shapes",
            "bert/embeddings/word_embeddings is [200, 48], the model needs [200, 64]",
        ],
    );
    std::fs::write(
        prefix.parent().unwrap().join("config.json"),
        small_config().to_string(),
    )
    .unwrap();
    ok(
        d,
        &[
            "convert",
            "--from",
            "tf",
            &s(&prefix),
            "--out",
            &s(&d.join("out")),
        ],
    );
}

/// A BERT-base-sized Google checkpoint (12 × 768, vocabulary 30522, 440 MB): every tensor
/// equals TensorFlow's, and reading it (crc32c checked, converted to f32) takes about as long
/// as reading its bytes.
#[test]
fn bert_base_checkpoint_loads_about_as_fast_as_reading_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = serde_json::json!({
        "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
        "intermediate_size": 3072, "max_position_embeddings": 512, "type_vocab_size": 2,
        "hidden_act": "gelu", "initializer_range": 0.02,
    });
    let t = Instant::now();
    let (prefix, _, digest) =
        write_ckpt(d, "base", &cfg, "bert_config.json", &["--flavor", "google"]);
    eprintln!(
        "TensorFlow wrote the BERT-base checkpoint in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let files = TfCheckpoint::open(&prefix).unwrap().files();
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    let best = |f: &mut dyn FnMut()| {
        (0..3)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    // Reading the bytes: into one buffer, allocated beforehand.
    let mut buf = vec![0u8; bytes as usize];
    let read_bytes = best(&mut || {
        use std::io::Read;
        let mut at = 0;
        for f in &files {
            let mut file = std::fs::File::open(f).unwrap();
            let n = std::fs::metadata(f).unwrap().len() as usize;
            file.read_exact(&mut buf[at..at + n]).unwrap();
            at += n;
        }
        std::hint::black_box(&buf);
    });
    let load = best(&mut || {
        let ck = TfCheckpoint::open(&prefix).unwrap();
        let names: Vec<String> = ck.variables().map(|(n, _)| n.to_string()).collect();
        for n in names {
            std::hint::black_box(ck.read_f32(&n).unwrap());
        }
    });
    let mb = bytes as f64 / 1e6;
    eprintln!(
        "BERT-base checkpoint, {mb:.0} MB: reading its bytes {read_bytes:.3}s ({:.0} MB/s); opening and reading every tensor (crc32c checked, as f32) {load:.3}s ({:.0} MB/s), {:.2}× the bytes' time",
        mb / read_bytes,
        mb / load,
        load / read_bytes
    );
    assert!(
        load < 4.0 * read_bytes + 1.0,
        "loading took {load:.2}s, reading the bytes {read_bytes:.2}s"
    );
    assert_eq!(
        assert_matches_tensorflow(&prefix, &digest),
        5 + 12 * 16 + 2 + 5 + 2
    );
    // Into a FashionBERT (train.init's path): every backbone tensor, and how long it takes.
    let (fcfg, _) = tfload::Source::open(&prefix)
        .unwrap()
        .model_config(None)
        .unwrap();
    let device = Device::flex();
    let mut model = fcfg.init(&device);
    let t = Instant::now();
    let report = tfload::init_from_tf(&mut model, &fcfg, &prefix).unwrap();
    eprintln!(
        "into a BERT-base FashionBERT (train.init): {} tensors in {:.2}s",
        report.loaded,
        t.elapsed().as_secs_f64()
    );
    assert_eq!(report.loaded, 5 + 12 * 16 + 2 + 5);
}

/// `train.init` takes a TensorFlow checkpoint prefix: the run loads it (its optimizer state
/// not), and the `.index` and every data shard are part of the train entry's key.
#[test]
fn train_init_takes_a_tf_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tiny_pipeline(d, 24, "flex");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("bert.json")).unwrap()).unwrap();
    cfg["hidden_act"] = "gelu".into();
    let args = [
        "--flavor", "google", "--shards", "2", "--slots", "adamw", "--seed", "11",
    ];
    let (prefix, _, _) = write_ckpt(d, "tfbert", &cfg, "bert_config.json", &args);
    let init = "train.init=tfbert/bert_model.ckpt";
    let sets = [
        "--set",
        init,
        "--set",
        "train.max_steps=2",
        "--set",
        "train.config=tfbert/bert_config.json",
    ];
    let run_out = ok(d, &[&["run", "train"][..], &sets].concat());
    assert!(
        stages_run(&run_out).contains(&"train".to_string()),
        "{run_out}"
    );
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.join("artifacts/train/latest/summary.json")).unwrap(),
    )
    .unwrap();
    let init_report = &summary["init"];
    // Embeddings 5, 2 layers × 16, pooler 2, MLM head 5; not the next-sentence head.
    assert_eq!(init_report["loaded"], 5 + 2 * 16 + 2 + 5, "{init_report}");
    let unused = init_report["unused"].to_string();
    assert!(
        unused.contains("cls/seq_relationship/output_weights"),
        "{unused}"
    );
    assert!(unused.contains("training state not loaded"), "{unused}");
    let status = ok(d, &[&["status", "--json"][..], &sets].concat());
    let train_state = |status: &str| -> String {
        let plan: serde_json::Value = serde_json::from_str(status).unwrap();
        plan.as_array()
            .unwrap()
            .iter()
            .find(|s| s["stage"] == "train")
            .unwrap()["state"]
            .to_string()
    };
    assert!(train_state(&status).contains("cached"), "{status}");
    // Another checkpoint at the same prefix (new values in the data shards): train is stale.
    write_ckpt(
        d,
        "tfbert",
        &cfg,
        "bert_config.json",
        &["--flavor", "google", "--shards", "2", "--seed", "12"],
    );
    assert!(prefix.with_extension("ckpt.data-00001-of-00002").is_file());
    let status = ok(d, &[&["status", "--json"][..], &sets].concat());
    assert!(!train_state(&status).contains("cached"), "{status}");
}

/// `eval-tsv --model` takes EasyTransfer's checkpoint itself (the original's predict mode): its
/// prediction file and metrics equal, byte for byte, those of the folder `convert` writes from
/// the same checkpoint; a Google BERT checkpoint (no image side) is refused saying why.
#[test]
fn eval_tsv_scores_with_an_easytransfer_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tiny_pipeline(d, 24, "tch");
    // Text fields of 64 tokens, as EasyTransfer's eval files have.
    let toml = d.join("pipeline.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    assert!(text.contains("max_len = 32"));
    std::fs::write(&toml, text.replace("max_len = 32", "max_len = 64")).unwrap();
    ok(d, &["run"]);
    ok(
        d,
        &["export-tsv", "--split", "eval-img2txt", "--out", "evaltsv"],
    );
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("bert.json")).unwrap()).unwrap();
    cfg["hidden_act"] = "gelu".into();
    cfg["patch_feature_size"] = 2048.into();
    cfg["max_patch_position_embeddings"] = 64.into();
    cfg["num_patches"] = 64.into();
    let (prefix, _, _) = write_ckpt(
        d,
        "et",
        &cfg,
        "config.json",
        &["--flavor", "easytransfer", "--seed", "5", "--slots", "adam"],
    );
    ok(
        d,
        &["convert", "--from", "tf", &s(&prefix), "--out", "et-folder"],
    );
    let score = |model: &str, out: &str| {
        run(
            d,
            &[
                "eval-tsv",
                "evaltsv/eval-img2txt.list_csv",
                "--model",
                model,
                "--type",
                "img2txt",
                "--out",
                out,
                "--device",
                "tch",
            ],
        )
    };
    for (model, out) in [
        (s(&prefix), "out-ckpt"),
        ("et-folder".to_string(), "out-folder"),
    ] {
        let o = score(&model, out);
        assert!(
            o.status.success(),
            "eval-tsv --model {model}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let read = |p: &str| std::fs::read(d.join(p)).unwrap();
    let pred = read("out-ckpt/eval_img2txt_results.txt");
    assert!(!pred.is_empty());
    assert_eq!(pred, read("out-folder/eval_img2txt_results.txt"));
    let metrics = |p: &str| -> serde_json::Value {
        serde_json::from_slice::<serde_json::Value>(&read(p)).unwrap()["img2txt"].clone()
    };
    let m = metrics("out-ckpt/metrics.json");
    assert!(m["rank@1"].is_number(), "{m}");
    assert_eq!(m, metrics("out-folder/metrics.json"));
    // Google's BERT has no image side: refused, saying what to do.
    let (google, _, _) = write_ckpt(d, "g", &cfg, "bert_config.json", &["--flavor", "google"]);
    let o = score(&s(&google), "out-google");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("Google BERT") && err.contains("train.init"),
        "{err}"
    );
}
