//! Scoring (image, text) pairs with a trained model: the alignment logits of unmasked records,
//! in batches on the device.

use std::collections::HashMap;

use burn::tensor::Device;

use super::sets::EvalSet;
use crate::dag::ShardId;
use crate::error::{Error, IoContext, Result};
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

/// Logits `[l0, l1]` for each `(image_id, text_id)`; duplicates are scored once. The pairs are
/// sorted and cut into batches of `batch`; with a `shard`, only the batches whose first pair
/// hashes to it are scored (the batches an unsharded run forms, so each logit is bit for bit
/// the same).
pub fn score_pairs(
    model: &FashionBert,
    device: &Device,
    texts: &Texts,
    store: &featstore::Store,
    pairs: &[(String, String)],
    batch: usize,
    shard: Option<ShardId>,
) -> Result<HashMap<(String, String), [f32; 2]>> {
    let mut uniq: Vec<&(String, String)> = pairs.iter().collect();
    uniq.sort();
    uniq.dedup();
    let chunks = shard_batches(&uniq, batch, shard, |(img, txt)| {
        format!("pair:{img}\t{txt}")
    });
    let bar = Progress::new(chunks.iter().map(|c| c.len() as u64).sum(), "pairs");
    let seg = vec![0i32; texts.t];
    let mut out = HashMap::with_capacity(uniq.len());
    for chunk in chunks {
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

/// The batches of `batch` consecutive `items` (sorted, distinct) that `shard` computes: those
/// whose first item's `key` hashes to it; all of them without a shard. Every scoring loop cuts
/// its batches here, so a shard's batches are exactly an unsharded run's.
fn shard_batches<'a, T>(
    items: &'a [T],
    batch: usize,
    shard: Option<ShardId>,
    key: impl Fn(&T) -> String,
) -> Vec<&'a [T]> {
    items
        .chunks(batch.max(1))
        .filter(|c| shard.is_none_or(|s| s.owns(&key(&c[0]))))
        .collect()
}

/// The shard key of an ITC batch of texts (`side` "text") or images ("image").
fn itc_key(side: &'static str) -> impl Fn(&&str) -> String {
    move |id| format!("{side}:{id}")
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
#[derive(Debug, Clone, PartialEq)]
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

/// Encodes every distinct text and image once with the model's ITC head, in sorted batches of
/// `batch`; with a `shard`, only the batches whose first id hashes to it.
#[allow(clippy::too_many_arguments)]
pub fn itc_embed(
    model: &FashionBert,
    device: &Device,
    texts: &Texts,
    store: &featstore::Store,
    text_ids: &[&str],
    image_ids: &[&str],
    batch: usize,
    shard: Option<ShardId>,
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
    let chunks_t = shard_batches(&uniq_t, batch, shard, itc_key("text"));
    let chunks_i = shard_batches(&uniq_i, batch, shard, itc_key("image"));
    let n_all: usize = chunks_t.iter().chain(&chunks_i).map(|c| c.len()).sum();
    let bar = Progress::new(n_all as u64, "ITC encodings");
    let t = texts.t;
    let mut text = HashMap::with_capacity(uniq_t.len());
    for chunk in chunks_t {
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
    for chunk in chunks_i {
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
        dim: text
            .values()
            .chain(image.values())
            .next()
            .map(|v| v.len())
            .unwrap_or(0),
        scale: scale[0],
        text,
        image,
    })
}

/// The scores of one eval set's pairs: `(image_id, text_id) → [l0, l1]`.
pub type PairScores = HashMap<(String, String), [f32; 2]>;

/// What the model computes to score the eval sets: alignment logits of pairs and, for the ITC
/// scores, embeddings of texts and images. An unsharded `evaluate` computes all of it at once;
/// each shard the batches that hash to it ([`Scored::compute`]); the merge joins the shards'
/// ([`Scored::join`]) and [`Scored::assemble`] makes the sets' scores from either, without
/// running the model.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Scored {
    pub itm: HashMap<(String, String), [f32; 2]>,
    pub itc: Option<ItcEmbeddings>,
}

impl Scored {
    /// The files a shard's part holds.
    pub const ITM: &'static str = "itm.parquet";
    pub const ITC_TEXT: &'static str = "itc_text.parquet";
    pub const ITC_IMAGE: &'static str = "itc_image.parquet";
    pub const ITC_SCALE: &'static str = "itc_scale.json";

