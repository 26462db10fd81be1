//! `records`: joins tokens, masks, labels and feature references into the train and valid
//! record tables. Features stay in the feature store, referenced by image id.

use std::collections::HashMap;

use crate::dag::{Input, RunContext, Stage, StageError, StageSpec};
use crate::featstore;
use crate::table;
use crate::training::data::Records;

use crate::schema::read_pairs;

pub const SPEC: StageSpec = StageSpec {
    name: "records",
    version: 1,
    about: "train/valid records: tokens, masks, labels, feature references",
    inputs: &[
        Input::all("pairs"),
        Input::all("negatives"),
        Input::all("tokenize"),
        Input::all("patches"),
        Input::all("features"),
    ],
    params: &[],
    outputs: &["train.parquet", "valid.parquet"],
};

pub struct RecordsStage;

impl Stage for RecordsStage {
    fn spec(&self) -> &'static StageSpec {
        &SPEC
    }

    fn run(&self, ctx: &mut RunContext) -> Result<(), StageError> {
        let mut pairs = read_pairs(&ctx.input("pairs", "pairs.parquet")?)?;
        pairs.extend(read_pairs(&ctx.input("negatives", "negatives.parquet")?)?);
        let tokens = table::read_parquet(&ctx.input("tokenize", "tokens.parquet")?)?;
        let masks = table::read_parquet(&ctx.input("patches", "patch_masks.parquet")?)?;
        let store = featstore::Store::open(ctx.input_dir("features")?)?;

        let t = table::list_width(&tokens, "input_ids")?;
        let k = table::list_width(&tokens, "masked_lm_positions")?;
        let m = table::list_width(&masks, "masked_patch_positions")?;
        let tok_ids = table::strings(&tokens, "pair_id")?;
        let tok_row: HashMap<&str, usize> = tok_ids
            .iter()
            .enumerate()
            .map(|(i, s)| (s.as_str(), i))
            .collect();
        let ids = table::i32_lists(&tokens, "input_ids", t)?;
        let mask = table::i32_lists(&tokens, "input_mask", t)?;
        let seg = table::i32_lists(&tokens, "segment_ids", t)?;
        let pos = table::i32_lists(&tokens, "masked_lm_positions", k)?;
        let lab = table::i32_lists(&tokens, "masked_lm_ids", k)?;
        let w = table::f32_lists(&tokens, "masked_lm_weights", k)?;
        let mask_ids = table::strings(&masks, "pair_id")?;
        let mask_row: HashMap<&str, usize> = mask_ids
            .iter()
            .enumerate()
            .map(|(i, s)| (s.as_str(), i))
            .collect();
        let ppos = table::i32_lists(&masks, "masked_patch_positions", m)?;

        let mut out: HashMap<&str, Records> = HashMap::new();
        let mut dropped = 0u64;
        for pair in &pairs {
            if !store.contains(&pair.image_id) {
                dropped += 1;
                continue;
            }
            let (Some(&i), Some(&j)) = (
                tok_row.get(pair.pair_id.as_str()),
                mask_row.get(pair.pair_id.as_str()),
            ) else {
                return Err(format!(
                    "pair {} has no tokens or no patch mask: upstream tables disagree",
                    pair.pair_id
                )
                .into());
            };
            let r = out
                .entry(if pair.split == "train" {
                    "train"
                } else {
                    "valid"
                })
                .or_insert_with(|| Records {
                    t,
                    k,
                    m,
                    ..Default::default()
                });
            r.record_id.push(pair.pair_id.clone());
            r.image_id.push(pair.image_id.clone());
            r.text_product_id.push(pair.text_product_id.clone());
            r.image_product_id.push(pair.image_product_id.clone());
            r.subcategory.push(pair.subcategory.clone());
            r.label.push(pair.label);
            r.round.push(pair.round);
            r.input_ids.extend_from_slice(&ids[i * t..(i + 1) * t]);
            r.input_mask.extend_from_slice(&mask[i * t..(i + 1) * t]);
            r.segment_ids.extend_from_slice(&seg[i * t..(i + 1) * t]);
            r.masked_lm_positions
                .extend_from_slice(&pos[i * k..(i + 1) * k]);
            r.masked_lm_ids.extend_from_slice(&lab[i * k..(i + 1) * k]);
            r.masked_lm_weights
                .extend_from_slice(&w[i * k..(i + 1) * k]);
            r.masked_patch_positions
                .extend_from_slice(&ppos[j * m..(j + 1) * m]);
        }
        for split in ["train", "valid"] {
            let r = out.remove(split).unwrap_or(Records {
                t,
                k,
                m,
                ..Default::default()
            });
            ctx.count(split, r.len() as u64);
            r.write(&ctx.out(&format!("{split}.parquet")))?;
        }
        if dropped > 0 {
            tracing::warn!(
                "records: {dropped} record(s) dropped: their image was rejected by `features`"
            );
        }
        ctx.count("dropped_no_features", dropped);
        Ok(())
    }
}
