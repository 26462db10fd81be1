//! Records in memory and batches for the model: token arrays from `records`, patch features
//! read from the feature store, assembled on the CPU (in a prefetch thread during training)
//! and moved to the device in one transfer per tensor.

use std::path::Path;

use burn::tensor::{Device, Int, Tensor, TensorData};
use polars::prelude::DataFrame;

use crate::error::{Error, Result};
use crate::featstore;
use crate::models::fashionbert::{Batch, ItcBatch};
use crate::table;

/// The records table of one split, column by column (list columns flattened row-major).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Records {
    pub record_id: Vec<String>,
    pub image_id: Vec<String>,
    pub text_product_id: Vec<String>,
    pub image_product_id: Vec<String>,
    pub subcategory: Vec<String>,
    pub label: Vec<i32>,
    /// The negatives round a record belongs to (`negatives` draws one round per epoch); -1 for
    /// positives, which belong to every round.
    pub round: Vec<i32>,
    pub input_ids: Vec<i32>,
    pub input_mask: Vec<i32>,
    pub segment_ids: Vec<i32>,
    pub masked_lm_positions: Vec<i32>,
    pub masked_lm_ids: Vec<i32>,
    pub masked_lm_weights: Vec<f32>,
    pub masked_patch_positions: Vec<i32>,
    /// Text length, masked text positions, masked patch positions per record.
    pub t: usize,
    pub k: usize,
    pub m: usize,
}

impl Records {
    pub fn len(&self) -> usize {
        self.record_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.record_id.is_empty()
    }

    /// Rounds of negatives in the table (at least 1).
    pub fn rounds(&self) -> usize {
        (self.round.iter().copied().max().unwrap_or(0).max(0) + 1) as usize
    }

    /// The records an epoch trains on: round `r`'s (see [`Records::round_indices`]), or only
    /// the matched ones when the joint pass is off (the contrastive loss needs no negatives
    /// records).
    pub fn epoch_indices(&self, r: usize, joint: bool) -> Vec<usize> {
        let mut idx = self.round_indices(r);
        if !joint {
            idx.retain(|&i| self.label[i] == 1);
        }
        idx
    }

    /// The records of negatives round `r`: every positive and the negatives drawn in round `r`,
    /// in table order.
    pub fn round_indices(&self, r: usize) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| self.round[i] < 0 || self.round[i] as usize == r)
            .collect()
    }

    /// Record `i`'s text ids with the masked-LM targets put back: the unmasked text.
    pub fn clean_ids(&self, i: usize) -> Vec<i32> {
        let (t, k) = (self.t, self.k);
        let mut ids = self.input_ids[i * t..(i + 1) * t].to_vec();
        for j in 0..k {
            if self.masked_lm_weights[i * k + j] > 0.0 {
                let pos = self.masked_lm_positions[i * k + j] as usize;
                if pos < t {
                    ids[pos] = self.masked_lm_ids[i * k + j];
                }
            }
        }
        ids
    }

    pub fn read(path: &Path, t: usize, k: usize, m: usize) -> Result<Records> {
        Self::from_frame(&table::read_parquet(path)?, path, t, k, m)
    }

    /// Reads a records table whose list widths (text length, masked tokens, masked patches)
    /// are taken from its own first row.
    pub fn read_inferring_widths(path: &Path) -> Result<Records> {
        let df = table::read_parquet(path)?;
        let w = |c: &str| table::list_width(&df, c);
        let (t, k, m) = (
            w("input_ids")?,
            w("masked_lm_positions")?,
            w("masked_patch_positions")?,
        );
        Self::from_frame(&df, path, t, k, m)
    }

    fn from_frame(df: &DataFrame, path: &Path, t: usize, k: usize, m: usize) -> Result<Records> {
        let s = |c: &str| table::strings(df, c);
        let ctx = |e: table::TableError| Error::input(path, e.to_string());
        Ok(Records {
            record_id: s("record_id").map_err(ctx)?,
            image_id: s("image_id").map_err(ctx)?,
            text_product_id: s("text_product_id").map_err(ctx)?,
            image_product_id: s("image_product_id").map_err(ctx)?,
            subcategory: s("subcategory").map_err(ctx)?,
            label: table::i32s(df, "label").map_err(ctx)?,
            round: table::i32s(df, "round").map_err(ctx)?,
            input_ids: table::i32_lists(df, "input_ids", t).map_err(ctx)?,
            input_mask: table::i32_lists(df, "input_mask", t).map_err(ctx)?,
            segment_ids: table::i32_lists(df, "segment_ids", t).map_err(ctx)?,
            masked_lm_positions: table::i32_lists(df, "masked_lm_positions", k).map_err(ctx)?,
            masked_lm_ids: table::i32_lists(df, "masked_lm_ids", k).map_err(ctx)?,
            masked_lm_weights: table::f32_lists(df, "masked_lm_weights", k).map_err(ctx)?,
            masked_patch_positions: table::i32_lists(df, "masked_patch_positions", m)
                .map_err(ctx)?,
            t,
            k,
            m,
        })
    }

    /// Writes the table (inverse of [`Records::read`]).
    pub fn write(&self, path: &Path) -> Result<()> {
        use table::*;
        let mut df = frame(vec![
            col_str("record_id", &self.record_id),
            col_str("image_id", &self.image_id),
            col_str("text_product_id", &self.text_product_id),
            col_str("image_product_id", &self.image_product_id),
            col_str("subcategory", &self.subcategory),
            col_i32("label", &self.label),
            col_i32("round", &self.round),
            col_i32_lists("input_ids", &self.input_ids, self.t),
            col_i32_lists("input_mask", &self.input_mask, self.t),
            col_i32_lists("segment_ids", &self.segment_ids, self.t),
            col_i32_lists("masked_lm_positions", &self.masked_lm_positions, self.k),
            col_i32_lists("masked_lm_ids", &self.masked_lm_ids, self.k),
            col_f32_lists("masked_lm_weights", &self.masked_lm_weights, self.k),
            col_i32_lists(
                "masked_patch_positions",
                &self.masked_patch_positions,
                self.m,
            ),
        ])?;
        write_parquet(&mut df, path)?;
        Ok(())
    }
}

