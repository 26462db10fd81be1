//! The tokenize benchmark: records/s of WordPiece tokenisation + BERT masking of the
//! fashion-real texts against `tests/python/tokenize_reference.py` (Hugging Face
//! BertTokenizerFast + masking in Python). Skipped without fashion-real and the vocabulary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use fashionbert::text::{BertTokenizer, MaskConfig, mask_tokens};

use crate::report::Row;
use crate::{Args, FASHION_REAL, peer, threads};

/// The `tokenize` stage's defaults: its vocabulary (`make weights` fetches it), text length
/// (`[CLS]` and `[SEP]` included), share of tokens to predict and masked positions per record.
pub const VOCAB: &str = "weights/minilm/vocab.txt";
pub const MAX_LEN: usize = 64;
pub const MASK_PROB: f64 = 0.15;
pub const MAX_PREDICTIONS: usize = 10;
/// The masking seed.
const SEED: u64 = 1;

/// The tokenize row, where fashion-real and the vocabulary are present.
pub fn rows(a: &Args) -> Vec<Row> {
    let csv = Path::new(FASHION_REAL).join("products.csv");
    let vocab = PathBuf::from(VOCAB);
    if !(csv.is_file() && vocab.is_file()) {
        eprintln!("skip tokenize: needs {FASHION_REAL} and {VOCAB}");
        return Vec::new();
    }
    let texts = texts(&csv);
    let ours = records_per_s(&texts, &vocab);
    let mut cmd = Command::new(peer::python(a));
    cmd.args([
        "tests/python/tokenize_reference.py",
        "--vocab",
        vocab.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
        "--max-len",
        &MAX_LEN.to_string(),
        "--impl",
        "fast",
        "--bench",
        "--threads",
        &threads().to_string(),
    ]);
    let pr = peer::last_json_line(cmd);
    let theirs = pr["records_per_s"].as_f64().unwrap();
    vec![Row::versus(
        format!(
            "tokenize + BERT masking ({} fashion-real texts)",
            texts.len()
        ),
        ours,
        theirs,
        "records/s",
        "peer: Hugging Face BertTokenizerFast (Rust tokenizers) + masking in Python".into(),
    )]
}

/// "title description" of every product of `csv`.
fn texts(csv: &Path) -> Vec<String> {
    let mut rdr = csv::Reader::from_path(csv).unwrap();
    let headers = rdr.headers().unwrap().clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("{}: no `{name}` column", csv.display()))
    };
    let (title, description) = (col("title"), col("description"));
    rdr.records()
        .map(|r| {
            let r = r.unwrap();
            format!("{} {}", &r[title], &r[description])
        })
        .collect()
}

/// Records/s of encoding `texts` and masking each with its own RNG, in parallel, as the stage
/// does (the tokenizer's loading is not timed).
fn records_per_s(texts: &[String], vocab: &Path) -> f64 {
    use rayon::prelude::*;
    let tok = BertTokenizer::from_vocab(vocab).unwrap();
    let cfg = MaskConfig {
        prob: MASK_PROB,
        max_predictions: MAX_PREDICTIONS,
        whole_word: false,
        vocab_size: tok.vocab_size() as u32,
    };
    let t0 = Instant::now();
    let enc = tok.encode_all(texts, MAX_LEN).unwrap();
    let _masked: Vec<_> = enc
        .par_iter()
        .enumerate()
        .map(|(i, e)| {
            mask_tokens(
                e,
                &cfg,
                &mut fashionbert::schema::record_rng(SEED, &i.to_string()),
            )
        })
        .collect();
    texts.len() as f64 / t0.elapsed().as_secs_f64()
}
