//! Scoring (image, text) pairs with a trained model: the alignment logits of unmasked records,
//! in batches on the device.

use std::collections::HashMap;

use burn::tensor::Device;

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
        let t = crate::stages::records::list_width(&df, "input_ids")
            .map_err(|e| Error::msg(e.to_string()))?;
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
        let logits: Vec<f32> = model
            .align_logits(&hb.to_device(device))
            .try_into_vec_as::<f32>()
            .map_err(|e| Error::Model(format!("{e:?}")))?;
        for (i, key) in chunk.iter().enumerate() {
            out.insert((*key).clone(), [logits[2 * i], logits[2 * i + 1]]);
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish();
    Ok(out)
}
