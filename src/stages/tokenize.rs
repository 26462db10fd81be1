//! `tokenize`: BERT WordPiece (bert-base-uncased vocabulary) to fixed-length `[CLS] … [SEP]`
//! ids, once per product (unmasked, for retrieval evaluation), and BERT masking for every
//! pair record (positives and negatives, both splits: training and its validation).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rayon::prelude::*;

use crate::dag::{
    Input, ParamDefault as D, ParamKind as K, Params, RawInput, RunContext, Stage, StageError,
    StageParams, StageSpec,
};
use crate::error::Result;
use crate::table::{self, col_bool, col_f32_lists, col_i32, col_i32_lists, col_str};
use crate::text::{BertTokenizer, MaskConfig, mask_tokens};

use crate::schema::{read_pairs, read_products, record_rng};

crate::stage_params! {
    /// The params of `tokenize`.
    pub struct TokenizeParams {
        vocab: String = (
            K::Path,
            D::Str("weights/minilm/vocab.txt"),
            "bert-base-uncased vocab.txt (`make weights` fetches it)",
        );
        max_len: usize = (
            K::Int,
            D::Int(64),
            "text length in tokens, [CLS] and [SEP] included",
        )
        .range(3.0, 512.0);
        mask_prob: f64 = (
            K::Float,
            D::Float(0.15),
            "share of eligible tokens to predict",
        )
        .range(0.0, 1.0);
        max_predictions: usize = (
            K::Int,
            D::Int(10),
            "masked positions per record (the padded length)",
        )
        .range(1.0, 512.0);
        whole_word: bool = (K::Bool, D::Bool(false), "mask all wordpieces of a word together");
        seed: u64 = (K::Int, D::Int(11), "masking seed").min(0.0);
    }
}

pub const SPEC: StageSpec = StageSpec {
    name: "tokenize",
    version: 1,
    about: "WordPiece ids per product; BERT-masked ids per pair record",
    inputs: &[
        Input::all("ingest"),
        Input::all("pairs"),
        Input::all("negatives"),
    ],
    params: TokenizeParams::SPECS,
    outputs: &["texts.parquet", "tokens.parquet"],
};

pub struct Tokenize;