/// A batch assembled on the host.
#[derive(Debug, Clone, Default)]
pub struct HostBatch {
    pub b: usize,
    pub t: usize,
    pub p: usize,
    pub f: usize,
    pub k: usize,
    pub m: usize,
    pub input_ids: Vec<i64>,
    pub input_mask: Vec<f32>,
    pub segment_ids: Vec<i64>,
    pub image_feature: Vec<f32>,
    pub patch_masked: Vec<f32>,
    pub masked_patch_positions: Vec<i64>,
    pub masked_patch_weights: Vec<f32>,
    pub masked_lm_positions: Vec<i64>,
    pub masked_lm_ids: Vec<i64>,
    pub masked_lm_weights: Vec<f32>,
    pub labels: Vec<i64>,
    /// ITC: the matched records of the batch (rows into the batch), their unmasked text ids
    /// and mask, and the product each stands for (two rows of one product are both matches).
    /// Whether matched records are collected for ITC (off unless the contrastive loss is on:
    /// no work on the hot path otherwise).
    pub with_itc: bool,
    pub itc_rows: Vec<i64>,
    pub itc_ids: Vec<i64>,
    pub itc_mask: Vec<f32>,
    pub itc_products: Vec<String>,
}

impl HostBatch {
    pub fn new(t: usize, p: usize, f: usize, k: usize, m: usize) -> Self {
        HostBatch {
            t,
            p,
            f,
            k,
            m,
            ..Default::default()
        }
    }