    /// Computes what `kind` needs to score `sets` (only `shard`'s batches, given one). For
    /// `itc_then_itm` each shard encodes every text and image (needed to choose the pairs to
    /// re-rank, and cheap beside them) and keeps its own batches' encodings.
    #[allow(clippy::too_many_arguments)]
    pub fn compute(
        model: &FashionBert,
        compute: &crate::device::Compute,
        texts: &Texts,
        store: &featstore::Store,
        sets: &[EvalSet],
        gallery: &[(String, String)],
        kind: ScoreKind,
        batch: usize,
        shard: Option<ShardId>,
    ) -> Result<Scored> {
        let device = &compute.device;
        if kind == ScoreKind::Itm {
            let wanted = all_pairs(sets);
            tracing::info!(
                "evaluate: scoring {} pairs on {}{}",
                wanted.len(),
                compute.kind,
                shard
                    .map(|s| format!(" (shard {s}: its batches)"))
                    .unwrap_or_default()
            );
            let itm = score_pairs(model, device, texts, store, &wanted, batch, shard)?;
            return Ok(Scored { itm, itc: None });
        }
        // The sets' texts and images, and the full gallery's (`gallery`: (image id, product id)).
        let text_ids: Vec<&str> = sets
            .iter()
            .flat_map(|s| s.rows.iter().map(|r| r.2.as_str()))
            .chain(gallery.iter().map(|g| g.1.as_str()))
            .collect();
        let image_ids: Vec<&str> = sets
            .iter()
            .flat_map(|s| s.rows.iter().map(|r| r.1.as_str()))
            .chain(gallery.iter().map(|g| g.0.as_str()))
            .collect();
        let ScoreKind::ItcThenItm { k } = kind else {
            let emb = itc_embed(
                model, device, texts, store, &text_ids, &image_ids, batch, shard,
            )?;
            return Ok(Scored {
                itm: HashMap::new(),
                itc: Some(emb),
            });
        };
        let all = itc_embed(
            model, device, texts, store, &text_ids, &image_ids, batch, None,
        )?;
        let wanted: Vec<(String, String)> =
            rerank_pairs(sets, &itc_scores(sets, &all)?, k).concat();
        tracing::info!(
            "evaluate: re-ranking {} pairs (top {k} per query) with the alignment head on {}",
            wanted.len(),
            compute.kind
        );
        let itm = score_pairs(model, device, texts, store, &wanted, batch, shard)?;
        let itc = match shard {
            None => all,
            Some(s) => {
                // This shard's batches of encodings (the same cut `itc_embed` makes).
                let mine = itc_embed_owned(&all, batch, s);
                ItcEmbeddings {
                    text: mine.0,
                    image: mine.1,
                    ..all
                }
            }
        };
        Ok(Scored {
            itm,
            itc: Some(itc),
        })
    }