impl Stage for Tokenize {
    fn spec(&self) -> &'static StageSpec {
        &SPEC
    }

    fn raw_inputs(&self, p: &Params, base: &Path) -> Result<Vec<RawInput>, StageError> {
        let p = TokenizeParams::from_params(p)?;
        Ok(vec![RawInput::File(crate::dag::stage::resolve_path(
            base,
            p.vocab.as_str(),
        ))])
    }

    fn run(&self, ctx: &mut RunContext) -> Result<(), StageError> {
        let p: TokenizeParams = ctx.typed_params()?;
        let tok = BertTokenizer::from_vocab(&ctx.resolve(p.vocab.as_str()))?;
        let max_len = p.max_len;
        let cfg = MaskConfig {
            prob: p.mask_prob,
            max_predictions: p.max_predictions,
            whole_word: p.whole_word,
            vocab_size: tok.vocab_size() as u32,
        };
        let seed = p.seed;

        // Unmasked, once per product.
        let products = read_products(&ctx.input("ingest", "products.parquet")?)?;
        let mut seen = std::collections::HashSet::new();
        let uniq: Vec<(&str, &str)> = products
            .iter()
            .filter(|pr| seen.insert(pr.product_id.as_str()))
            .map(|pr| (pr.product_id.as_str(), pr.text.as_str()))
            .collect();
        let texts: Vec<String> = uniq.iter().map(|(_, t)| t.to_string()).collect();
        let encoded = tok.encode_all(&texts, max_len)?;
        let truncated = encoded.iter().filter(|e| e.truncated).count();
        {
            let ids: Vec<i32> = encoded
                .iter()
                .flat_map(|e| e.ids.iter().map(|&i| i as i32))
                .collect();
            let mask: Vec<i32> = encoded
                .iter()
                .flat_map(|e| e.mask.iter().map(|&m| m as i32))
                .collect();
            let lens: Vec<i32> = encoded.iter().map(|e| e.len as i32).collect();
            let trunc: Vec<bool> = encoded.iter().map(|e| e.truncated).collect();
            let pids: Vec<&str> = uniq.iter().map(|(p, _)| *p).collect();
            let mut df = table::frame(vec![
                col_str("product_id", &pids),
                col_i32_lists("input_ids", &ids, max_len),
                col_i32_lists("input_mask", &mask, max_len),
                col_i32("length", &lens),
                col_bool("truncated", &trunc),
            ])?;
            table::write_parquet(&mut df, &ctx.out("texts.parquet"))?;
        }
        let by_product: HashMap<&str, usize> =
            uniq.iter().enumerate().map(|(i, (p, _))| (*p, i)).collect();

        // Masked, once per pair record.
        let mut pairs = read_pairs(&ctx.input("pairs", "pairs.parquet")?)?;
        pairs.extend(read_pairs(&ctx.input("negatives", "negatives.parquet")?)?);
        let masked: Vec<_> = pairs
            .par_iter()
            .map(|pair| {
                let enc = &encoded[by_product[pair.text_product_id.as_str()]];
                let mut rng = record_rng(seed, &pair.pair_id);
                (enc, mask_tokens(enc, &cfg, &mut rng))
            })
            .collect();
        let n = pairs.len();
        let mp = cfg.max_predictions;
        let mut ids = Vec::with_capacity(n * max_len);
        let mut mask = Vec::with_capacity(n * max_len);
        let mut pos = Vec::with_capacity(n * mp);
        let mut lab = Vec::with_capacity(n * mp);
        let mut w = Vec::with_capacity(n * mp);
        let mut stats = [0u64; 3];
        let mut eligible = 0u64;
        for (enc, m) in &masked {
            ids.extend(m.input_ids.iter().map(|&i| i as i32));
            mask.extend(enc.mask.iter().map(|&v| v as i32));
            pos.extend(m.positions.iter().map(|&v| v as i32));
            lab.extend(m.labels.iter().map(|&v| v as i32));
            w.extend_from_slice(&m.weights);
            for a in &m.actions {
                stats[*a as usize] += 1;
            }
            eligible += enc.len.saturating_sub(2) as u64;
        }
        let segs = vec![0i32; n * max_len];
        let pair_ids: Vec<&str> = pairs.iter().map(|p| p.pair_id.as_str()).collect();
        let mut df = table::frame(vec![
            col_str("pair_id", &pair_ids),
            col_i32_lists("input_ids", &ids, max_len),
            col_i32_lists("input_mask", &mask, max_len),
            col_i32_lists("segment_ids", &segs, max_len),
            col_i32_lists("masked_lm_positions", &pos, mp),
            col_i32_lists("masked_lm_ids", &lab, mp),
            col_f32_lists("masked_lm_weights", &w, mp),
        ])?;
        table::write_parquet(&mut df, &ctx.out("tokens.parquet"))?;

        let predicted = stats.iter().sum::<u64>();
        ctx.count("texts", uniq.len() as u64);
        ctx.count("truncated_texts", truncated as u64);
        ctx.count("records", n as u64);
        let mut note = BTreeMap::new();
        note.insert(
            "masked_share_of_eligible",
            predicted as f64 / eligible.max(1) as f64,
        );
        note.insert(
            "share_mask_token",
            stats[0] as f64 / predicted.max(1) as f64,
        );
        note.insert(
            "share_random_token",
            stats[1] as f64 / predicted.max(1) as f64,
        );
        note.insert("share_kept", stats[2] as f64 / predicted.max(1) as f64);
        ctx.note("masking", serde_json::to_value(note).unwrap());
        Ok(())
    }
}