    /// Appends one record: its text part, its image's features from `store`, and (for
    /// masked records) its text and patch masks.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        ids: &[i32],
        mask: &[i32],
        seg: &[i32],
        store: &featstore::Store,
        image_id: &str,
        mlm: Option<(&[i32], &[i32], &[f32])>,
        patch_positions: Option<&[i32]>,
        label: i32,
    ) -> Result<()> {
        store.read_into(image_id, &mut self.image_feature)?;
        self.push_parts(ids, mask, seg, mlm, patch_positions, label);
        Ok(())
    }

    /// Like [`HostBatch::push`], with the image's `[patches × dim]` features given.
    #[allow(clippy::too_many_arguments)]
    pub fn push_with_features(
        &mut self,
        ids: &[i32],
        mask: &[i32],
        seg: &[i32],
        features: &[f32],
        mlm: Option<(&[i32], &[i32], &[f32])>,
        patch_positions: Option<&[i32]>,
        label: i32,
    ) {
        assert_eq!(features.len(), self.p * self.f, "features of one image");
        self.image_feature.extend_from_slice(features);
        self.push_parts(ids, mask, seg, mlm, patch_positions, label);
    }

    fn push_parts(
        &mut self,
        ids: &[i32],
        mask: &[i32],
        seg: &[i32],
        mlm: Option<(&[i32], &[i32], &[f32])>,
        patch_positions: Option<&[i32]>,
        label: i32,
    ) {
        self.input_ids.extend(ids.iter().map(|&v| v as i64));
        self.input_mask.extend(mask.iter().map(|&v| v as f32));
        self.segment_ids.extend(seg.iter().map(|&v| v as i64));
        match mlm {
            Some((pos, lab, w)) => {
                self.masked_lm_positions
                    .extend(pos.iter().map(|&v| v as i64));
                self.masked_lm_ids.extend(lab.iter().map(|&v| v as i64));
                self.masked_lm_weights.extend_from_slice(w);
            }
            None => {
                self.masked_lm_positions
                    .extend(std::iter::repeat_n(0, self.k));
                self.masked_lm_ids.extend(std::iter::repeat_n(0, self.k));
                self.masked_lm_weights
                    .extend(std::iter::repeat_n(0.0, self.k));
            }
        }
        let mut masked = vec![0f32; self.p];
        match patch_positions {
            Some(pp) => {
                for &q in pp {
                    if (q as usize) < self.p {
                        masked[q as usize] = 1.0;
                    }
                }
                for &q in pp {
                    let mult = pp.iter().filter(|&&r| r == q).count() as f32;
                    self.masked_patch_positions.push(q as i64);
                    self.masked_patch_weights.push(1.0 / mult);
                }
            }
            None => {
                self.masked_patch_positions
                    .extend(std::iter::repeat_n(0, self.m));
                self.masked_patch_weights
                    .extend(std::iter::repeat_n(0.0, self.m));
            }
        }
        self.patch_masked.extend_from_slice(&masked);
        self.labels.push(label as i64);
        self.b += 1;
    }

    /// Record `i` of `recs`, masked; a matched record also joins the batch's ITC rows.
    pub fn push_record(
        &mut self,
        recs: &Records,
        i: usize,
        store: &featstore::Store,
    ) -> Result<()> {
        let (t, k, m) = (recs.t, recs.k, recs.m);
        if self.with_itc && recs.label[i] == 1 {
            self.itc_rows.push(self.b as i64);
            self.itc_ids
                .extend(recs.clean_ids(i).into_iter().map(|v| v as i64));
            self.itc_mask.extend(
                recs.input_mask[i * t..(i + 1) * t]
                    .iter()
                    .map(|&v| v as f32),
            );
            // Imported records have no product ids: their image stands for the product.
            self.itc_products
                .push(if recs.image_product_id[i].is_empty() {
                    recs.image_id[i].clone()
                } else {
                    recs.image_product_id[i].clone()
                });
        }
        self.push(
            &recs.input_ids[i * t..(i + 1) * t],
            &recs.input_mask[i * t..(i + 1) * t],
            &recs.segment_ids[i * t..(i + 1) * t],
            store,
            &recs.image_id[i],
            Some((
                &recs.masked_lm_positions[i * k..(i + 1) * k],
                &recs.masked_lm_ids[i * k..(i + 1) * k],
                &recs.masked_lm_weights[i * k..(i + 1) * k],
            )),
            Some(&recs.masked_patch_positions[i * m..(i + 1) * m]),
            recs.label[i],
        )
    }

    /// Records `range` of this batch as a batch of their own (ITC rows re-based): a
    /// data-parallel replica's chunk.
    pub fn slice(&self, range: std::ops::Range<usize>) -> HostBatch {
        let (a, z) = (range.start, range.end);
        fn cut<T: Clone>(v: &[T], a: usize, z: usize, w: usize) -> Vec<T> {
            v[a * w..z * w].to_vec()
        }
        let (t, p, f, k, m) = (self.t, self.p, self.f, self.k, self.m);
        let mut out = HostBatch {
            b: z - a,
            t,
            p,
            f,
            k,
            m,
            input_ids: cut(&self.input_ids, a, z, t),
            input_mask: cut(&self.input_mask, a, z, t),
            segment_ids: cut(&self.segment_ids, a, z, t),
            image_feature: cut(&self.image_feature, a, z, p * f),
            patch_masked: cut(&self.patch_masked, a, z, p),
            masked_patch_positions: cut(&self.masked_patch_positions, a, z, m),
            masked_patch_weights: cut(&self.masked_patch_weights, a, z, m),
            masked_lm_positions: cut(&self.masked_lm_positions, a, z, k),
            masked_lm_ids: cut(&self.masked_lm_ids, a, z, k),
            masked_lm_weights: cut(&self.masked_lm_weights, a, z, k),
            labels: cut(&self.labels, a, z, 1),
            with_itc: self.with_itc,
            ..Default::default()
        };
        for (j, &row) in self.itc_rows.iter().enumerate() {
            let row = row as usize;
            if (a..z).contains(&row) {
                out.itc_rows.push((row - a) as i64);
                out.itc_ids
                    .extend_from_slice(&self.itc_ids[j * t..(j + 1) * t]);
                out.itc_mask
                    .extend_from_slice(&self.itc_mask[j * t..(j + 1) * t]);
                out.itc_products.push(self.itc_products[j].clone());
            }
        }
        out
    }

    /// This batch cut into `n` contiguous chunks of (nearly) equal size, the larger first.
    pub fn split(&self, n: usize) -> Vec<HostBatch> {
        let n = n.clamp(1, self.b.max(1));
        let (base, extra) = (self.b / n, self.b % n);
        let mut start = 0;
        (0..n)
            .map(|i| {
                let len = base + usize::from(i < extra);
                let chunk = self.slice(start..start + len);
                start += len;
                chunk
            })
            .collect()
    }

    /// The image features `[B, P, F]` on `device`.
    pub fn image_features(&self, device: &Device) -> Tensor<3> {
        Tensor::<3>::from_data(
            TensorData::new(self.image_feature.clone(), [self.b, self.p, self.f]),
            device,
        )
    }

    pub fn to_device(&self, device: &Device) -> Batch {
        let (b, t, p, k, m) = (self.b, self.t, self.p, self.k, self.m);
        let fl2 = |v: &Vec<f32>, s: [usize; 2]| {
            Tensor::<2>::from_data(TensorData::new(v.clone(), s), device)
        };
        let int2 = |v: &Vec<i64>, s: [usize; 2]| {
            Tensor::<2, Int>::from_data(TensorData::new(v.clone(), s), device)
        };
        Batch {
            input_ids: int2(&self.input_ids, [b, t]),
            input_mask: fl2(&self.input_mask, [b, t]),
            segment_ids: int2(&self.segment_ids, [b, t]),
            image_feature: self.image_features(device),
            image_mask: Tensor::<2>::ones([b, p], device),
            patch_masked: Tensor::<3>::from_data(
                TensorData::new(self.patch_masked.clone(), [b, p, 1]),
                device,
            ),
            masked_patch_positions: int2(&self.masked_patch_positions, [b, m]),
            masked_patch_weights: fl2(&self.masked_patch_weights, [b, m]),
            masked_lm_positions: int2(&self.masked_lm_positions, [b, k]),
            masked_lm_ids: int2(&self.masked_lm_ids, [b, k]),
            masked_lm_weights: fl2(&self.masked_lm_weights, [b, k]),
            labels: Tensor::<1, Int>::from_data(TensorData::new(self.labels.clone(), [b]), device),
            itc: self.itc_batch(device, 2),
        }
    }

    /// The ITC part of the batch, where it is collected and has at least `min` matched records
    /// (a batch's contrastive loss needs two; a data-parallel chunk's embeddings one).
    pub fn itc_batch(&self, device: &Device, min: usize) -> Option<ItcBatch> {
        let n = self.itc_rows.len();
        if !self.with_itc || n < min.max(1) {
            return None;
        }
        let t = self.t;
        let mut targets = vec![0f32; n * n];
        for i in 0..n {
            for j in 0..n {
                if self.itc_products[i] == self.itc_products[j] {
                    targets[i * n + j] = 1.0;
                }
            }
        }
        Some(ItcBatch {
            rows: Tensor::<1, Int>::from_data(TensorData::new(self.itc_rows.clone(), [n]), device),
            input_ids: Tensor::<2, Int>::from_data(
                TensorData::new(self.itc_ids.clone(), [n, t]),
                device,
            ),
            input_mask: Tensor::<2>::from_data(
                TensorData::new(self.itc_mask.clone(), [n, t]),
                device,
            ),
            segment_ids: Tensor::<2, Int>::zeros([n, t], device),
            targets: Tensor::<2>::from_data(TensorData::new(targets, [n, n]), device),
        })
    }
}
