//! Scoring (image, text) pairs with a trained model: the alignment logits of unmasked records,
//! in batches on the device.

use std::collections::HashMap;

use burn::tensor::Device;

use super::sets::EvalSet;
use crate::error::{Error, Result};
use crate::featstore;
use crate::models::fashionbert::{FashionBert, FashionBertConfig};
use crate::progress::Progress;
use crate::training::data::HostBatch;

/// Unmasked token ids of texts, by text id.
pub struct Texts {
    pub t: usize,
    pub ids: Vec<i32>,
    pub mask: Vec<i32>,
    pub index: HashMap<String, usize>,
}

impl Texts {
    /// Reads `tokenize`'s `texts.parquet`.
    pub fn read(path: &std::path::Path) -> Result<Texts> {
        let df = crate::table::read_parquet(path)?;
        let t = crate::table::list_width(&df, "input_ids")?;
        let pids = crate::table::strings(&df, "product_id")?;
        Ok(Texts {
            t,
            ids: crate::table::i32_lists(&df, "input_ids", t)?,
            mask: crate::table::i32_lists(&df, "input_mask", t)?,
            index: pids.into_iter().enumerate().map(|(i, p)| (p, i)).collect(),
        })
    }

    pub fn get(&self, id: &str) -> Option<(&[i32], &[i32])> {
        let &i = self.index.get(id)?;
        Some((
            &self.ids[i * self.t..(i + 1) * self.t],
            &self.mask[i * self.t..(i + 1) * self.t],
        ))
    }
}