    /// Joins the shards' parts; a key computed twice must have the same value.
    pub fn join(parts: Vec<Scored>) -> Result<Scored> {
        let mut out = Scored::default();
        let conflict = |what: &str| {
            Error::msg(format!(
                "two parts disagree on the score of {what}: they were made by different builds; remove the parts and run again"
            ))
        };
        for p in parts {
            for (k, v) in p.itm {
                if out.itm.insert(k.clone(), v).is_some_and(|old| old != v) {
                    return Err(conflict(&format!("pair ({}, {})", k.0, k.1)));
                }
            }
            if let Some(e) = p.itc {
                let o = out.itc.get_or_insert_with(|| ItcEmbeddings {
                    dim: 0,
                    scale: e.scale,
                    text: HashMap::new(),
                    image: HashMap::new(),
                });
                // A part with no encodings (a shard that owned no batch) has width 0.
                if o.scale != e.scale || (o.dim != 0 && e.dim != 0 && o.dim != e.dim) {
                    return Err(conflict("the ITC temperature or width"));
                }
                o.dim = o.dim.max(e.dim);
                for (side, from, to) in [
                    ("text", e.text, &mut o.text),
                    ("image", e.image, &mut o.image),
                ] {
                    for (k, v) in from {
                        if to.get(&k).is_some_and(|old| *old != v) {
                            return Err(conflict(&format!("the ITC encoding of {side} `{k}`")));
                        }
                        to.insert(k, v);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every eval set's `(image_id, text_id) → [l0, l1]`, as `kind` scores them (the final
    /// score of a pair can depend on its query, so each set has its own map). Fails, naming
    /// it, when something a set needs was not computed (a part of another run).
    pub fn assemble(&self, sets: &[EvalSet], kind: ScoreKind) -> Result<Vec<PairScores>> {
        let itm = |key: &(String, String)| -> Result<[f32; 2]> {
            self.itm.get(key).copied().ok_or_else(|| {
                Error::msg(format!(
                    "pair ({}, {}) was not scored: the parts were made for other eval sets; remove them and run again",
                    key.0, key.1
                ))
            })
        };
        if kind == ScoreKind::Itm {
            // Each set keeps its own rows' scores (no copy of the other direction's).
            return sets
                .iter()
                .map(|set| {
                    set.rows
                        .iter()
                        .map(|r| {
                            let key = (r.1.clone(), r.2.clone());
                            Ok((key.clone(), itm(&key)?))
                        })
                        .collect()
                })
                .collect();
        }
        let emb = self
            .itc
            .as_ref()
            .ok_or_else(|| Error::msg("no ITC encodings were computed for an ITC score"))?;
        let mut out = itc_scores(sets, emb)?;
        let ScoreKind::ItcThenItm { k } = kind else {
            return Ok(out);
        };
        let top = rerank_pairs(sets, &out, k);
        for (m, chosen) in out.iter_mut().zip(&top) {
            for key in chosen {
                let l = itm(key)?;
                m.insert(key.clone(), [0.0, RERANK_OFFSET + (l[1] - l[0])]);
            }
        }
        Ok(out)
    }

    /// Writes the part files into `dir`.
    pub fn write(&self, dir: &std::path::Path) -> Result<()> {
        use crate::table::{col_f32, col_f32_lists, col_str, frame, write_parquet};
        let mut pairs: Vec<(&(String, String), &[f32; 2])> = self.itm.iter().collect();
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        let mut df = frame(vec![
            col_str(
                "image_id",
                &pairs.iter().map(|p| p.0.0.as_str()).collect::<Vec<_>>(),
            ),
            col_str(
                "text_id",
                &pairs.iter().map(|p| p.0.1.as_str()).collect::<Vec<_>>(),
            ),
            col_f32("logit0", &pairs.iter().map(|p| p.1[0]).collect::<Vec<_>>()),
            col_f32("logit1", &pairs.iter().map(|p| p.1[1]).collect::<Vec<_>>()),
        ])?;
        write_parquet(&mut df, &dir.join(Self::ITM))?;
        let Some(e) = &self.itc else {
            return Ok(());
        };
        for (name, m) in [(Self::ITC_TEXT, &e.text), (Self::ITC_IMAGE, &e.image)] {
            let mut rows: Vec<(&String, &Vec<f32>)> = m.iter().collect();
            rows.sort_by(|a, b| a.0.cmp(b.0));
            let flat: Vec<f32> = rows.iter().flat_map(|r| r.1.iter().copied()).collect();
            let mut df = frame(vec![
                col_str("id", &rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>()),
                // A part without encodings has width 0: any width fits no rows.
                col_f32_lists("embedding", &flat, e.dim.max(1)),
            ])?;
            write_parquet(&mut df, &dir.join(name))?;
        }
        let path = dir.join(Self::ITC_SCALE);
        let scale = ItcScale {
            scale: e.scale,
            dim: e.dim,
        };
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(&scale).expect("serialises"),
        )
        .at(&path)
    }

    /// Reads the part files [`Scored::write`] wrote into `dir`.
    pub fn read(dir: &std::path::Path) -> Result<Scored> {
        use crate::table::{f32_lists, f32s, read_parquet, strings};
        let df = read_parquet(&dir.join(Self::ITM))?;
        let (img, txt) = (strings(&df, "image_id")?, strings(&df, "text_id")?);
        let (l0, l1) = (f32s(&df, "logit0")?, f32s(&df, "logit1")?);
        let itm = img
            .into_iter()
            .zip(txt)
            .zip(l0.into_iter().zip(l1))
            .map(|(k, (a, b))| (k, [a, b]))
            .collect();
        let path = dir.join(Self::ITC_SCALE);
        if !path.is_file() {
            return Ok(Scored { itm, itc: None });
        }
        let ItcScale { scale, dim } =
            serde_json::from_str(&std::fs::read_to_string(&path).at(&path)?)
                .map_err(|e| Error::input(&path, e.to_string()))?;
        let side = |name: &str| -> Result<HashMap<String, Vec<f32>>> {
            let df = read_parquet(&dir.join(name))?;
            let ids = strings(&df, "id")?;
            let flat = f32_lists(&df, "embedding", dim)?;
            Ok(ids
                .into_iter()
                .zip(flat.chunks_exact(dim.max(1)).map(<[f32]>::to_vec))
                .collect())
        };
        Ok(Scored {
            itm,
            itc: Some(ItcEmbeddings {
                dim,
                scale,
                text: side(Self::ITC_TEXT)?,
                image: side(Self::ITC_IMAGE)?,
            }),
        })
    }
}

/// `itc_scale.json` of a part: the inverse temperature and the encodings' width.
#[derive(serde::Serialize, serde::Deserialize)]
struct ItcScale {
    scale: f32,
    dim: usize,
}

fn all_pairs(sets: &[EvalSet]) -> Vec<(String, String)> {
    sets.iter()
        .flat_map(|s| s.rows.iter().map(|r| (r.1.clone(), r.2.clone())))
        .collect()
}

/// Each set's ITC scores `[0, s]`.
fn itc_scores(sets: &[EvalSet], emb: &ItcEmbeddings) -> Result<Vec<PairScores>> {
    sets.iter()
        .map(|set| {
            set.rows
                .iter()
                .map(|r| Ok(((r.1.clone(), r.2.clone()), [0.0, emb.score(&r.1, &r.2)?])))
                .collect()
        })
        .collect()
}

/// Each set's pairs to re-rank: each query's top `k` by its ITC score.
fn rerank_pairs(sets: &[EvalSet], itc: &[PairScores], k: usize) -> Vec<Vec<(String, String)>> {
    let mut top = Vec::with_capacity(sets.len());
    for (set, m) in sets.iter().zip(itc) {
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
    top
}

/// The encodings of `all` that shard `s` computes in [`itc_embed`] (texts, images).
#[allow(clippy::type_complexity)]
fn itc_embed_owned(
    all: &ItcEmbeddings,
    batch: usize,
    s: ShardId,
) -> (HashMap<String, Vec<f32>>, HashMap<String, Vec<f32>>) {
    let owned = |side: &'static str, m: &HashMap<String, Vec<f32>>| {
        let mut ids: Vec<&str> = m.keys().map(String::as_str).collect();
        ids.sort_unstable();
        shard_batches(&ids, batch, Some(s), itc_key(side))
            .into_iter()
            .flatten()
            .map(|id| (id.to_string(), m[*id].clone()))
            .collect()
    };
    (owned("text", &all.text), owned("image", &all.image))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(i: &str, t: &str) -> (String, String) {
        (i.to_string(), t.to_string())
    }

    fn emb(text: &[(&str, [f32; 2])], image: &[(&str, [f32; 2])]) -> ItcEmbeddings {
        let m =
            |v: &[(&str, [f32; 2])]| v.iter().map(|(k, e)| (k.to_string(), e.to_vec())).collect();
        ItcEmbeddings {
            dim: 2,
            scale: 14.5,
            text: m(text),
            image: m(image),
        }
    }

    #[test]
    fn parts_round_trip_and_join_exactly() {
        let d = tempfile::tempdir().unwrap();
        let a = Scored {
            itm: [
                (pair("i1", "t1"), [0.25, -1.5]),
                (pair("i2", "t1"), [f32::MIN_POSITIVE, 3.0]),
            ]
            .into(),
            itc: Some(emb(&[("t1", [0.6, 0.8])], &[("i1", [1.0, 0.0])])),
        };
        a.write(d.path()).unwrap();
        assert_eq!(Scored::read(d.path()).unwrap(), a);

        // A shard that owned no batch: empty tables, width 0; the join takes the others' width.
        let e = tempfile::tempdir().unwrap();
        let none = Scored {
            itm: HashMap::new(),
            itc: Some(ItcEmbeddings {
                dim: 0,
                ..emb(&[], &[])
            }),
        };
        none.write(e.path()).unwrap();
        let b = Scored {
            itm: [(pair("i3", "t2"), [1.0, 2.0])].into(),
            itc: Some(emb(&[("t2", [0.0, 1.0])], &[("i2", [0.0, -1.0])])),
        };
        let joined = Scored::join(vec![a.clone(), Scored::read(e.path()).unwrap(), b]).unwrap();
        assert_eq!(joined.itm.len(), 3);
        let j = joined.itc.unwrap();
        assert_eq!((j.dim, j.text.len(), j.image.len()), (2, 2, 2));
        assert_eq!(j.score("i1", "t1").unwrap(), 14.5 * 0.6);

        // Two parts that disagree on a key are refused, naming it.
        let mut c = a.clone();
        c.itm.insert(pair("i1", "t1"), [0.25, -1.25]);
        let err = Scored::join(vec![a, c]).unwrap_err().to_string();
        assert!(err.contains("pair (i1, t1)"), "{err}");
    }
}
