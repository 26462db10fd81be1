//! Helpers shared by the integration tests: a tiny vocabulary and model config, a pipeline in a
//! temporary directory, and running the CLI.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fashionbert")
}

/// The Python with torch, transformers and the other reference packages (set by the Makefile).
pub fn python() -> String {
    std::env::var("FB_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/data/fashion-real` (the project's 10,000 real products, read in place). Absent, the
/// test fails, unless `FB_SKIP_REAL_DATA=1` asks for an explicit, reported skip (`.ci/run` sets it,
/// and says so, on a machine without the data).
pub fn fashion_real() -> Option<PathBuf> {
    let p = root().join("../shared/data/fashion-real");
    if p.join("products.csv").is_file() {
        return Some(p);
    }
    if std::env::var("FB_SKIP_REAL_DATA").is_ok_and(|v| v == "1") {
        eprintln!("SKIP (FB_SKIP_REAL_DATA=1): {} is absent", p.display());
        return None;
    }
    panic!(
        "{} is absent: this test reads the project's real products; set FB_SKIP_REAL_DATA=1 to skip the real-data tests explicitly",
        p.display()
    )
}

/// The real weights fetched by `make weights` (`make test` fetches them first): absent, the
/// test fails saying what to run.
pub fn weights_dir() -> PathBuf {
    let w = root().join("weights");
    assert!(
        w.join("minilm/vocab.txt").is_file()
            && w.join("resnet50-imagenet-v1.safetensors").is_file(),
        "the real weights are absent from {}: run `make weights` (or `make test`, which fetches them)",
        w.display()
    );
    w
}

pub fn run(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run fashionbert");
    out
}

/// Runs and asserts success; returns stderr + stdout.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    succeeded(run(dir, args), &format!("fashionbert {args:?}"))
}

/// Asserts that the process `what` succeeded; returns its stderr + stdout.
pub fn succeeded(out: Output, what: &str) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

/// A WordPiece vocabulary in the bert-base-uncased layout (specials at their ids) holding
/// single characters and `##` continuations, so any English text tokenises without [UNK].
pub fn write_tiny_vocab(path: &Path) -> usize {
    let mut v: Vec<String> = vec!["[PAD]".into()];
    for i in 1..100 {
        v.push(format!("[unused{i}]"));
    }
    for s in ["[UNK]", "[CLS]", "[SEP]", "[MASK]"] {
        v.push(s.into());
    }
    while v.len() < 999 {
        v.push(format!("[unused{}]", v.len()));
    }
    let chars: Vec<char> = "abcdefghijklmnopqrstuvwxyz0123456789.,-&'!?()/%:;\""
        .chars()
        .collect();
    for c in &chars {
        v.push(c.to_string());
    }
    for c in &chars {
        v.push(format!("##{c}"));
    }
    for w in [
        "the", "in", "with", "and", "at", "##s", "shirt", "black", "white", "navy", "red",
        "stripes",
    ] {
        v.push(w.into());
    }
    std::fs::write(path, v.join("\n") + "\n").unwrap();
    v.len()
}

/// A Hugging Face style BERT config for a tiny model.
pub fn write_tiny_bert_config(path: &Path, vocab: usize) {
    let cfg = serde_json::json!({
        "vocab_size": vocab,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "hidden_act": "gelu_new",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
    });
    std::fs::write(path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
}

/// A full pipeline on tiny synthetic data: random ResNet weights, a tiny BERT, few steps.
pub fn tiny_pipeline(dir: &Path, products: usize, device: &str) -> PathBuf {
    let vocab = write_tiny_vocab(&dir.join("vocab.txt"));
    write_tiny_bert_config(&dir.join("bert.json"), vocab);
    let cfg = format!(
        r#"
[runtime]
artifacts = "artifacts"
device = "{device}"

[stages.ingest]
[stages.ingest.params]
source = "synthetic"
products = {products}
image_size = 64
seed = 3
valid_fraction = 0.3

[stages.pairs]
deps = ["ingest"]

[stages.negatives]
deps = ["ingest", "pairs"]

[stages.tokenize]
deps = ["ingest", "pairs", "negatives"]
[stages.tokenize.params]
vocab = "vocab.txt"
max_len = 32

[stages.patches]
deps = ["pairs", "negatives"]
[stages.patches.params]
image_size = 64
grid = 8

[stages.features]
deps = ["ingest", "patches"]
[stages.features.params]
weights = "random:1"
batch_images = 4
shard_images = 16

[stages.records]
deps = ["pairs", "negatives", "tokenize", "patches", "features"]

[stages.train]
deps = ["records", "features"]
[stages.train.params]
init = "random"
config = "bert.json"
epochs = 1
batch_size = 8
checkpoint_every = 4
validate_every = 4
valid_records = 16

[stages.evaluate]
deps = ["ingest", "tokenize", "features", "train"]
[stages.evaluate.params]
queries = 8
negatives = 10
batch_size = 32
"#
    );
    let p = dir.join("pipeline.toml");
    std::fs::write(&p, cfg).unwrap();
    p
}

/// Lines of a run's output that say a stage ran ("▶ name").
pub fn stages_run(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("▶ "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

/// Reads every tensor of a safetensors file as f32 (ints converted), with its shape.
pub fn load_st(path: &Path) -> std::collections::HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, v)| {
            let data: Vec<f32> = match v.dtype() {
                safetensors::Dtype::F32 => bytemuck::pod_collect_to_vec::<u8, f32>(v.data()),
                safetensors::Dtype::I64 => bytemuck::pod_collect_to_vec::<u8, i64>(v.data())
                    .into_iter()
                    .map(|x| x as f32)
                    .collect(),
                safetensors::Dtype::I32 => bytemuck::pod_collect_to_vec::<u8, i32>(v.data())
                    .into_iter()
                    .map(|x| x as f32)
                    .collect(),
                other => panic!("{name}: dtype {other:?}"),
            };
            (name, (v.shape().to_vec(), data))
        })
        .collect()
}

/// A tensor to write with [`save_st`].
pub enum St {
    F32(Vec<usize>, Vec<f32>),
    I64(Vec<usize>, Vec<i64>),
}

pub fn save_st(path: &Path, tensors: Vec<(&str, St)>) {
    let owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, t)| match t {
            St::F32(s, v) => (
                n.to_string(),
                safetensors::Dtype::F32,
                s,
                bytemuck::cast_slice(&v).to_vec(),
            ),
            St::I64(s, v) => (
                n.to_string(),
                safetensors::Dtype::I64,
                s,
                bytemuck::cast_slice(&v).to_vec(),
            ),
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = owned
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Runs a Python reference script; panics with its stderr on failure.
pub fn py(args: &[&str]) {
    let out = Command::new(python()).args(args).output().expect("python");
    assert!(
        out.status.success(),
        "python {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn script(name: &str) -> String {
    root()
        .join("tests/python")
        .join(name)
        .to_string_lossy()
        .into_owned()
}