/// Checks that a model's input layout matches the data it will score.
pub fn check_layout(cfg: &FashionBertConfig, t: usize, store: &featstore::Store) -> Result<()> {
    let mut problems = Vec::new();
    if cfg.text_len != t {
        problems.push(format!("text length {} (data has {t})", cfg.text_len));
    }
    if cfg.num_patches != store.meta.patches {
        problems.push(format!(
            "{} patches (data has {})",
            cfg.num_patches, store.meta.patches
        ));
    }
    if cfg.patch_feature_size != store.meta.dim {
        problems.push(format!(
            "patch features of {} (data has {})",
            cfg.patch_feature_size, store.meta.dim
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Model(format!(
            "the checkpoint's config does not match the data: it expects {}",
            problems.join(", ")
        )))
    }
}

/// The alignment head's logits `[l0, l1]` for each row of `hb`, read back to the host.
pub fn align_logits(model: &FashionBert, hb: &HostBatch, device: &Device) -> Result<Vec<[f32; 2]>> {
    let flat: Vec<f32> = model
        .align_logits(&hb.to_device(device))
        .try_into_vec_as::<f32>()
        .map_err(Error::read_back("alignment logits"))?;
    Ok(flat.chunks_exact(2).map(|l| [l[0], l[1]]).collect())
}

/// Logits `[l0, l1]` for each `(image_id, text_id)`; duplicates are scored once.
pub fn score_pairs(
    model: &FashionBert,
    device: &Device,
    texts: &Texts,
    store: &featstore::Store,
    pairs: &[(String, String)],
    batch: usize,
) -> Result<HashMap<(String, String), [f32; 2]>> {
    let mut uniq: Vec<&(String, String)> = pairs.iter().collect();
    uniq.sort();
    uniq.dedup();
    let bar = Progress::new(uniq.len() as u64, "pairs");
    let seg = vec![0i32; texts.t];
    let mut out = HashMap::with_capacity(uniq.len());
    for chunk in uniq.chunks(batch.max(1)) {
        let mut hb = HostBatch::new(texts.t, store.meta.patches, store.meta.dim, 1, 1);
        for (img, txt) in chunk {
            let (ids, mask) = texts
                .get(txt)
                .ok_or_else(|| Error::msg(format!("no tokens for text `{txt}`")))?;
            hb.push(ids, mask, &seg, store, img, None, None, 0)?;
        }
        let logits = align_logits(model, &hb, device)?;
        for (key, l) in chunk.iter().zip(logits) {
            out.insert((*key).clone(), l);
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish();
    Ok(out)
}

/// How `evaluate` ranks candidates (its `score` param).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScoreKind {
    /// The alignment head's log-odds on the joint pass (the original).
    Itm,
    /// The contrastive similarity of separate text and image passes (needs an ITC head).
    Itc,
    /// ITC for every candidate, then the alignment head re-ranks each query's top `k` (as
    /// ALBEF/BLIP retrieve): the top `k` are ordered by ITM above the rest, ordered by ITC.
    ItcThenItm { k: usize },
}

crate::param_choice! {
    /// The `score` param's values (see [`ScoreKind`], which adds the re-ranking depth).
    pub enum ScoreName {
        Itm = "itm",
        Itc = "itc",
        ItcThenItm = "itc_then_itm",
    }
}

impl ScoreKind {
    /// The score named `name`, re-ranking the top `k` where it re-ranks.
    pub fn new(name: ScoreName, k: usize) -> ScoreKind {
        match name {
            ScoreName::Itm => ScoreKind::Itm,
            ScoreName::Itc => ScoreKind::Itc,
            ScoreName::ItcThenItm => ScoreKind::ItcThenItm { k: k.max(1) },
        }
    }

    pub fn describe(self) -> String {
        match self {
            ScoreKind::Itm => {
                "itm: log-odds logit[1] - logit[0] of the alignment head (corrected); raw logit[1] (easytransfer_compatible)".into()
            }
            ScoreKind::Itc => {
                "itc: contrastive similarity (cosine × inverse temperature) of separate text and image passes; stored as logits [0, s]".into()
            }
            ScoreKind::ItcThenItm { k } => format!(
                "itc_then_itm: ITC for all candidates, the alignment head re-ranks each query's top {k} (stored as [0, {RERANK_OFFSET} + ITM log-odds]; the rest [0, ITC score])"
            ),
        }
    }
}

/// Added to the ITM log-odds of re-ranked candidates so they stay above every ITC score
/// (which is at most the inverse temperature, ≤ 100).
pub const RERANK_OFFSET: f32 = 1000.0;

/// ITC embeddings of texts and images, each computed once, and the model's inverse
/// temperature.
pub struct ItcEmbeddings {
    pub dim: usize,
    pub scale: f32,
    pub text: HashMap<String, Vec<f32>>,
    pub image: HashMap<String, Vec<f32>>,
}

impl ItcEmbeddings {
    /// The scaled cosine similarity of an image and a text.
    pub fn score(&self, image_id: &str, text_id: &str) -> Result<f32> {
        let i = self
            .image
            .get(image_id)
            .ok_or_else(|| Error::msg(format!("no ITC embedding for image `{image_id}`")))?;
        let t = self
            .text
            .get(text_id)
            .ok_or_else(|| Error::msg(format!("no ITC embedding for text `{text_id}`")))?;
        Ok(self.scale * i.iter().zip(t).map(|(a, b)| a * b).sum::<f32>())
    }
}

/// Encodes every distinct text and image once with the model's ITC head.
pub fn itc_embed(
    model: &FashionBert,
    device: &Device,
    texts: &Texts,
    store: &featstore::Store,
    text_ids: &[&str],
    image_ids: &[&str],
    batch: usize,
) -> Result<ItcEmbeddings> {
    use burn::tensor::{Int, Tensor, TensorData};
    if model.itc.is_none() {
        return Err(Error::Model(
            "score `itc` needs a model trained with the contrastive loss (train.w_itc > 0); this one has no ITC head: use score = \"itm\"".into(),
        ));
    }
    let to_vecs = |x: Tensor<2>, n: usize| -> Result<Vec<Vec<f32>>> {
        let d = x.dims()[1];
        let v: Vec<f32> = x
            .try_into_vec_as::<f32>()
            .map_err(Error::read_back("ITC embeddings"))?;
        Ok((0..n).map(|i| v[i * d..(i + 1) * d].to_vec()).collect())
    };
    let mut uniq_t: Vec<&str> = text_ids.to_vec();
    uniq_t.sort_unstable();
    uniq_t.dedup();
    let mut uniq_i: Vec<&str> = image_ids.to_vec();
    uniq_i.sort_unstable();
    uniq_i.dedup();
    let bar = Progress::new((uniq_t.len() + uniq_i.len()) as u64, "ITC encodings");
    let t = texts.t;
    let mut text = HashMap::with_capacity(uniq_t.len());
    for chunk in uniq_t.chunks(batch.max(1)) {
        let (mut ids, mut mask) = (Vec::new(), Vec::new());
        for id in chunk {
            let (a, m) = texts
                .get(id)
                .ok_or_else(|| Error::msg(format!("no tokens for text `{id}`")))?;
            ids.extend(a.iter().map(|&v| v as i64));
            mask.extend(m.iter().map(|&v| v as f32));
        }
        let n = chunk.len();
        let e = model.itc_text(
            Tensor::<2, Int>::from_data(TensorData::new(ids, [n, t]), device),
            Tensor::<2>::from_data(TensorData::new(mask, [n, t]), device),
            Tensor::<2, Int>::zeros([n, t], device),
        );
        for (id, v) in chunk.iter().zip(to_vecs(e, n)?) {
            text.insert(id.to_string(), v);
        }
        bar.inc(n as u64);
    }
    let (p, f) = (store.meta.patches, store.meta.dim);
    let mut image = HashMap::with_capacity(uniq_i.len());
    for chunk in uniq_i.chunks(batch.max(1)) {
        let mut feats = Vec::with_capacity(chunk.len() * p * f);
        for id in chunk {
            store.read_into(id, &mut feats)?;
        }
        let n = chunk.len();
        let e = model.itc_image(Tensor::<3>::from_data(
            TensorData::new(feats, [n, p, f]),
            device,
        ));
        for (id, v) in chunk.iter().zip(to_vecs(e, n)?) {
            image.insert(id.to_string(), v);
        }
        bar.inc(n as u64);
    }
    bar.finish();
    let scale: Vec<f32> = model
        .itc_scale()
        .try_into_vec_as::<f32>()
        .map_err(Error::read_back("the ITC temperature"))?;
    Ok(ItcEmbeddings {
        dim: text.values().next().map(|v| v.len()).unwrap_or(0),
        scale: scale[0],
        text,
        image,
    })
}

/// The scores of one eval set's pairs: `(image_id, text_id) → [l0, l1]`.
pub type PairScores = HashMap<(String, String), [f32; 2]>;

/// Every eval set's `(image_id, text_id) → [l0, l1]`, as `kind` scores them (the final score of
/// a pair can depend on its query, so each set has its own map).
pub fn score_sets(
    model: &FashionBert,
    compute: &crate::device::Compute,
    texts: &Texts,
    store: &featstore::Store,
    sets: &[EvalSet],
    kind: ScoreKind,
    batch: usize,
) -> crate::Result<Vec<PairScores>> {
    let all_pairs = || {
        sets.iter()
            .flat_map(|s| s.rows.iter().map(|r| (r.1.clone(), r.2.clone())))
            .collect::<Vec<_>>()
    };
    if kind == ScoreKind::Itm {
        let wanted = all_pairs();
        tracing::info!(
            "evaluate: scoring {} pairs on {}",
            wanted.len(),
            compute.kind
        );
        let s = score_pairs(model, &compute.device, texts, store, &wanted, batch)?;
        // Each set keeps its own rows' scores (no copy of the other direction's).
        return Ok(sets
            .iter()
            .map(|set| {
                set.rows
                    .iter()
                    .map(|r| {
                        let key = (r.1.clone(), r.2.clone());
                        let v = s[&key];
                        (key, v)
                    })
                    .collect()
            })
            .collect());
    }
    let text_ids: Vec<&str> = sets
        .iter()
        .flat_map(|s| s.rows.iter().map(|r| r.2.as_str()))
        .collect();
    let image_ids: Vec<&str> = sets
        .iter()
        .flat_map(|s| s.rows.iter().map(|r| r.1.as_str()))
        .collect();
    let emb = itc_embed(
        model,
        &compute.device,
        texts,
        store,
        &text_ids,
        &image_ids,
        batch,
    )?;
    let mut out: Vec<PairScores> = Vec::with_capacity(sets.len());
    for set in sets {
        let mut m = PairScores::with_capacity(set.rows.len());
        for r in &set.rows {
            m.insert((r.1.clone(), r.2.clone()), [0.0, emb.score(&r.1, &r.2)?]);
        }
        out.push(m);
    }
    let ScoreKind::ItcThenItm { k } = kind else {
        return Ok(out);
    };
    // Each query's top k by ITC, re-ranked by the alignment head.
    let mut top: Vec<Vec<(String, String)>> = Vec::with_capacity(sets.len());
    for (set, m) in sets.iter().zip(&out) {
        let mut by_query: Vec<(&str, Vec<(String, String)>)> = Vec::new();
        for r in &set.rows {
            if by_query.last().is_none_or(|(q, _)| *q != r.0.as_str()) {
                by_query.push((r.0.as_str(), Vec::new()));
            }
            by_query
                .last_mut()
                .unwrap()
                .1
                .push((r.1.clone(), r.2.clone()));
        }
        let mut chosen = Vec::new();
        for (_, mut cands) in by_query {
            // Stable order: score descending, then ids, so ties break the same way every run.
            cands.sort_by(|a, b| m[b][1].total_cmp(&m[a][1]).then_with(|| a.cmp(b)));
            cands.truncate(k);
            chosen.extend(cands);
        }
        top.push(chosen);
    }
    let wanted: Vec<(String, String)> = top.iter().flatten().cloned().collect();
    tracing::info!(
        "evaluate: re-ranking {} pairs (top {k} per query) with the alignment head on {}",
        wanted.len(),
        compute.kind
    );
    let itm = score_pairs(model, &compute.device, texts, store, &wanted, batch)?;
    for (m, chosen) in out.iter_mut().zip(&top) {
        for key in chosen {
            let l = itm[key];
            m.insert(key.clone(), [0.0, RERANK_OFFSET + (l[1] - l[0])]);
        }
    }
    Ok(out)
}
